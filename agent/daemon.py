"""`greenai agent`: probe the collectors, sample every interval on a monotonic clock, serve /metrics.

This is where the agent is wired together, from the config: collectors (agent.live.sources), the
sampler, job discovery with Slurm and Kubernetes metadata, the ledger behind the accountant's sink,
live CO2e, and the HTTP server over the published sample. Nothing below imports what it is wired to.

Each interval: sampler -> accountant -> live carbon, and the three results are published as one
immutable `Published` value, which the next scrape reads whole.
"""

from __future__ import annotations

import ctypes
import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from agent.carbon.model import CarbonModel
from agent.config.checks import ConfigError
from agent.config.settings import Config
from agent.export.api import LedgerApi
from agent.export.job_metrics import JobFamilies
from agent.export.local import LocalServer, SelfApi
from agent.export.registry import make_exposition
from agent.export.server import MetricsServer
from agent.ledger.schema import LedgerError
from agent.ledger.writer import Ledger
from agent.live.accounting import Accountant
from agent.live.carbon import LiveCarbon
from agent.live.sampler import Sampler
from agent.live.snapshot import Published
from agent.live.sources import Source, devices, gpu_usages, probe_sources, require
from agent.live.windows import WindowBook
from agent.live.work import WorkClassifier
from collectors.base import Clock
from collectors.jobs.cgroups import JobDiscovery
from collectors.jobs.kubernetes import PodDirectory
from collectors.jobs.slurm import SlurmMetadata
from collectors.jobs.trees import ProcessTrees
from collectors.tdp import read_cpuinfo
from collectors.workloads import JobInfo, JobKey

log = logging.getLogger("greenai.agent")


def run(config: Config, stop: threading.Event, clock: Clock = time.monotonic) -> None:
    """Run until `stop` is set.

    Raises ConfigError when the config cannot work here (carbon data, ledger path, listen address),
    SourceMissing when the node cannot be measured as configured.
    """
    _bound_malloc()
    try:
        carbon = CarbonModel.from_config(config.carbon)
    except ConfigError as e:
        raise ConfigError(f"{config.source}: {e}") from None
    sources = probe_sources(config, clock)
    for s in sources:
        log.info("collector %s: %s: %s", s.name, s.probe.status.value, s.probe.reason)
        for note in s.probe.notes:
            log.info("collector %s: %s", s.name, note)
    sampler = Sampler(require(sources), clock, devices=devices(sources))
    try:
        jobs = JobAccounting.open(config, sources, clock, carbon)
    except LedgerError as e:
        sampler.close()
        raise ConfigError(f"ledger.path: {e}") from None
    try:
        _serve(config, sources, sampler, jobs, LiveCarbon(carbon, config.node_name, time.time), stop, clock)
    finally:
        jobs.close()
        sampler.close()
        log.info("stopped")


@dataclass
class JobAccounting:
    """The per-job side of the agent: discovery, metadata look-ups, the ledger, the accountant.

    `open()` builds them; `close()` stops their threads and writes the ledger's last rows.
    """

    discovery: JobDiscovery
    ledger: Ledger
    accountant: Accountant
    slurm: SlurmMetadata | None
    pods: PodDirectory | None
    carbon: CarbonModel | None = None
    """Prices /api/v1/jobs/<id> in CO2e; built once at start-up from `carbon:`."""
    windows: WindowBook | None = None
    """The jobs' energy windows, opened and closed over the local socket."""

    @property
    def api(self) -> LedgerApi:
        """/api/v1/jobs from the ledger plus what it has not written yet."""
        return LedgerApi(self.ledger, self.carbon)

    @classmethod
    def open(
        cls, config: Config, sources: list[Source], clock: Clock, carbon: CarbonModel | None = None
    ) -> JobAccounting:
        """Build everything; raises LedgerError when the ledger cannot be opened."""
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

        windows = WindowBook(time.time)
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
        accountant = Accountant(
            discovery,
            time.time,
            devices=devices(sources),
            gpus=gpu_usages(sources),
            ledger=ledger,
            idle_policy=config.attribution.idle_policy,
            other_policy=config.attribution.other_policy,
            grace_seconds=config.jobs.grace_seconds,
            max_job_series=config.jobs.max_job_series,
            previously_running={
                s.key: s.last_seen for s in ledger.live_jobs(running=True) if s.node == ledger.node
            },
            work=WorkClassifier(config.work.rules, str(config.host.procfs), discovery.job_pids),
            cpu_model=read_cpuinfo(config.host.procfs).model,
            windows=windows,
            trees=ProcessTrees(config.host.procfs),
        )
        return cls(discovery, ledger, accountant, slurm, pods, carbon, windows)

    def close(self) -> None:
        """Stop the helper threads and write what the ledger still holds."""
        if self.slurm is not None:
            self.slurm.close()
        if self.pods is not None:
            self.pods.close()
        self.discovery.close()
        self.ledger.close()


