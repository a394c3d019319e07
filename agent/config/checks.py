"""The one way a config value is checked: checkers, sections, one location type, one error.

A checker takes a raw YAML value and returns the converted value, or raises ValueError saying what
is wrong with it. A problem below the checked value is an `At`, whose `where` is the path from the
value down to the fault (`.main.pue[3]`); `section()` and `nested()` prefix their part of the path.
`validate()` turns any of these into a ConfigError, one line naming the file (or the command line),
the dotted key and what to do.

Text is stripped of surrounding whitespace everywhere; an empty or multi-line text is an error.
A section given as nothing (`collectors:` with no keys under it) is an empty section.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

Check = Callable[[Any], Any]
ENABLED_CHOICES = ("auto", "true", "false")


class ConfigError(Exception):
    """A bad configuration value; the message is one line meant for the user."""


class ArgumentError(ValueError):
    """A bad command-line argument or request value (not from the config file); one line for the user."""


class At(ValueError):
    """A problem at a place inside a checked value; `where` is the key path below it, like `[2].match`."""

    def __init__(self, where: str, problem: str) -> None:
        super().__init__(problem)
        self.where = where

    def under(self, prefix: str) -> At:
        """The same problem seen from `prefix` levels further up."""
        return type(self)(prefix + self.where, str(self))


class UnknownKey(At):
    """A key that the section does not have; the problem lists the keys it has."""


def nested(check: Check, value: Any, where: str) -> Any:
    """`check(value)`, its problems placed at `where` (`.key` or `[index]`)."""
    try:
        return check(value)
    except At as e:
        raise e.under(where) from None
    except ValueError as e:
        raise At(where, str(e)) from None


Schema = Mapping[str, Any]
"""Key -> a Check, or a Schema for a nested section."""


def section(schema: Schema, required: tuple[str, ...] = ()) -> Check:
    """A checker of a mapping: every key must be in `schema`, those in `required` present."""

    def check(value: Any) -> dict[str, Any]:
        if value is None:
            value = {}
        if not isinstance(value, Mapping):
            raise ValueError(f"must be a mapping of keys, got {value!r}")
        out: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str) or key not in schema:
                raise UnknownKey(f".{key}", f"(known keys here: {', '.join(sorted(schema))})")
            rule = schema[key]
            out[key] = nested(section(rule) if isinstance(rule, Mapping) else rule, item, f".{key}")
        missing = [k for k in required if k not in out]
        if missing:
            raise At(f".{missing[0]}", "is required")
        return out

    return check


def validate(raw: Mapping[Any, Any], schema: Schema, origin: str) -> dict[str, Any]:
    """`raw` checked against `schema`; raises ConfigError naming `origin` (a file) and the key."""
    try:
        return dict(section(schema)(raw))
    except At as e:
        key = e.where.removeprefix(".")
        if isinstance(e, UnknownKey):
            raise ConfigError(f"{origin}: unknown key {key!r} {e}") from None
        raise ConfigError(f"{origin}: key {key!r} {e}") from None


# ---- checkers: each returns the converted value or raises ValueError with the problem ----


def number(low: float, high: float, *, low_inclusive: bool = True) -> Check:
    def check(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"must be a number, got {value!r}")
        result = float(value)
        too_low = result < low if low_inclusive else result <= low
        if math.isnan(result) or too_low or result > high:
            bound = "from" if low_inclusive else "above"
            raise ValueError(f"must be {bound} {low:g} to {high:g}, got {value!r}")
        return result

    return check


def integer(low: int, high: int) -> Check:
    def check(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ValueError(f"must be a whole number from {low} to {high}, got {value!r}")
        return value

    return check


def optional(check: Check) -> Check:
    return lambda value: None if value is None else check(value)


def text(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"must be a non-empty string, got {value!r}")
    if any(ch in value for ch in "\n\r\0"):
        raise ValueError("must be a single line")
    return value.strip()


def path(value: Any) -> Path:
    checked = text(value)
    if not checked.startswith("/"):
        raise ValueError(f"must be an absolute path, got {value!r}")
    return Path(checked)


def enabled(value: Any) -> str:
    # YAML reads unquoted true/false as booleans; accept both spellings.
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str) and value.lower() in ENABLED_CHOICES:
        return value.lower()
    raise ValueError(f"must be one of {', '.join(ENABLED_CHOICES)}; got {value!r}")


def choice(*choices: str, fold_case: bool = False) -> Check:
    def check(value: Any) -> str:
        if isinstance(value, str) and (value.lower() if fold_case else value) in choices:
            return value.lower() if fold_case else value
        raise ValueError(f"must be one of {', '.join(choices)}; got {value!r}")

    return check


def flag(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    raise ValueError(f"must be true or false, got {value!r}")


def subset(*allowed: str) -> Check:
    """A list of some of `allowed`, duplicates dropped, in the order given."""

    def check(value: Any) -> tuple[str, ...]:
        if not isinstance(value, list) or not all(isinstance(v, str) and v in allowed for v in value):
            raise ValueError(f"must be a list of any of {', '.join(allowed)}; got {value!r}")
        return tuple(dict.fromkeys(value))

    return check


def url(value: Any) -> str:
    """An http(s) URL, or "" (off) for an empty value."""
    if value in ("", None):
        return ""
    checked = text(value)
    if not checked.startswith(("http://", "https://")):
        raise ValueError(f"must be an http:// or https:// URL, got {value!r}")
    return checked


def program(value: Any) -> str:
    """A program by path or name on PATH, or "" (off) for an empty value."""
    if value in ("", None):
        return ""
    return text(value)


def regexes(value: Any) -> tuple[str, ...]:
    """One regex or a list of them (checked to compile)."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        raise ValueError(f"must be a list of node-name regexes, got {value!r}")
    for i, item in enumerate(value):
        try:
            re.compile(nested(text, item, f"[{i}]"))
        except re.error as e:
            raise At(f"[{i}]", f"is not a valid regex ({e})") from None
    return tuple(v.strip() for v in value)


def prose(value: Any) -> str:
    """Free text that may span lines in the YAML (`>` or `|` blocks): runs of whitespace become one space."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"must be a non-empty string, got {value!r}")
    if "\0" in value:
        raise ValueError("must not contain NUL characters")
    return " ".join(value.split())


def prose_list(value: Any) -> tuple[str, ...]:
    """One free text, or a list of them."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        raise ValueError(f"must be a text or a list of texts, got {value!r}")
    return tuple(nested(prose, item, f"[{i}]") for i, item in enumerate(value))
