"""Prometheus families for per-job energy and CO2e and the ledger's health, over published snapshots.

For every component, at every scrape:

    sum(greenai_job_energy_joules_total) + greenai_jobs_unexported_energy_joules_total
      + greenai_node_unattributed_energy_joules_total == sum(greenai_node_energy_joules_total)
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from agent.export.co2_metrics import co2_families
from agent.export.exposition import Family, counter, gauge
from agent.live.snapshot import JOB_COMPONENTS, CarbonTotals, JobsSnapshot
from collectors.workloads import JobInfo, JobKey

MAX_LABEL_CHARS = 128
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def label_value(value: object) -> str:
    """A label value that is valid UTF-8, one line and bounded, whatever a job was named."""
    text = str(value).encode("utf-8", "replace").decode("utf-8")
    text = _CONTROL.sub("?", text)
    return text if len(text) <= MAX_LABEL_CHARS else text[: MAX_LABEL_CHARS - 3] + "..."


class LedgerHealth(Protocol):
    """What the ledger's writer says about itself."""

    @property
    def errors(self) -> Mapping[str, int]: ...

    @property
    def pending_rows(self) -> int: ...

    @property
    def last_flush_ok(self) -> bool: ...


_JOB_COMPONENT_SET = frozenset(JOB_COMPONENTS)


@dataclass
class JobLabels:
    """A job's label values as its series show them, made once: job_id, scheduler, then `jobs.labels`;
    `with_kind(k)` the full tuple with the component or basis `k` third, the same tuple every time."""

    info: JobInfo
    job_id: str
    scheduler: str
    extra: tuple[str, ...]
    _made: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def with_kind(self, kind: str) -> tuple[str, ...]:
        made = self._made.get(kind)
        if made is None:
            made = self._made[kind] = (self.job_id, self.scheduler, kind, *self.extra)
        return made


class JobFamilies:
    """The job, CO2e and ledger families of one sample's job totals; extra job labels from `labels`,
    less those in `redact` (api.redact: the fields that name people stay off /metrics too)."""

    def __init__(
        self, labels: tuple[str, ...] = (), ledger: LedgerHealth | None = None, redact: tuple[str, ...] = ()
    ) -> None:
        self._labels = tuple(label for label in labels if label not in redact)
        self._ledger = ledger
        self._kept: dict[JobKey, JobLabels] = {}

    def _job_labels(self, jobs: JobsSnapshot) -> dict[JobKey, JobLabels]:
        """Each shown job's labels, made safe once per job (and again when its metadata changes), not at
        every render; jobs no longer shown are forgotten."""
        kept, self._kept = self._kept, {}
        for series in jobs.jobs:
            key, info = series.key, series.info
            known = kept.get(key)
            if known is None or (known.info is not info and known.info != info):
                extra = tuple(label_value(getattr(info, n)) for n in self._labels)
                known = JobLabels(info, label_value(key.job_id), key.scheduler, extra)
            self._kept[key] = known
        return self._kept

    @property
    def ledger_state(self) -> tuple[object, ...]:
        """What the ledger families show, to tell whether a kept exposition is still current."""
        if self._ledger is None:
            return ()
        ledger = self._ledger
        return (ledger.pending_rows, ledger.last_flush_ok, tuple(sorted(ledger.errors.items())))

    def families(self, jobs: JobsSnapshot, co2: CarbonTotals | None = None) -> Iterator[Family]:
        energy = counter(
            "greenai_job_energy_joules",
            "Node energy attributed to a job since the agent first saw it, per component "
            "(see docs/attribution.md); jobs that ended stay for jobs.grace_seconds.",
            ["job_id", "scheduler", "component", *self._labels],
        )
        job_labels = self._job_labels(jobs)
        labels, values = energy.labels, energy.values
        for series in jobs.jobs:
            of = job_labels[series.key].with_kind
            energy_j = series.energy_j
            components: tuple[str, ...] = JOB_COMPONENTS
            if not energy_j.keys() <= _JOB_COMPONENT_SET:  # module, other: after the three, sorted
                components = (*JOB_COMPONENTS, *sorted(c for c in energy_j if c not in _JOB_COMPONENT_SET))
            for component in components:
                labels.append(of(component))
                values.append(energy_j.get(component, 0.0))
        yield energy
        yield _counter_by(
            "greenai_node_unattributed_energy_joules",
            "Node energy no job was charged for: processes outside jobs, idle CPUs nobody holds, "
            "platform (psys) energy.",
            "component",
            jobs.unattributed_j,
        )
        yield _counter_by(
            "greenai_jobs_unexported_energy_joules",
            "Energy of jobs that are not on /metrics: past their grace period, or beyond max_job_series.",
            "component",
            jobs.unexported_j,
        )
        yield gauge("greenai_jobs_running", "Jobs running on the node now.", value=jobs.running)
        yield _counter_by(
            "greenai_accounting_errors",
            "Failures to find jobs or GPU processes; the interval's energy then stays unattributed.",
            "stage",
            jobs.errors,
        )
        if co2 is not None:
            yield from co2_families(co2, label_value, self._labels, job_labels)
        if self._ledger is not None:
            yield from _ledger_families(self._ledger)


def _counter_by(name: str, documentation: str, label: str, values: Mapping[str, float]) -> Family:
    """A counter family with one series per key of `values`, the key as `label`."""
    family = counter(name, documentation, [label])
    for key, value in sorted(values.items()):
        family.add([key], value)
    return family


def _ledger_families(ledger: LedgerHealth) -> Iterator[Family]:
    yield _counter_by(
        "greenai_ledger_errors",
        "Failed ledger writes by reason (disk full, locked, I/O); the rows wait in memory.",
        "reason",
        ledger.errors,
    )
    yield gauge(
        "greenai_ledger_pending_rows",
        "Ledger rows waiting in memory to be written.",
        value=ledger.pending_rows,
    )
    yield gauge(
        "greenai_ledger_last_flush_success",
        "1 when the last write to the ledger succeeded, else 0.",
        value=1.0 if ledger.last_flush_ok else 0.0,
    )
