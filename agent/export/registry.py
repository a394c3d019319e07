"""What a scrape shows: the families of the latest published sample, and the process's own.

A scrape reads the published value once and only turns it into metric families; it never reads
hardware or the ledger's write path. The exposition is rendered once per published sample (and
again when the ledger's health changes) and kept for the scrapes until the next (agent.export.exposition).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from agent.export.exposition import Exposition, Family
from agent.export.job_metrics import JobFamilies
from agent.export.node_metrics import node_families
from agent.export.process import ProcessFamilies
from agent.live.snapshot import Published
from collectors.base import Status


class PublishedFamilies:
    """The greenai_* metric families of whatever `get_published` returns now."""

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

    def families(self) -> Iterator[Family]:
        # One read for the whole scrape: node, job and CO2e figures from the same sample add up.
        published = self._get_published()
        yield from node_families(published.node, self._node_name, self._statuses)
        if self._jobs is not None and published.jobs is not None:
            yield from self._jobs.families(published.jobs, published.co2)

    def version(self) -> tuple[object, ...]:
        """The published sample itself and the ledger's health: while both are as they were, so is
        the exposition."""
        return (self._get_published(), self._jobs.ledger_state if self._jobs is not None else ())


def make_exposition(
    get_published: Callable[[], Published],
    node_name: str,
    statuses: Mapping[str, Status],
    jobs: JobFamilies | None = None,
) -> Exposition:
    """/metrics: the published sample's families and the process's own (process_*, as of the render)."""
    published = PublishedFamilies(get_published, node_name, statuses, jobs)
    process = ProcessFamilies()

    def collect() -> Iterator[Family]:
        yield from published.families()
        yield from process.families()

    return Exposition(collect, published.version)
