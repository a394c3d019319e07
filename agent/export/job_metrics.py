"""Prometheus families for per-job energy and CO2e and the ledger's health, over published snapshots.

For every component, at every scrape:

    sum(greenai_job_energy_joules_total) + greenai_jobs_unexported_energy_joules_total
      + greenai_node_unattributed_energy_joules_total == sum(greenai_node_energy_joules_total)
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Protocol

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from agent.export.co2_metrics import co2_families
from agent.live.snapshot import JOB_COMPONENTS, CarbonTotals, JobsSnapshot

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


class JobFamilies:
    """The job, CO2e and ledger families of one sample's job totals; extra job labels from `labels`,
    less those in `redact` (api.redact: the fields that name people stay off /metrics too)."""

    def __init__(
        self, labels: tuple[str, ...] = (), ledger: LedgerHealth | None = None, redact: tuple[str, ...] = ()
    ) -> None:
        self._labels = tuple(label for label in labels if label not in redact)
        self._ledger = ledger

    def families(self, jobs: JobsSnapshot, co2: CarbonTotals | None = None) -> Iterator[Metric]:
        energy = CounterMetricFamily(
            "greenai_job_energy_joules",
            "Node energy attributed to a job since the agent first saw it, per component "
            "(see docs/attribution.md); jobs that ended stay for jobs.grace_seconds.",
            labels=["job_id", "scheduler", "component", *self._labels],
        )
        extra_values = {j.key: [label_value(getattr(j.info, n)) for n in self._labels] for j in jobs.jobs}
        for series in jobs.jobs:
            extra = extra_values[series.key]
            extra_components = sorted(c for c in series.energy_j if c not in JOB_COMPONENTS)
            for component in (*JOB_COMPONENTS, *extra_components) if extra_components else JOB_COMPONENTS:
                labels = [label_value(series.key.job_id), series.key.scheduler, component, *extra]
                energy.add_metric(labels, series.energy_j.get(component, 0.0))
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
        yield GaugeMetricFamily("greenai_jobs_running", "Jobs running on the node now.", value=jobs.running)
        yield _counter_by(
            "greenai_accounting_errors",
            "Failures to find jobs or GPU processes; the interval's energy then stays unattributed.",
            "stage",
            jobs.errors,
        )
        if co2 is not None:
            yield from co2_families(co2, label_value, self._labels, extra_values)
        if self._ledger is not None:
            yield from _ledger_families(self._ledger)


def _counter_by(name: str, documentation: str, label: str, values: Mapping[str, float]) -> Metric:
    """A counter family with one series per key of `values`, the key as `label`."""
    family = CounterMetricFamily(name, documentation, labels=[label])
    for key, value in sorted(values.items()):
        family.add_metric([key], value)
    return family


def _ledger_families(ledger: LedgerHealth) -> Iterator[Metric]:
    yield _counter_by(
        "greenai_ledger_errors",
        "Failed ledger writes by reason (disk full, locked, I/O); the rows wait in memory.",
        "reason",
        ledger.errors,
    )
    yield GaugeMetricFamily(
        "greenai_ledger_pending_rows",
        "Ledger rows waiting in memory to be written.",
        value=ledger.pending_rows,
    )
    yield GaugeMetricFamily(
        "greenai_ledger_last_flush_success",
        "1 when the last write to the ledger succeeded, else 0.",
        value=1.0 if ledger.last_flush_ok else 0.0,
    )
