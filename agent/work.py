"""What a job's work was: project, phase and model, from its own declaration or the config's rules.

Precedence, per field: a job's declaration in its environment (`GREENAI_PROJECT`, `GREENAI_PHASE`,
`GREENAI_MODEL`) wins over the rules, since the job knows best what it runs; a field it leaves out
comes from the rules. Of the rules, the first whose `match` fits the job wins entirely: its project,
phase and model apply, empty where it sets none, and later rules are not consulted. A rule with no
`match` fits every job, so a catch-all default goes last.

A rule's `match` keys are regular expressions searched (not anchored: write `^...$` to anchor) in
the job's `name`, `user`, `scheduler`, `account` (Slurm account; jobs other than Kubernetes pods)
and `namespace` (a Kubernetes pod's namespace). Every key given must match. Pod labels are not
collected, so there is no `labels` key.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from collectors.jobpaths import clean_text
from collectors.smallfiles import read_small
from collectors.workloads import JobInfo, JobKey

log = logging.getLogger(__name__)

PHASES = ("pretraining", "fine-tuning", "inference", "evaluation", "other")
MATCH_KEYS = ("name", "user", "scheduler", "account", "namespace")
ENV_VARS = {"project": b"GREENAI_PROJECT", "phase": b"GREENAI_PHASE", "model": b"GREENAI_MODEL"}
MAX_TEXT = 200
"""Longest project, model or phase kept from a job's environment or the config."""
ENV_READ_SIGHTINGS = frozenset({1, 2, 4, 8, 16, 32})
"""The scans (counted per job) on which its environment is read until a declaration is found: a
job's first processes may be a wrapper that has not set its variables yet; then it is never read again."""
PIDS_PER_READ = 8


class RuleError(ValueError):
    """A bad `work.rules` entry; `where` is its place below the key, such as `[2].match.name`."""

    def __init__(self, where: str, problem: str) -> None:
        super().__init__(problem)
        self.where = where


@dataclass(frozen=True)
class WorkRule:
    """One `work.rules` entry: patterns on the job's metadata, and what a matching job's work is."""

    match: Mapping[str, re.Pattern[str]]
    project: str = ""
    phase: str = ""
    model: str = ""

    def matches(self, key: JobKey, info: JobInfo) -> bool:
        k8s = key.scheduler == "kubernetes"
        fields = {
            "name": info.name,
            "user": info.user,
            "scheduler": key.scheduler,
            "account": "" if k8s else info.account,
            "namespace": info.account if k8s else "",
        }
        return all(pattern.search(fields[field]) for field, pattern in self.match.items())


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
        if cached is not None and cached[0] == info:
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


def parse_rules(value: Any) -> tuple[WorkRule, ...]:
    """`work.rules` from the config file; raises RuleError naming the entry and key at fault."""
    if not isinstance(value, list):
        raise RuleError("", f"must be a list of rules, got {value!r}")
    return tuple(_rule(i, entry) for i, entry in enumerate(value))


def _rule(index: int, entry: Any) -> WorkRule:
    at = f"[{index}]"
    if not isinstance(entry, Mapping):
        raise RuleError(at, f"must be a mapping with match, project, phase, model; got {entry!r}")
    known = ("match", "project", "phase", "model")
    for key in entry:
        if key not in known:
            raise RuleError(f"{at}.{key}", f"is not a rule key (known: {', '.join(known)})")
    if not any(entry.get(k) for k in ("project", "phase", "model")):
        raise RuleError(at, "sets none of project, phase, model")
    match = entry.get("match") or {}
    if not isinstance(match, Mapping):
        raise RuleError(f"{at}.match", f"must be a mapping of {', '.join(MATCH_KEYS)} to regexes")
    patterns: dict[str, re.Pattern[str]] = {}
    for field, pattern in match.items():
        where = f"{at}.match.{field}"
        if field not in MATCH_KEYS:
            raise RuleError(where, f"cannot be matched (known: {', '.join(MATCH_KEYS)})")
        if not isinstance(pattern, str):
            raise RuleError(where, f"must be a regular expression string, got {pattern!r}")
        try:
            patterns[field] = re.compile(pattern)
        except re.error as e:
            raise RuleError(where, f"is not a valid regular expression ({e}): {pattern!r}") from None
    values = {}
    for field in ("project", "phase", "model"):
        text = entry.get(field, "")
        if text is None:
            text = ""
        if not isinstance(text, str) or len(text) > MAX_TEXT or any(c in text for c in "\n\r\0"):
            raise RuleError(f"{at}.{field}", f"must be one line of at most {MAX_TEXT} characters")
        values[field] = text
    if values["phase"] and values["phase"] not in PHASES:
        raise RuleError(f"{at}.phase", f"must be one of {', '.join(PHASES)}; got {values['phase']!r}")
    return WorkRule(patterns, values["project"], values["phase"], values["model"])


MAX_COUNT = 10**15
"""The most tokens or samples one annotation may add: far above any real run, far below SQLite's limit."""


def parse_count(value: Any, what: str, *, text: bool = False) -> int:
    """A count of tokens or samples, checked: a whole JSON number, or with `text` a command-line word."""
    if text and isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_COUNT:
        raise ValueError(f"{what} must be a whole number from 0 to {MAX_COUNT:.0e}, got {value!r}")
    return value
