"""Slurm job metadata (user, account, partition, name, state, start and end time) from `scontrol`.

Look-ups run in a background thread and land in a cache, so a sample never waits on slurmctld:
`get()` answers from the cache at once and queues an unknown job id for the thread. Jobs that are
still running are looked up again every `refresh_seconds`; a job nobody asked about for a while is
forgotten. A failing or hanging scontrol is logged at debug and retried at the next refresh.

Slurm 23.02 and later print JSON (`scontrol --json show job`); 22.05 does not know `--json`, and its
`squeue --json` ignores the job filter and dumps every job of the cluster, so there the one-line
text form (`scontrol -o show job <id>`) is parsed instead. That text is ambiguous when a job name
contains the very fields that follow it (`UserId=x(1) GroupId=...`): such a record is not guessed
at, its user, account and name stay empty.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from collectors.base import Clock, Probe, Status
from collectors.workloads import JobInfo

log = logging.getLogger("greenai.slurm")

Runner = Callable[..., "subprocess.CompletedProcess[bytes]"]

FINISHED_STATES = frozenset(
    {
        "BOOT_FAIL",
        "CANCELLED",
        "COMPLETED",
        "DEADLINE",
        "FAILED",
        "NODE_FAIL",
        "OUT_OF_MEMORY",
        "PREEMPTED",
        "REVOKED",
        "SPECIAL_EXIT",
        "TIMEOUT",
    }
)
MAX_NAME_CHARS = 256
"""Longer job names are cut: they end up in metric labels and CLI tables."""

_JOB_ID = re.compile(r"^\d{1,12}(?:[_+]\d{1,12})?$")
_TEXT_HEAD = re.compile(r"^JobId=(?P<job_id>\d+) (?:ArrayJobId=\S+ ArrayTaskId=\S+ )?JobName=")
# The fields that follow JobName in `scontrol -o show job`, as a whole, so that a name merely
# containing "UserId=" does not match; a name containing all of them makes the record ambiguous.
_TEXT_AFTER_NAME = re.compile(
    r" UserId=(?P<user>[^\s(]*)\((?P<uid>\d+)\) GroupId=\S*\(\d+\) MCS_label=\S* Priority=\d+ "
    r"Nice=-?\d+ Account=(?P<account>\S*) QOS=\S* JobState=(?P<state>[A-Z_]+) "
)
_TEXT_FIELD = r" {key}=(?P<value>\S*)"


@dataclass(frozen=True)
class SlurmJob:
    """What slurmctld says about one job; times in Unix seconds, None where not (yet) known."""

    job_id: str
    info: JobInfo
    state: str = ""
    start_time: float | None = None
    end_time: float | None = None
    """Set only once the job has finished (for a running job Slurm shows its time limit here)."""

    @property
    def finished(self) -> bool:
        return self.state in FINISHED_STATES


class ParseError(ValueError):
    """scontrol printed something that is not a job record."""


# ---- parsing: pure functions over scontrol's output ----


def parse_json(output: bytes) -> dict[str, SlurmJob]:
    """Jobs from `scontrol --json show job` (or `squeue --json`), keyed by job id."""
    try:
        data = json.loads(output.decode("utf-8", errors="replace"))
    except ValueError as e:
        raise ParseError(f"not JSON: {e}") from e
    if not isinstance(data, dict) or not isinstance(data.get("jobs"), list):
        raise ParseError("no jobs list in the JSON")
    jobs = {}
    for raw in data["jobs"]:
        if isinstance(raw, dict):
            job = _job_from_json(raw)
            if job is not None:
                jobs[job.job_id] = job
    return jobs


def parse_json_job(output: bytes, job_id: str) -> SlurmJob | None:
    """The job with this id from `scontrol --json show job <id>`; None if it is not in there."""
    return parse_json(output).get(job_id)


def parse_text_job(output: bytes, job_id: str) -> SlurmJob | None:
    """The job from `scontrol -o show job <id>`; None if the record is of another job."""
    job = parse_text(output)
    return job if job.job_id == job_id else None


def _job_from_json(raw: Mapping[str, Any]) -> SlurmJob | None:
    job_id = _json_number(raw.get("job_id"))
    if job_id is None:
        return None
    state = _json_state(raw.get("job_state"))
    uid = _json_number(raw.get("user_id"))
    info = JobInfo(
        user=_json_text(raw.get("user_name")),
        uid=int(uid) if uid is not None else None,
        name=_json_text(raw.get("name"))[:MAX_NAME_CHARS],
        account=_json_text(raw.get("account")),
        partition=_json_text(raw.get("partition")),
    )
    return SlurmJob(
        job_id=str(int(job_id)),
        info=info,
        state=state,
        start_time=_positive(_json_number(raw.get("start_time"))) if state != "PENDING" else None,
        end_time=_positive(_json_number(raw.get("end_time"))) if state in FINISHED_STATES else None,
    )


def _json_number(value: Any) -> float | None:
    """A number as Slurm's JSON gives it: plain (v0.0.38), or {"set", "infinite", "number"} (0.0.39+)."""
    if isinstance(value, dict):
        if not value.get("set", True) or value.get("infinite"):
            return None
        value = value.get("number")
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _json_state(value: Any) -> str:
    """The base job state: a string (v0.0.38) or a list of state and flags (v0.0.39+)."""
    if isinstance(value, list):
        states = [s for s in value if isinstance(s, str)]
        base = [s for s in states if s in FINISHED_STATES or s in ("PENDING", "RUNNING", "SUSPENDED")]
        return (base or states or [""])[0]
    return value if isinstance(value, str) else ""


