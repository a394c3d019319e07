"""The per-job side of the agent, assembled from the config: discovery, metadata, ledger, accountant.

`JobAccounting.open()` builds them and `close()` stops their threads and writes the ledger's last
rows; `api` serves /api/v1/jobs from the ledger plus what it has not written yet.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from agent.accounting import Accountant
from agent.carbon import CarbonModel
from agent.config import Config
from agent.job_carbon import job_carbon
from agent.ledger import Ledger
from agent.ledger_schema import JobNotFound, LedgerError
from agent.sources import Source
from agent.work import WorkClassifier
from collectors.base import Clock
from collectors.cgroups import JobDiscovery
from collectors.kubernetes import PodDirectory
from collectors.nvml import NvmlCollector
from collectors.slurm import SlurmMetadata
from collectors.workloads import JobInfo, JobKey


class LedgerApi:
    """/api/v1/jobs over the running agent's ledger, unwritten rows included."""

    def __init__(self, ledger: Ledger, carbon: CarbonModel | None = None) -> None:
        self._ledger = ledger
        self._carbon = carbon

    def list_jobs(self, query: Mapping[str, str]) -> list[dict[str, Any]]:
        since = query.get("since")
        running = query.get("running")
        summaries = self._ledger.live_jobs(
            since=float(since) if since else None,
            user=query.get("user") or None,
            running=None if running is None else running.lower() in ("1", "true", "yes"),
        )
        return [s.as_dict() for s in summaries]

    def annotate(self, job_id: str, tokens: int | None, samples: int | None) -> dict[str, Any]:
        try:
            return self._ledger.annotate(job_id, tokens, samples).as_dict()
        except JobNotFound as e:
            raise LookupError(str(e)) from None
        except LedgerError as e:
            raise ValueError(str(e)) from None

    def get_job(self, job_id: str) -> dict[str, Any]:
        try:
            job = self._ledger.live_job(job_id)
            if self._carbon is None:
                return job.as_dict()
            priced = job_carbon(job, self._ledger.live_job_hours(job), self._carbon)
            return {**job.as_dict(), **priced.as_dict()}
        except JobNotFound as e:
            raise LookupError(str(e)) from None
        except LedgerError as e:
            raise ValueError(str(e)) from None


@dataclass
class JobAccounting:
    discovery: JobDiscovery
    ledger: Ledger
    accountant: Accountant
    slurm: SlurmMetadata | None
    pods: PodDirectory | None
    carbon: CarbonModel | None = None
    """Prices /api/v1/jobs/<id> in CO2e; built once at start-up from `carbon:`."""

    @property
    def api(self) -> LedgerApi:
        return LedgerApi(self.ledger, self.carbon)

    @classmethod
    def open(
        cls, config: Config, sources: list[Source], clock: Clock, carbon: CarbonModel | None = None
    ) -> JobAccounting:
        """Build everything; raises LedgerError when the ledger cannot be opened.

        `carbon` prices /api/v1/jobs/<id> in CO2e (the daemon builds it once, at start-up)."""
        ledger = Ledger(config.ledger.path, config.node_name, flush_seconds=config.ledger.flush_seconds)
        slurm = (
            SlurmMetadata(config.slurm.scontrol, config.slurm.refresh_seconds, clock)
            if config.slurm.scontrol
            else None
        )
        k = config.kubernetes
        pods = (
            PodDirectory(k.pods_url, config.node_name, k.token_file, k.ca_file, k.refresh_seconds)
            if k.pods_url
            else None
        )
        if pods is not None:
            pods.start()

        def metadata(key: JobKey) -> JobInfo | None:
            return slurm.get(key.job_id) if slurm is not None and key.scheduler == "slurm" else None

        fallback = {"auto": None, "true": True, "false": False}[config.slurm.environ_fallback]
        discovery = JobDiscovery(
            config.host.procfs,
            config.host.cgroupfs,
            config.node_name,
            clock,
            metadata=metadata,
            pods=pods,
            environ_fallback=fallback,
        )
        nvml = next(
            (s.collector for s in sources if s.active and isinstance(s.collector, NvmlCollector)), None
        )
        accountant = Accountant(
            discovery,
            time.time,
            devices=tuple(d for s in sources if s.active for d in s.probe.devices),
            gpus=nvml,
            ledger=ledger,
            idle_policy=config.attribution.idle_policy,
            grace_seconds=config.jobs.grace_seconds,
            max_job_series=config.jobs.max_job_series,
            previously_running={
                s.key: s.last_seen for s in ledger.live_jobs(running=True) if s.node == ledger.node
            },
            work=WorkClassifier(config.work.rules, str(config.host.procfs), discovery.job_pids),
        )
        return cls(discovery, ledger, accountant, slurm, pods, carbon)

    def close(self) -> None:
        """Stop the helper threads and write what the ledger still holds."""
        if self.slurm is not None:
            self.slurm.close()
        if self.pods is not None:
            self.pods.close()
        self.discovery.close()
        self.ledger.close()
