"""A drop-in for CodeCarbon's `EmissionsTracker`, measured by the node's greenai agent.

    from agent.tracker import EmissionsTracker       # instead of: from codecarbon import EmissionsTracker
    tracker = EmissionsTracker(project_name="bert")
    tracker.start()
    train()
    kg = tracker.stop()                               # kg CO2e; emissions.csv gets CodeCarbon's row

The figures are the agent's windows (agent.client): the job's energy as the agent measures and
attributes it, not CodeCarbon's estimate of the machine or process. Where no agent answers, the
tracker says so in one line and hands over to CodeCarbon's own tracker, whose figure is then
CodeCarbon's; it never makes one up. `append_emissions_row` writes the CSV row, also for
`greenai run --csv`. Imports only agent.client and the standard library (CodeCarbon lazily, for
the fallback): it loads inside training scripts.
"""

from __future__ import annotations

import csv
import functools
import os
import platform
import sys
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TextIO, TypeVar

from agent.client import AgentUnavailable, GreenaiError, Monitor, Window

TRACKING_MODE = "greenai-agent"
"""CodeCarbon's `tracking_mode` column of our rows: says the figure is the agent's, per job."""
CODECARBON_COLUMNS = (
    "timestamp", "project_name", "run_id", "experiment_id", "duration", "emissions", "emissions_rate",
    "cpu_power", "gpu_power", "ram_power", "cpu_energy", "gpu_energy", "ram_energy", "energy_consumed",
    "water_consumed", "country_name", "country_iso_code", "region", "cloud_provider", "cloud_region", "os",
    "python_version", "codecarbon_version", "cpu_count", "cpu_model", "gpu_count", "gpu_model", "longitude",
    "latitude", "ram_total_size", "tracking_mode", "cpu_utilization_percent", "gpu_utilization_percent",
    "ram_utilization_percent", "ram_used_gb", "on_cloud", "pue", "wue",
)  # fmt: skip
"""CodeCarbon 3.x's emissions.csv header (its `EmissionsData` fields, in order)."""
REQUIRED = ("timestamp", "run_id", "duration", "emissions", "cpu_energy", "gpu_energy", "ram_energy",
            "energy_consumed")  # fmt: skip
JOULES_PER_KWH = 3.6e6

F = TypeVar("F", bound=Callable[..., Any])


def emissions_row(window: Window, project_name: str, run_id: str, experiment_id: str = "") -> dict[str, str]:
    """CodeCarbon's columns for `window`: kWh, kg, W, s; a figure the agent does not give is left empty.

    IT energy before PUE, so `pue` is 1; `energy_consumed` is the window's kWh and the cpu, gpu and
    ram energies are its components (the rest, other meters, is in `energy_consumed` only).
    """
    duration = window.duration_s
    kg = (
        None if window.co2e_g is None or "location" not in window.co2e_g else window.co2e_g["location"] / 1000
    )

    def kwh(component: str) -> float:
        return window.energy_j.get(component, 0.0) / JOULES_PER_KWH

    def watts(component: str) -> str:
        return _num(window.energy_j.get(component, 0.0) / duration) if duration > 0 else ""

    row = dict.fromkeys(CODECARBON_COLUMNS, "")
    row.update(
        timestamp=datetime.fromtimestamp(window.end, timezone.utc).isoformat(timespec="seconds"),
        project_name=project_name,
        run_id=run_id,
        experiment_id=experiment_id,
        duration=_num(duration),
        emissions="" if kg is None else _num(kg),
        emissions_rate="" if kg is None or duration <= 0 else _num(kg / duration),
        cpu_power=watts("cpu"),
        gpu_power=watts("gpu"),
        ram_power=watts("dram"),
        cpu_energy=_num(kwh("cpu")),
        gpu_energy=_num(kwh("gpu")),
        ram_energy=_num(kwh("dram")),
        energy_consumed=_num(window.kwh),
        os=platform.platform(),
        python_version=platform.python_version(),
        gpu_count=str(len(window.gpu_shares)),
        tracking_mode=TRACKING_MODE,
        pue="1",
    )
    return row


