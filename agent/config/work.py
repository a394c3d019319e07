"""The `work.rules` section: which project, phase and model a job's work is, by patterns on its
metadata; and the counts of useful work (tokens, samples) a job may be annotated with.

A rule's `match` keys are regular expressions searched (not anchored: write `^...$` to anchor) in
the job's `name`, `user`, `scheduler`, `account` (Slurm account; jobs other than Kubernetes pods)
and `namespace` (a Kubernetes pod's namespace). Every key given must match. Pod labels are not
collected, so there is no `labels` key. How rules combine with a job's own declaration is
agent.live.work's.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from agent.config.checks import ArgumentError, At
from collectors.workloads import JobInfo, JobKey

PHASES = ("pretraining", "fine-tuning", "inference", "evaluation", "other")
MATCH_KEYS = ("name", "user", "scheduler", "account", "namespace")
MAX_TEXT = 200
"""Longest project, model or phase kept from a job's environment or the config."""


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


def parse_rules(value: Any) -> tuple[WorkRule, ...]:
    """`work.rules` from the config file; raises At naming the entry and key at fault."""
    if not isinstance(value, list):
        raise At("", f"must be a list of rules, got {value!r}")
    return tuple(_rule(i, entry) for i, entry in enumerate(value))


def _rule(index: int, entry: Any) -> WorkRule:
    at = f"[{index}]"
    if not isinstance(entry, Mapping):
        raise At(at, f"must be a mapping with match, project, phase, model; got {entry!r}")
    known = ("match", "project", "phase", "model")
    for key in entry:
        if key not in known:
            raise At(f"{at}.{key}", f"is not a rule key (known: {', '.join(known)})")
    if not any(entry.get(k) for k in ("project", "phase", "model")):
        raise At(at, "sets none of project, phase, model")
    match = entry.get("match") or {}
    if not isinstance(match, Mapping):
        raise At(f"{at}.match", f"must be a mapping of {', '.join(MATCH_KEYS)} to regexes")
    patterns: dict[str, re.Pattern[str]] = {}
    for field, pattern in match.items():
        where = f"{at}.match.{field}"
        if field not in MATCH_KEYS:
            raise At(where, f"cannot be matched (known: {', '.join(MATCH_KEYS)})")
        if not isinstance(pattern, str):
            raise At(where, f"must be a regular expression string, got {pattern!r}")
        try:
            patterns[field] = re.compile(pattern)
        except re.error as e:
            raise At(where, f"is not a valid regular expression ({e}): {pattern!r}") from None
    values = {}
    for field in ("project", "phase", "model"):
        text = entry.get(field, "")
        if text is None:
            text = ""
        if not isinstance(text, str) or len(text) > MAX_TEXT or any(c in text for c in "\n\r\0"):
            raise At(f"{at}.{field}", f"must be one line of at most {MAX_TEXT} characters")
        values[field] = text.strip()
    if values["phase"] and values["phase"] not in PHASES:
        raise At(f"{at}.phase", f"must be one of {', '.join(PHASES)}; got {values['phase']!r}")
    return WorkRule(patterns, values["project"], values["phase"], values["model"])


MAX_COUNT = 10**15
"""The most tokens or samples one annotation may add: far above any real run, far below SQLite's limit."""


def parse_count(value: Any, what: str, *, text: bool = False) -> int:
    """A count of tokens or samples, checked: a whole JSON number, or with `text` a command-line word."""
    if text and isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_COUNT:
        raise ArgumentError(f"{what} must be a whole number from 0 to {MAX_COUNT:.0e}, got {value!r}")
    return value
