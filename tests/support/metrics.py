"""The agent's metric families as prometheus_client's own objects: the reference its encoders render."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from prometheus_client.core import Metric

from agent.export.exposition import Family


def as_metric(family: Family) -> Metric:
    """The family as a prometheus_client Metric."""
    metric = Metric(family.name, family.documentation, family.type)
    sample = family.name + "_total" if family.type == "counter" else family.name
    for values, value in zip(family.labels, family.values, strict=True):
        metric.add_sample(sample, dict(zip(family.labelnames, values, strict=True)), value)
    return metric


class LibraryView:
    """Families as a collector for prometheus_client's encoders (generate_latest and the like)."""

    def __init__(self, families: Iterable[Family]) -> None:
        self._families = list(families)

    def collect(self) -> Iterator[Metric]:
        for family in self._families:
            yield as_metric(family)