def _json_text(value: Any) -> str:
    return value if isinstance(value, str) and value != "(null)" else ""


def _positive(value: float | None) -> float | None:
    return value if value is not None and value > 0 else None


def parse_text(output: bytes) -> SlurmJob:
    """The first job record of `scontrol -o show job <id>`."""
    text = output.decode("utf-8", errors="replace")
    head = _TEXT_HEAD.match(text)
    if head is None:
        raise ParseError(f"no JobId=... JobName= at the start of {text[:60]!r}")
    job_id = head.group("job_id")
    after = list(_TEXT_AFTER_NAME.finditer(text, head.end()))
    if len(after) != 1:
        log.debug("scontrol record of job %s is ambiguous (%d UserId= sequences)", job_id, len(after))
        return SlurmJob(job_id, JobInfo())
    m = after[0]
    rest = text[m.end() - 1 :]
    state = m.group("state")
    info = JobInfo(
        user=m.group("user"),
        uid=int(m.group("uid")),
        name=text[head.end() : m.start()][:MAX_NAME_CHARS],
        account=_text_value(m.group("account")),
        partition=_text_value(_text_field(rest, "Partition")),
    )
    return SlurmJob(
        job_id,
        info,
        state=state,
        start_time=_text_time(_text_field(rest, "StartTime")) if state != "PENDING" else None,
        end_time=_text_time(_text_field(rest, "EndTime")) if state in FINISHED_STATES else None,
    )


def _text_field(rest: str, key: str) -> str:
    m = re.search(_TEXT_FIELD.format(key=re.escape(key)), rest)
    return m.group("value") if m else ""


def _text_value(value: str) -> str:
    return "" if value in ("(null)", "N/A") else value


def _text_time(value: str) -> float | None:
    """scontrol's local-time timestamp (2024-05-01T12:00:00); None for Unknown, None or N/A."""
    try:
        return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S").timestamp()
    except ValueError:
        return None


# ---- the cache and its background thread ----


@dataclass
class _Entry:
    job: SlurmJob | None
    asked: float


@dataclass
class _State:
    entries: dict[str, _Entry] = field(default_factory=dict)
    queued: set[str] = field(default_factory=set)


