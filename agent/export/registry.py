"""The registry a scrape renders: the families of the latest published sample, and the process's own.

A scrape reads the published value once and only turns it into metric families; it never reads
hardware or the ledger's write path.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import Metric

from agent.export.job_metrics import JobFamilies
from agent.export.node_metrics import node_families
from agent.live.snapshot import Published
from collectors.base import Status


class PublishedCollector:
    """Yields the greenai_* metric families of whatever `get_published` returns now."""

    def __init__(
        self,
        get_published: Callable[[], Published],
        node_name: str,
        statuses: Mapping[str, Status],
        jobs: JobFamilies | None = None,
    ) -> None:
        self._get_published = get_published
        self._node_name = node_name
        self._statuses = dict(statuses)
        self._jobs = jobs

    def collect(self) -> Iterator[Metric]:
        # One read for the whole scrape: node, job and CO2e figures from the same sample add up.
        published = self._get_published()
        yield from node_families(published.node, self._node_name, self._statuses)
        if self._jobs is not None and published.jobs is not None:
            yield from self._jobs.families(published.jobs, published.co2)


def make_registry(
    get_published: Callable[[], Published],
    node_name: str,
    statuses: Mapping[str, Status],
    jobs: JobFamilies | None = None,
) -> CollectorRegistry:
    """A registry of its own (never the global one) with the published sample's and the process's metrics."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(PublishedCollector(get_published, node_name, statuses, jobs))
    ProcessCollector(registry=registry)
    return registry
