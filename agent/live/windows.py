"""Energy windows: named spans of one job's energy, begun and ended by the job itself.

The accountant already splits every interval's node energy among the jobs; a window only follows its
job's attributed energy from when it begins to when it ends. Its figure is therefore the agent's own
per-job accounting for that span, measured and conserved: never a whole-machine reading, never
another job's energy.

Resolution is the sampling interval. Within an interval the job's energy is taken at that interval's
steady power: a window that begins inside an interval gets the interval's energy in proportion to the
time it was open, and one that ends after the last sample has the job's power over the last interval
extrapolated to its end. The result says for how many seconds it did so (`interpolated_s`).

`WindowBook` is called by the HTTP workers (begin, end) while the sampling thread closes intervals.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from agent.live.snapshot import Key
from collectors.base import GPU_COMPONENTS, NOT_IN_TOTAL, is_outage
from collectors.jobs.trees import PROCESS
from collectors.workloads import JobKey, JobUsage

MAX_OPEN_PER_OWNER = 64
"""Windows one job may hold open at once; more are refused (HTTP 429)."""

K = TypeVar("K")


class WindowError(Exception):
    """A window request that cannot be served; `status` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class _Totals:
    """A job's running totals since it was first followed, as of wall time `t`."""

    t: float
    energy: Mapping[tuple[str, str], float] = field(default_factory=dict)
    """Joules by (component, source)."""
    gpu_j: Mapping[str, float] = field(default_factory=dict)
    """Joules of each GPU device the job got."""
    node_gpu_j: Mapping[str, float] = field(default_factory=dict)
    """Joules each of those GPU devices used, whoever used them."""
    node_it_j: float = 0.0
    node_unattributed_j: float = 0.0


@dataclass
class _Follow:
    """A job with open windows: its running totals, updated in place at each interval's end, and what
    the last interval added (from which the totals at any time in or past it follow)."""

    t: float
    energy: dict[tuple[str, str], float] = field(default_factory=dict)
    gpu_j: dict[str, float] = field(default_factory=dict)
    node_gpu_j: dict[str, float] = field(default_factory=dict)
    node_it_j: float = 0.0
    node_unattributed_j: float = 0.0
    step_s: float = 0.0
    """The last interval's length; 0 until an interval of the job has closed (no power known)."""
    step: _Totals = field(default_factory=lambda: _Totals(0.0))
    """What the last interval added."""
    pending: list[_Window] = field(default_factory=list)
    """Windows whose begin lies in the interval now running."""

    def at(self, t: float) -> _Totals:
        """The totals at `t`, within the last interval or past it, at that interval's power."""
        f = (t - self.t) / self.step_s if self.step_s > 0 else 0.0
        step = self.step
        return _Totals(
            t,
            {k: v + step.energy.get(k, 0.0) * f for k, v in self.energy.items()},
            {k: v + step.gpu_j.get(k, 0.0) * f for k, v in self.gpu_j.items()},
            {k: v + step.node_gpu_j.get(k, 0.0) * f for k, v in self.node_gpu_j.items()},
            self.node_it_j + step.node_it_j * f,
            self.node_unattributed_j + step.node_unattributed_j * f,
        )


@dataclass
class _Window:
    name: str
    begin: float
    whole_first: bool = False
    """The owner is followed from this window's begin (a process tree whose usage was read then): the
    first interval's share is all inside the window, not prorated by time."""
    start: _Totals | None = None
    """The job's totals at `begin`, once the interval holding `begin` has closed."""
    first_sample: float | None = None
    """When the first interval after `begin` closed."""


