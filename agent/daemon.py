"""`greenai agent`: probe the collectors, sample every interval on a monotonic clock, serve /metrics."""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType

from agent.carbon import CarbonModel
from agent.carbon_live import LiveCarbon
from agent.config import Config, ConfigError
from agent.exporter import MetricsServer, Published, make_registry
from agent.job_accounting import JobAccounting
from agent.job_metrics import JobFamilies
from agent.ledger_schema import LedgerError
from agent.sampler import Sampler
from agent.sources import RequiredSourceMissing, Source, devices, probe_sources, require
from collectors.base import Clock

log = logging.getLogger("greenai.agent")


class StartupError(Exception):
    """The agent cannot start; the message is one line for the operator."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def run(config: Config, stop: threading.Event, clock: Clock = time.monotonic) -> None:
    """Run until `stop` is set. Raises StartupError when the agent cannot start."""
    try:
        carbon = CarbonModel.from_config(config.carbon)
    except ConfigError as e:
        raise StartupError(f"carbon: {e}", exit_code=2) from None
    sources = probe_sources(config, clock)
    for s in sources:
        log.info("collector %s: %s: %s", s.name, s.probe.status.value, s.probe.reason)
        for note in s.probe.notes:
            log.info("collector %s: %s", s.name, note)
    try:
        require(sources)
    except RequiredSourceMissing as e:
        raise StartupError(str(e)) from None
    active = [s.collector for s in sources if s.collector is not None and s.active]
    if not active:
        raise StartupError("no energy source works on this node; run `greenai doctor` to see why")

    sampler = Sampler(active, clock, devices=devices(sources))
    try:
        jobs = JobAccounting.open(config, sources, clock, carbon)
    except LedgerError as e:
        sampler.close()
        raise StartupError(f"ledger.path: {e}", exit_code=2) from None
    try:
        _serve(config, sources, sampler, jobs, LiveCarbon(carbon, config.node_name, time.time), stop, clock)
    finally:
        jobs.close()
        sampler.close()
        log.info("stopped")


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
        snap = sampler.tick()
        return snap, carbon.update(snap, jobs.accountant.account(snap))

    published = [sample()]  # the first read of every counter is its baseline

    def publish() -> None:
        # A scrape reads published[0] once; replacing it whole keeps node and jobs from one sample.
        published[0] = sample()

    host, port = config.listen_address
    statuses = {s.name: s.probe.status for s in sources}
    families = JobFamilies(config.jobs.labels, jobs.ledger)
    registry = make_registry(lambda: published[0], config.node_name, statuses, families)
    try:
        server = MetricsServer(host, port, registry, jobs.api, config.api.allow_annotate)
    except OSError as e:
        raise StartupError(
            f"listen {config.listen}: {e.strerror or e}; choose another address with --listen or `listen:`",
            exit_code=2,
        ) from None
    server.start()
    shown = f"[{host}]" if ":" in host else host
    log.info("serving metrics on http://%s:%d/metrics every %gs", shown, server.port, config.interval_seconds)
    try:
        _loop(publish, config.interval_seconds, stop, clock)
    finally:
        server.stop()


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


def install_signal_handlers(stop: threading.Event) -> None:
    """SIGTERM and SIGINT set `stop`; the loop notices at once."""

    def handler(signum: int, frame: FrameType | None) -> None:
        log.info("received %s, stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