def _num(value: float) -> str:
    return repr(float(value))  # shortest text that reads back the same float


def append_emissions_row(path: str | os.PathLike[str], row: Mapping[str, str]) -> None:
    """Append `row` to CodeCarbon's emissions.csv at `path`, with its header when the file is new or empty.

    An existing file keeps its own columns and order (an older CodeCarbon's); GreenaiError when it
    lacks CodeCarbon's required columns or cannot be written.
    """
    target = Path(path)
    try:
        header: Sequence[str] = CODECARBON_COLUMNS
        fresh = not target.exists() or target.stat().st_size == 0
        if not fresh:
            with target.open(newline="", encoding="utf-8") as f:
                header = next(csv.reader(f), []) or CODECARBON_COLUMNS
            missing = [c for c in REQUIRED if c not in header]
            if missing:
                raise GreenaiError(
                    f"{target}: not CodeCarbon's emissions.csv (no {', '.join(missing)} column)"
                )
        with target.open("a", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=list(header), restval="", extrasaction="ignore")
            if fresh:
                writer.writeheader()
            writer.writerow(dict(row))
    except OSError as e:
        raise GreenaiError(
            f"{target}: cannot write ({e.strerror or e}); check the path and its permissions"
        ) from e


def combined(windows: Sequence[Window]) -> Window:
    """Consecutive windows as one: joules, kWh, grams and seconds added; first begin to last end."""
    first, last = windows[0], windows[-1]

    def add(field: str) -> dict[str, float]:
        out: dict[str, float] = {}
        for w in windows:
            for k, v in getattr(w, field).items():
                out[k] = out.get(k, 0.0) + v
        return out

    co2e = None if any(w.co2e_g is None for w in windows) else add("co2e_g")
    total = sum(w.energy_j.get("total", 0.0) for w in windows)
    measured = sum(w.energy_j.get("total", 0.0) * (w.shares or {}).get("measured", 0.0) for w in windows)
    return Window(
        name=first.name,
        owner=last.owner,
        begin=first.begin,
        end=last.end,
        duration_s=sum(w.duration_s for w in windows),
        energy_j=add("energy_j"),
        kwh=sum(w.kwh for w in windows),
        co2e_g=co2e,
        sources=add("sources"),
        shares={"measured": measured / total, "estimated": 1 - measured / total} if total > 0 else None,
        gpu_shares={k: max(w.gpu_shares.get(k, 0.0) for w in windows) for k in add("gpu_shares")},
        interval_seconds=last.interval_seconds,
        interpolated_s=sum(w.interpolated_s for w in windows),
        note=last.note,
        raw={"windows": [w.raw for w in windows]},
    )