def _serve(
    config: Config,
    sources: list[Source],
    sampler: Sampler,
    jobs: JobAccounting,
    carbon: LiveCarbon,
    stop: threading.Event,
    clock: Clock,
) -> None:
    def sample() -> Published:
        node = sampler.tick()
        accounted = jobs.accountant.account(node)
        return Published(node, accounted, carbon.update(node, accounted))

    published = [sample()]  # the first read of every counter is its baseline

    def publish() -> None:
        # A scrape reads published[0] once; replacing it whole keeps node, jobs and CO2e from one sample.
        published[0] = sample()

    host, port = config.listen_address
    statuses = {s.name: s.probe.status for s in sources}
    families = JobFamilies(config.jobs.labels, jobs.ledger, config.api.redact)
    metrics = make_exposition(lambda: published[0], config.node_name, statuses, families)
    api = LedgerApi(jobs.ledger, jobs.carbon, config.api.redact)
    try:
        server = MetricsServer(host, port, metrics, api, config.api.allow_annotate, config.web.loaded)
    except OSError as e:
        raise ConfigError(
            f"listen {config.listen}: {e.strerror or e}; choose another address with --listen or `listen:`"
        ) from None
    except ValueError as e:  # a certificate that changed since the config was read
        raise ConfigError(f"web.config_file {config.web.config_file}: {e}") from None
    server.start()
    local = _local_server(config, jobs)
    shown = f"[{host}]" if ":" in host else host
    log.info(
        "serving metrics on %s://%s:%d/metrics every %gs",
        server.scheme,
        shown,
        server.port,
        config.interval_seconds,
    )
    try:
        _loop(publish, config.interval_seconds, stop, clock)
    finally:
        server.stop()
        if local is not None:
            local.stop()


def _local_server(config: Config, jobs: JobAccounting) -> LocalServer | None:
    """The local socket (`api.socket`) for the jobs' own figures and windows; None when off or when it
    cannot be made (the agent runs on without it, and says why)."""
    if not config.api.socket or jobs.windows is None:
        return None
    api = SelfApi(
        jobs.windows,
        jobs.discovery.job_for_pid,
        config.interval_seconds,
        config.node_name,
        jobs.carbon,
        LedgerApi(jobs.ledger, jobs.carbon, config.api.redact),
        ProcessTrees(config.host.procfs),
    )
    try:
        local = LocalServer(Path(config.api.socket), api)
    except OSError as e:
        log.warning(
            "local socket off: cannot serve %s: %s; set api.socket to a path the agent may create, "
            'or "" to turn it off',
            config.api.socket,
            e.strerror or e,
        )
        return None
    local.start()
    log.info("serving jobs' own energy and windows on %s", config.api.socket)
    return local


def _loop(tick: Callable[[], object], interval: float, stop: threading.Event, clock: Clock) -> None:
    """Tick on a fixed schedule; after a stall, skip the missed ticks rather than bunch them up."""
    next_tick = clock() + interval
    while not stop.wait(max(0.0, next_tick - clock())):
        tick()
        next_tick += interval
        now = clock()
        if next_tick < now:
            missed = int((now - next_tick) // interval) + 1
            log.warning("sampling fell %d interval(s) behind", missed)
            next_tick += missed * interval


M_MMAP_THRESHOLD, M_ARENA_MAX = -3, -8
"""glibc's mallopt parameters (malloc.h)."""


def _bound_malloc() -> None:
    """glibc gives each thread that allocates its own malloc arena and keeps what was freed there: the
    HTTP workers rendering a 2,000-job exposition in turn (1 MB and its pieces) would each keep a copy.
    Two arenas, and blocks from 256 kB up returned to the system when freed: 4 MB less at 2,000 jobs.
    Elsewhere than glibc (musl has no mallopt) nothing changes."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return
    mallopt(M_ARENA_MAX, 2)
    mallopt(M_MMAP_THRESHOLD, 256 * 1024)


def install_signal_handlers(stop: threading.Event) -> None:
    """SIGTERM and SIGINT set `stop`; the loop notices at once."""

    def handler(signum: int, frame: FrameType | None) -> None:
        log.info("received %s, stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