@dataclass(frozen=True)
class WindowResult:
    """What a window measured over [begin, end]."""

    name: str
    job: JobKey
    begin: float
    end: float
    energy: Mapping[tuple[str, str], float]
    """Joules by (component, source)."""
    gpu_j: Mapping[str, float]
    node_gpu_j: Mapping[str, float]
    node_it_j: float
    node_unattributed_j: float
    interpolated_s: float
    """Seconds of the window not between two samples: taken at an interval's steady power."""

    @property
    def by_component(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for (component, _), joules in self.energy.items():
            out[component] = out.get(component, 0.0) + joules
        return out

    @property
    def total_j(self) -> float:
        return sum(j for (c, _), j in self.energy.items() if c not in NOT_IN_TOTAL)

    @property
    def by_source(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for (component, source), joules in self.energy.items():
            if component not in NOT_IN_TOTAL:
                out[source] = out.get(source, 0.0) + joules
        return out

    @property
    def gpu_shares(self) -> dict[str, float]:
        """The job's share of each GPU it used over the window (0 to 1)."""
        return {
            device: min(1.0, joules / self.node_gpu_j[device])
            for device, joules in sorted(self.gpu_j.items())
            if joules > 0 and self.node_gpu_j.get(device, 0.0) > 0
        }


def _minus(b: Mapping[K, float], a: Mapping[K, float]) -> dict[K, float]:
    """b - a per key, the positive differences only."""
    return {k: v - a.get(k, 0.0) for k, v in b.items() if v - a.get(k, 0.0) > 0}


@dataclass
class WindowBook:
    """Open windows per job, and the running totals of the jobs that hold any."""

    wall_clock: Callable[[], float]
    max_open: int = MAX_OPEN_PER_OWNER
    _windows: dict[JobKey, dict[str, _Window]] = field(default_factory=dict)
    _follow: dict[JobKey, _Follow] = field(default_factory=dict)
    _last_close: float | None = None
    _baselines: dict[JobKey, JobUsage] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def begin(self, job: JobKey, name: str, baseline: JobUsage | None = None) -> float:
        """Open window `name` of `job` now; returns its begin time (wall clock). WindowError 409 when
        one of that name is open, 429 beyond `max_open`. `baseline`: the owner's usage read now, for an
        owner no scan has seen yet (a process tree): its first interval then counts from here."""
        now = self.wall_clock()
        with self._lock:
            windows = self._windows.setdefault(job, {})
            if name in windows:
                raise WindowError(409, f"window {name!r} is already open; end it first")
            if len(windows) >= self.max_open:
                raise WindowError(429, f"{len(windows)} windows are open for this job, the most allowed")
            follow = self._follow.get(job)
            whole = False
            if follow is None:  # followed from the last interval's end: the one running now is coming
                follow = self._follow[job] = _Follow(min(now, self._last_close or now))
                if baseline is not None:
                    self._baselines[job] = baseline
                    whole = True
            window = windows[name] = _Window(name, now, whole)
            follow.pending.append(window)
            return now

    def followed(self, job: JobKey) -> bool:
        """Whether `job` holds a window now (its totals are being followed)."""
        with self._lock:
            return job in self._follow

    def baseline(self, job: JobKey) -> JobUsage | None:
        """The usage read when `job` began its first window, once (for the accountant's first interval
        of an owner no scan had seen)."""
        with self._lock:
            return self._baselines.pop(job, None)

    def end(self, job: JobKey, name: str) -> WindowResult:
        """Close window `name` of `job` now and measure it; WindowError 404 when no such one is open."""
        now = self.wall_clock()
        with self._lock:
            window = self._windows.get(job, {}).pop(name, None)
            if window is None:
                raise WindowError(404, f"no open window {name!r}")
            follow = self._follow[job]
            if window in follow.pending:
                follow.pending.remove(window)
            if not self._windows[job]:  # still followed until the next interval closes: a window that
                del self._windows[job]  # begins meanwhile goes on from the same totals
            start = window.start if window.start is not None else follow.at(window.begin)
            stop = follow.at(now)
        if window.first_sample is None:
            guessed = now - window.begin
        else:
            guessed = (window.first_sample - window.begin) + max(0.0, now - follow.t)
        return WindowResult(
            window.name,
            job,
            window.begin,
            now,
            _minus(stop.energy, start.energy),
            _minus(stop.gpu_j, start.gpu_j),
            _minus(stop.node_gpu_j, start.node_gpu_j),
            max(0.0, stop.node_it_j - start.node_it_j),
            max(0.0, stop.node_unattributed_j - start.node_unattributed_j),
            max(0.0, guessed),
        )

    def process_roots(self) -> frozenset[int]:
        """The root pids of the process trees (callers in no job) that hold windows."""
        with self._lock:
            return frozenset(int(job.job_id) for job in self._windows if job.scheduler == PROCESS)

    def open_windows(self, job: JobKey) -> list[tuple[str, float]]:
        """(name, begin) of the job's open windows."""
        with self._lock:
            return sorted((w.name, w.begin) for w in self._windows.get(job, {}).values())

    def close_interval(
        self,
        t: float,
        shares: Mapping[JobKey, Mapping[Key, float]],
        node_j: Mapping[Key, float],
        unattributed_j: Mapping[Key, float],
        running: Callable[[JobKey], bool],
    ) -> None:
        """Add the interval that closed at wall time `t`: each job's attributed joules (`shares`), the
        node's (`node_j`) and what no job got (`unattributed_j`). The windows of jobs that no longer
        run are forgotten."""
        with self._lock:
            self._last_close = t
            for job in [j for j in self._follow if j not in self._windows]:  # no window since the last
                del self._follow[job]
                self._baselines.pop(job, None)
            if not self._windows:
                return
            node_gpu: dict[str, float] = {}
            for (component, device, source), joules in node_j.items():
                if component in GPU_COMPONENTS and not is_outage(source):
                    node_gpu[device] = node_gpu.get(device, 0.0) + joules
            node_it = sum(j for (c, _, _), j in node_j.items() if c not in NOT_IN_TOTAL)
            left = sum(j for (c, _, _), j in unattributed_j.items() if c not in NOT_IN_TOTAL)
            for job in list(self._windows):
                if not running(job):
                    del self._windows[job]
                    del self._follow[job]
                    self._baselines.pop(job, None)
                    continue
                self._add(job, t, shares.get(job, {}), node_gpu, node_it, left)

    def _add(
        self,
        job: JobKey,
        t: float,
        got: Mapping[Key, float],
        node_gpu: Mapping[str, float],
        node_it: float,
        left: float,
    ) -> None:
        follow = self._follow[job]
        energy: dict[tuple[str, str], float] = {}
        gpu: dict[str, float] = {}
        for (component, device, source), joules in got.items():
            energy[(component, source)] = energy.get((component, source), 0.0) + joules
            if component in GPU_COMPONENTS:
                gpu[device] = gpu.get(device, 0.0) + joules
        for key, joules in energy.items():
            follow.energy[key] = follow.energy.get(key, 0.0) + joules
        for device, joules in gpu.items():
            follow.gpu_j[device] = follow.gpu_j.get(device, 0.0) + joules
        node = {d: node_gpu.get(d, 0.0) for d in follow.gpu_j}
        for device, joules in node.items():
            follow.node_gpu_j[device] = follow.node_gpu_j.get(device, 0.0) + joules
        follow.node_it_j += node_it
        follow.node_unattributed_j += left
        follow.step = _Totals(t, energy, gpu, node, node_it, left)
        follow.step_s, follow.t = t - follow.t, t
        for window in follow.pending:  # the interval holding their begin closed: their start is known
            window.start = _Totals(window.begin) if window.whole_first else follow.at(window.begin)
            window.first_sample = t
        follow.pending = []
