"""What a job's work was: project, phase and model, from its own declaration or the config's rules.

Precedence, per field: a job's declaration in its environment (`GREENAI_PROJECT`, `GREENAI_PHASE`,
`GREENAI_MODEL`) wins over the rules, since the job knows best what it runs; a field it leaves out
comes from the rules. Of the rules, the first whose `match` fits the job wins entirely: its project,
phase and model apply, empty where it sets none, and later rules are not consulted. A rule with no
`match` fits every job, so a catch-all default goes last.

The rules themselves (`work.rules`) are read and checked by agent.config.work.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from agent.config.work import MAX_TEXT, PHASES, WorkRule
from collectors.jobs.paths import clean_text
from collectors.smallfiles import read_small
from collectors.workloads import JobInfo, JobKey

log = logging.getLogger("greenai.work")

ENV_VARS = {"project": b"GREENAI_PROJECT", "phase": b"GREENAI_PHASE", "model": b"GREENAI_MODEL"}
ENV_READ_SIGHTINGS = frozenset({1, 2, 4, 8, 16, 32})
"""The scans (counted per job) on which its environment is read until a declaration is found: a
job's first processes may be a wrapper that has not set its variables yet; then it is never read again."""
PIDS_PER_READ = 8


@dataclass(frozen=True)
class Work:
    """A job's project, phase and model ("" where unknown) and where they came from."""

    project: str = ""
    phase: str = ""
    model: str = ""
    source: str = ""
    """"env", "rule N" (its index), "env+rule N", or "" when nothing says."""


def classify(key: JobKey, info: JobInfo, rules: Sequence[WorkRule], declared: Mapping[str, str]) -> Work:
    """The job's work: `declared` (from its environment, already checked) per field, else the first rule."""
    rule_index, rule = next(
        ((i, r) for i, r in enumerate(rules) if r.matches(key, info)), (None, WorkRule({}))
    )
    values = {f: declared.get(f) or getattr(rule, f) for f in ("project", "phase", "model")}
    sources = []
    if any(declared.get(f) for f in values):
        sources.append("env")
    if rule_index is not None and any(not declared.get(f) and getattr(rule, f) for f in values):
        sources.append(f"rule {rule_index}")
    return Work(values["project"], values["phase"], values["model"], "+".join(sources))


def parse_environ(environ: bytes) -> dict[str, str]:
    """The GREENAI_* declarations in a NUL-separated environment block, cleaned; phase may be invalid."""
    out: dict[str, str] = {}
    for entry in environ.split(b"\0"):
        name, sep, value = entry.partition(b"=")
        for field, var in ENV_VARS.items():
            if sep and name == var:
                text = clean_text(value.decode("utf-8", "surrogateescape"), MAX_TEXT).strip()
                if text:
                    out[field] = text
    return out


class WorkClassifier:
    """Gives each job's JobInfo its project, phase and model; cheap on every scan.

    `job_pids(key, limit)` lists some of a job's processes; their environments are read only on the
    scans in ENV_READ_SIGHTINGS, until one declares something.
    """

    def __init__(
        self,
        rules: Sequence[WorkRule],
        procfs: str,
        job_pids: Callable[[JobKey, int], Sequence[int]] | None = None,
    ) -> None:
        self._rules = tuple(rules)
        self._procfs = procfs
        self._job_pids = job_pids
        self._sightings: dict[JobKey, int] = {}
        self._declared: dict[JobKey, dict[str, str]] = {}
        self._done: dict[JobKey, tuple[JobInfo, JobInfo]] = {}
        """key -> (info as discovered, info with the work added), while the declaration is settled."""
        self._warned: set[str] = set()

    def enrich(self, key: JobKey, info: JobInfo) -> JobInfo:
        """`info` with project, phase and model filled in."""
        cached = self._done.get(key)
        if cached is not None and (cached[0] is info or cached[0] == info):
            return cached[1]
        sightings = self._sightings.get(key, 0) + 1
        self._sightings[key] = sightings
        declared = self._declared.get(key)
        if declared is None and sightings in ENV_READ_SIGHTINGS and self._job_pids is not None:
            declared = self._read_declaration(key)
            if declared is not None:
                self._declared[key] = declared
        work = classify(key, info, self._rules, declared or {})
        enriched = replace(info, project=work.project, phase=work.phase, model=work.model)
        if declared is not None or sightings >= max(ENV_READ_SIGHTINGS) or self._job_pids is None:
            self._done[key] = (info, enriched)
        return enriched

    def forget(self, live: Mapping[JobKey, Any]) -> None:
        """Drop what is kept for jobs no longer running."""
        for cache in (self._sightings, self._declared, self._done):
            for key in [k for k in cache if k not in live]:
                del cache[key]

    def _read_declaration(self, key: JobKey) -> dict[str, str] | None:
        assert self._job_pids is not None
        for pid in self._job_pids(key, PIDS_PER_READ):
            try:
                environ = read_small(os.path.join(self._procfs, str(pid), "environ"))
            except OSError:
                continue
            declared = parse_environ(environ)
            if declared:
                return self._checked(key, declared)
        return None

    def _checked(self, key: JobKey, declared: dict[str, str]) -> dict[str, str]:
        phase = declared.get("phase")
        if phase is not None and phase not in PHASES:
            if phase not in self._warned:
                self._warned.add(phase)
                log.warning(
                    "job %s declares GREENAI_PHASE=%r, not one of %s; booking it as other",
                    key, phase, ", ".join(PHASES),
                )  # fmt: skip
            declared = {**declared, "phase": "other"}
        return declared