class SlurmMetadata:
    """Job metadata from scontrol, cached; `get()` never blocks on Slurm."""

    def __init__(
        self,
        scontrol: str,
        refresh_seconds: float,
        clock: Clock = time.monotonic,
        runner: Runner = subprocess.run,
        timeout_seconds: float = 10.0,
        forget_seconds: float | None = None,
    ) -> None:
        self._refresh_seconds = refresh_seconds
        self._clock = clock
        self._runner = runner
        self._timeout_seconds = timeout_seconds
        self._forget_seconds = (
            forget_seconds if forget_seconds is not None else max(10 * refresh_seconds, 600)
        )
        self._json: bool | None = None  # does this scontrol know --json? None until tried
        self._state = _State()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._probe, self._scontrol = _resolve(scontrol)

    def probe(self) -> Probe:
        """Whether look-ups run, with a one-line reason for `greenai doctor`."""
        return self._probe

    @property
    def enabled(self) -> bool:
        return self._scontrol is not None

    def get(self, job_id: str) -> JobInfo | None:
        """What is known about the job now; an unknown id is queued for the background thread."""
        job = self.job(job_id)
        return job.info if job is not None else None

    def job(self, job_id: str) -> SlurmJob | None:
        """The cached record of the job (state and times included); queues a look-up when unknown."""
        if self._scontrol is None or not _JOB_ID.match(job_id):
            return None
        now = self._clock()
        with self._lock:
            entry = self._state.entries.get(job_id)
            if entry is not None:
                entry.asked = now
                return entry.job
            self._state.entries[job_id] = _Entry(None, asked=now)
            self._state.queued.add(job_id)
        self._ensure_thread()
        self._wake.set()
        return None

    def close(self, timeout: float = 5.0) -> None:
        """Stop the background thread (a running scontrol is waited for, at most its timeout)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _ensure_thread(self) -> None:
        with self._lock:
            if self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(target=self._run, name="slurm-metadata", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        next_refresh = self._clock() + self._refresh_seconds
        while not self._stop.is_set():
            self._wake.wait(max(0.0, min(next_refresh - self._clock(), self._refresh_seconds)))
            self._wake.clear()
            if self._stop.is_set():
                return
            refresh = self._clock() >= next_refresh
            if refresh:
                next_refresh = self._clock() + self._refresh_seconds
            for job_id in self._due(refresh):
                if self._stop.is_set():
                    return
                self._store(job_id, self._lookup(job_id))

    def _due(self, refresh: bool) -> list[str]:
        """Queued ids, and on a refresh every known job that has not finished; forgets stale ones."""
        now = self._clock()
        with self._lock:
            entries = self._state.entries
            for job_id in [j for j, e in entries.items() if now - e.asked > self._forget_seconds]:
                del entries[job_id]
                self._state.queued.discard(job_id)
            due = set(self._state.queued)
            self._state.queued.clear()
            if refresh:
                due |= {j for j, e in entries.items() if e.job is None or not e.job.finished}
        return sorted(due, key=lambda j: (len(j), j))

    def _store(self, job_id: str, job: SlurmJob | _Failed | None) -> None:
        with self._lock:
            entry = self._state.entries.get(job_id)
            if entry is None or isinstance(job, _Failed):
                return  # forgotten meanwhile, or failed: keep what we had, retry at the next refresh
            entry.job = job

    def _lookup(self, job_id: str) -> SlurmJob | _Failed | None:
        """The job as scontrol shows it; None if Slurm does not know it; _FAILED if scontrol failed."""
        if self._json is not False:
            result = self._scontrol_run("--json", "show", "job", job_id)
            if result is None:
                return _FAILED
            if result.returncode != 0 and _no_json_option(result):
                log.debug("%s has no --json; parsing its -o text instead", self._scontrol)
                self._json = False
            else:
                return self._answer(job_id, result, parse_json_job)
        return self._answer(job_id, self._scontrol_run("-o", "show", "job", job_id), parse_text_job)

    def _answer(
        self,
        job_id: str,
        result: subprocess.CompletedProcess[bytes] | None,
        parse: Callable[[bytes, str], SlurmJob | None],
    ) -> SlurmJob | _Failed | None:
        if result is None:
            return _FAILED
        if result.returncode != 0:
            if b"Invalid job id" in result.stderr + result.stdout:
                return None
            lines = result.stderr.decode("utf-8", errors="replace").strip().splitlines()
            log.debug("scontrol show job %s exited with %s: %s", job_id, result.returncode, lines[-1:])
            return _FAILED
        try:
            job = parse(result.stdout, job_id)
        except ParseError as e:
            log.debug("scontrol show job %s: %s", job_id, e)
            return _FAILED
        if parse is parse_json_job:
            self._json = True
        return job

    def _scontrol_run(self, *args: str) -> subprocess.CompletedProcess[bytes] | None:
        assert self._scontrol is not None
        argv = [self._scontrol, *args]
        try:
            return self._runner(
                argv,
                capture_output=True,
                timeout=self._timeout_seconds,
                check=False,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired:
            log.debug("%s timed out after %gs; retrying later", " ".join(argv), self._timeout_seconds)
        except OSError as e:
            log.debug("%s failed to start: %s; retrying later", " ".join(argv), e)
        return None


class _Failed:
    """A look-up that did not answer."""


_FAILED = _Failed()


def _no_json_option(result: subprocess.CompletedProcess[bytes]) -> bool:
    """Slurm before 23.02: scontrol rejects --json as an unknown option."""
    err = result.stderr.lower()
    return b"unrecognized option" in err or b"invalid option" in err or b"unknown option" in err


def _resolve(scontrol: str) -> tuple[Probe, str | None]:
    if not scontrol:
        return Probe(Status.DISABLED, "Slurm job look-ups turned off (slurm.scontrol is empty)"), None
    path = shutil.which(scontrol)
    if path is None:
        return (
            Probe(
                Status.NOT_FOUND,
                f"{scontrol} not found on PATH: Slurm jobs are measured, without user, account and name",
                fix="install the Slurm client, or set slurm.scontrol to its path",
            ),
            None,
        )
    return Probe(Status.OK, f"Slurm job names, users and accounts from {path}"), path