class EmissionsTracker:
    """CodeCarbon's `EmissionsTracker` interface over the agent's windows; `stop()` returns kg CO2e."""

    def __init__(
        self,
        project_name: str = "codecarbon",
        output_dir: str = ".",
        output_file: str = "emissions.csv",
        save_to_file: bool = True,
        experiment_id: str = "",
        socket_path: str | None = None,
        log: TextIO | None = None,
        **codecarbon_kwargs: Any,
    ) -> None:
        self.project_name = project_name
        self.output_path = Path(output_dir) / output_file
        self.save_to_file = save_to_file
        self.experiment_id = experiment_id
        self.run_id = str(uuid.uuid4())
        self.monitor = Monitor(socket_path)
        self.log = log
        self.codecarbon_kwargs = codecarbon_kwargs
        """Passed on to CodeCarbon's tracker in the fallback; ignored otherwise."""
        self.fallback: Any = None
        """CodeCarbon's own tracker, when no agent answered at start()."""
        self.final_emissions: float | None = None
        self.window: Window | None = None
        """The run so far (after flush() or stop())."""
        self._segments: list[Window] = []
        self._open: str | None = None
        self._tasks: list[str] = []

    def start(self) -> None:
        """Begin measuring: a window of the job, or CodeCarbon's own tracker when no agent answers."""
        try:
            self._begin_segment()
        except AgentUnavailable as e:
            self._fall_back(str(e))

    def flush(self) -> float | None:
        """Write the run so far (cumulative, as CodeCarbon does); its kg CO2e, None when unknown."""
        if self.fallback is not None:
            return _float_or_none(self.fallback.flush())
        if self._open is None:
            return None
        self._end_segment()
        kg = self._record()
        self._begin_segment()
        return kg

    def stop(self) -> float | None:
        """End the run, write its row; kg CO2e (location-based), None when the agent has no carbon model."""
        if self.fallback is not None:
            self.final_emissions = _float_or_none(self.fallback.stop())
            return self.final_emissions
        if self._open is None:
            return self.final_emissions
        self._end_segment()
        self.final_emissions = self._record()
        return self.final_emissions

    def start_task(self, task_name: str | None = None) -> None:
        """A window of its own for `task_name`, alongside the run's."""
        name = task_name or f"task-{len(self._tasks) + 1}"
        if self.fallback is not None:
            self.fallback.start_task(name)
            return
        self.monitor.begin_window(self._window_name(name))
        self._tasks.append(name)

    def stop_task(self, task_name: str | None = None) -> Any:
        """The task's Window (in the fallback, CodeCarbon's EmissionsData); no name: the last task started."""
        if self.fallback is not None:
            return self.fallback.stop_task(task_name)
        name = task_name or (self._tasks[-1] if self._tasks else "")
        if name in self._tasks:
            self._tasks.remove(name)
        return self.monitor.end_window(self._window_name(name))

    def __enter__(self) -> EmissionsTracker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _window_name(self, part: str) -> str:
        name = f"codecarbon {self.project_name} {part} {self.run_id[:8]}".replace("/", "_")
        return "".join(c if c.isprintable() else "?" for c in name)[:128]

    def _begin_segment(self) -> None:
        name = self._window_name(f"run-{len(self._segments) + 1}")
        self.monitor.begin_window(name)
        self._open = name

    def _end_segment(self) -> None:
        assert self._open is not None
        name, self._open = self._open, None
        self._segments.append(self.monitor.end_window(name))

    def _record(self) -> float | None:
        self.window = combined(self._segments)
        if self.save_to_file:
            row = emissions_row(self.window, self.project_name, self.run_id, self.experiment_id)
            append_emissions_row(self.output_path, row)
        co2e = self.window.co2e_g
        return None if co2e is None or "location" not in co2e else co2e["location"] / 1000

    def _fall_back(self, why: str) -> None:
        out = self.log or sys.stderr
        try:
            import codecarbon  # lazily: heavy, and only needed without an agent
        except ImportError:
            print(f"greenai: {why}; CodeCarbon is not installed either: no energy figure", file=out)
            return
        kwargs = dict(self.codecarbon_kwargs)
        if not self.save_to_file:  # CodeCarbon's default is to save; its save_to_* flags are deprecated
            kwargs["save_to_file"] = False
        offline = bool(kwargs.pop("offline", False))
        kind = codecarbon.OfflineEmissionsTracker if offline else codecarbon.EmissionsTracker
        print(f"greenai: {why}; measuring with CodeCarbon's {kind.__name__} instead (its figure)", file=out)
        self.fallback = kind(
            project_name=self.project_name,
            output_dir=str(self.output_path.parent),
            output_file=self.output_path.name,
            **kwargs,
        )
        self.fallback.start()


def _float_or_none(value: object) -> float | None:
    return float(value) if isinstance(value, (int, float)) else None


def track_emissions(fn: F | None = None, **tracker_kwargs: Any) -> Any:
    """CodeCarbon's decorator: `@track_emissions` or `@track_emissions(project_name=...)`; the function's
    result is returned unchanged, and the run's row written as EmissionsTracker writes it."""

    def decorate(function: F) -> F:
        @functools.wraps(function)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            tracker = EmissionsTracker(**tracker_kwargs)
            tracker.start()
            try:
                return function(*args, **kwargs)
            finally:
                tracker.stop()

        return wrapped  # type: ignore[return-value]

    return decorate(fn) if fn is not None else decorate
