"""`greenai run [--csv FILE] [--card] [--socket PATH] -- CMD ...`: run CMD in a window of the agent's,
then say how much energy and CO2e the job used meanwhile.

The command runs whether or not an agent answers; its exit code (128 + n for signal n) is ours.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import TextIO

from agent.client import GreenaiError, Monitor, Window
from agent.ledger.provenance import kinds_sentence, tally
from agent.tracker import append_emissions_row, emissions_row
from agent.units import JOULES_PER_KWH, energy_text, mass_text, share_text, sig

FORWARDED = (signal.SIGINT, signal.SIGTERM)
EXIT_NOT_FOUND, EXIT_NOT_EXECUTABLE = 127, 126
"""A shell's codes for a command that cannot be found or run."""


def window_name(command: Sequence[str], pid: int) -> str:
    """`train.py --lr 3e-4 [pid 1234]`: the program's base name and its arguments, at most 128 printable
    characters with no "/", and the pid, so that two runs in one job do not collide."""
    words = [os.path.basename(command[0]), *command[1:]]
    text = "".join(c if c.isprintable() and c != "/" else "_" for c in " ".join(words))
    tail = f" [pid {pid}]"
    return text[: 128 - len(tail)] + tail


def run(
    command: Sequence[str],
    socket_path: str | None,
    csv_path: Path | None,
    card: bool,
    out: TextIO,
    err: TextIO,
) -> int:
    """Run `command` in a window; the statement on `err`, a card on `out`; the command's exit code."""
    monitor = Monitor(socket_path)
    name = window_name(command, os.getpid())
    why_none: str | None = None
    try:
        monitor.begin_window(name)
    except GreenaiError as e:
        why_none = str(e)
    code = _run_child(command, err)
    if why_none is not None:
        err.write(f"greenai: no energy figure for this run: {why_none}\n")
        return code
    try:
        window = monitor.end_window(name)
    except GreenaiError as e:
        err.write(f"greenai: no energy figure for this run: {e}\n")
        return code
    shown = " ".join(command)
    err.write(statement(window, shown) + "\n")
    if csv_path is not None:
        try:
            append_emissions_row(csv_path, emissions_row(window, Path(command[0]).name, str(uuid.uuid4())))
        except GreenaiError as e:
            err.write(f"greenai: {e}\n")
    if card:
        out.write(card_text(window, shown))
    return code


def _run_child(command: Sequence[str], err: TextIO) -> int:
    """Run `command` with our stdio, forwarding SIGINT and SIGTERM; its exit code, 128 + n for signal n."""
    try:
        child = subprocess.Popen(list(command))
    except FileNotFoundError:
        err.write(f"greenai: {command[0]}: command not found\n")
        return EXIT_NOT_FOUND
    except PermissionError:
        err.write(f"greenai: {command[0]}: permission denied\n")
        return EXIT_NOT_EXECUTABLE

    def forward(signum: int, _frame: FrameType | None) -> None:
        # Ctrl-C in a terminal reaches the whole foreground group, the child too: once is enough.
        if signum == signal.SIGINT and _terminal_sent_it():
            return
        child.send_signal(signum)

    previous = {s: signal.signal(s, forward) for s in FORWARDED}
    try:
        returncode = child.wait()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    return 128 - returncode if returncode < 0 else returncode


def _terminal_sent_it() -> bool:
    """Whether we are in the terminal's foreground process group, to which it sends Ctrl-C itself."""
    try:
        return os.isatty(sys.stdin.fileno()) and os.tcgetpgrp(sys.stdin.fileno()) == os.getpgrp()
    except (OSError, ValueError):
        return False


def _duration_text(seconds: float) -> str:
    if seconds < 60:
        return f"{sig(seconds)} s"
    minutes = int(seconds // 60)
    if minutes < 60:
        return f"{minutes} min {int(seconds % 60)} s"
    return f"{minutes // 60} h {minutes % 60:02d} min"


def _whose(window: Window) -> tuple[str, str]:
    """Who used the energy, and what the figure therefore covers."""
    owner = window.owner
    if window.is_job:
        return (
            f"the job {owner.get('job')}",
            " It is the job's figure: other steps of the job that ran at the same time are in it.",
        )
    return (
        f"the process tree of pid {owner.get('pid')}",
        " It is the process tree's figure: the command is in no job, so its CPU share is per-process "
        "accounting.",
    )


def _components(window: Window) -> str:
    parts = [
        f"{component} {energy_text(joules / JOULES_PER_KWH)}"
        for component, joules in window.energy_j.items()
        if component != "total" and joules > 0
    ]
    return f" ({', '.join(parts)})" if parts else ""


def _co2e(window: Window) -> str:
    co2e = window.co2e_g
    if co2e is None:
        return "CO2e unknown (the agent has no carbon model: a carbon section in its config)"
    parts = [f"{mass_text(co2e[b])} CO2e {b}-based" for b in ("location", "market") if b in co2e]
    return ", ".join(parts) or "CO2e unknown"


def statement(window: Window, shown: str) -> str:
    """One paragraph: what ran, whose energy, how much in readable units, CO2e and where it comes from."""
    if window.energy_j.get("total", 0.0) <= 0 and window.interpolated_s >= window.duration_s:
        return (
            f"greenai: `{shown}` ran {_duration_text(window.duration_s)} and ended before the agent, "
            f"sampling every {sig(window.interval_seconds)} s, had attributed any of it: no energy "
            "figure for so short a span (a shorter interval_seconds, or a longer run, gives one)."
        )
    kinds = kinds_sentence(tally((s, j / JOULES_PER_KWH) for s, j in window.sources.items()))
    edges = (
        f" {sig(window.interpolated_s)} s at the window's edges were interpolated at the agent's "
        f"{sig(window.interval_seconds)} s interval."
        if window.interpolated_s > 0
        else ""
    )
    who, covers = _whose(window)
    return (
        f"greenai: `{shown}` ran {_duration_text(window.duration_s)}; meanwhile {who} used "
        f"{energy_text(window.kwh)} of IT energy before PUE{_components(window)}, {_co2e(window)}."
        f"{covers} {kinds}{edges} Measured by the greenai agent on this node."
    )


def card_text(window: Window, shown: str) -> str:
    """A short Markdown block of the run's figures and its statement (not a full Energy Card: no ledger)."""
    co2e = window.co2e_g or {}
    rows = [
        ("command", "`" + shown.replace("`", "'") + "`"),
        ("whose energy", "the job " + str(window.owner.get("job")) if window.is_job else "a process tree"),
        ("duration", _duration_text(window.duration_s)),
        ("energy (IT, before PUE)", energy_text(window.kwh)),
        *(
            (f"energy {c}", energy_text(j / JOULES_PER_KWH))
            for c, j in window.energy_j.items()
            if c != "total"
        ),
        ("CO2e location-based", mass_text(co2e["location"]) if "location" in co2e else "unknown"),
        ("CO2e market-based", mass_text(co2e["market"]) if "market" in co2e else "unknown"),
        ("measured share", share_text((window.shares or {}).get("measured"))),
        ("sources", ", ".join(sorted(window.sources)) or "none"),
        ("measured by", "greenai-agent, per job, on this node"),
    ]
    table = "\n".join(f"| {k} | {v.replace('|', '/')} |" for k, v in rows)
    return f"## Energy of this run\n\n| field | value |\n|---|---|\n{table}\n\n{statement(window, shown)}\n"
