"""/metrics as bytes: rendered once per published sample, kept, and served as they are (gzip too).

Prometheus, a second Prometheus of an HA pair, and a person with curl all get the same bytes until the
next sample is published; only the first scrape after a sample renders. Rendering itself is the text
format 0.0.4 or OpenMetrics 1.0, written here rather than by prometheus_client's encoders, because a
job's label text does not change between samples: each series' `name{labels} ` prefix is kept from
one render to the next, and a render is one lookup and one number per series (prometheus_client
escapes and joins every label of every series every time: 160 ms at 2,000 jobs). The output is the
same as prometheus_client's, byte for byte (tests/export/test_exposition.py compares them).
"""

from __future__ import annotations

import functools
import gzip
import re
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

OPENMETRICS = "application/openmetrics-text"
MEMO_SERIES = 256
"""Families up to this many series keep their last text, to be reused while their series stay the same."""
GZIP_MIN_BYTES = 16384
"""A node without jobs exposes about 7.5 kB: sent as they are, whatever the client takes."""
GZIP_LEVEL = 1
"""The fastest: a scrape of 2,000 jobs (about 1 MB) still compresses about 15-fold, once per sample."""
_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*\Z")
_TYPES = ("counter", "gauge")


Labels = tuple[str, ...]


@dataclass
class Family:
    """One metric family as the agent builds it: `name` without `_total`, `type` counter or gauge, and
    per series its label values (in `labelnames` order) and value, in two lists of the same length.
    A builder may hand the same label tuple at every sample: rendering it again allocates nothing."""

    name: str
    type: str
    documentation: str
    labelnames: tuple[str, ...] = ()
    labels: list[Labels] = field(default_factory=list)
    values: list[float] = field(default_factory=list)

    def add(self, labels: Sequence[str], value: float) -> None:
        self.labels.append(tuple(labels))
        self.values.append(value)


def counter(name: str, documentation: str, labels: Sequence[str] = (), value: float | None = None) -> Family:
    """A counter family; with `value`, its one series without labels."""
    return _family(name, "counter", documentation, labels, value)


def gauge(name: str, documentation: str, labels: Sequence[str] = (), value: float | None = None) -> Family:
    """A gauge family; with `value`, its one series without labels."""
    return _family(name, "gauge", documentation, labels, value)


def _family(name: str, kind: str, documentation: str, labels: Sequence[str], value: float | None) -> Family:
    family = Family(name, kind, documentation, tuple(labels))
    if value is not None:
        family.add((), value)
    return family


def _escape_value(text: str) -> str:
    return text.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _escape_help(text: str, openmetrics: bool) -> str:
    """Help text as each format escapes it: OpenMetrics as a label value, the text format without `"`."""
    return _escape_value(text) if openmetrics else text.replace("\\", r"\\").replace("\n", r"\n")


def _label_text(names: Sequence[str], values: Sequence[str]) -> str:
    """`{a="x",b="y"}` with the labels sorted by name, as both formats write them; "" for none."""
    if not names:
        return ""
    pairs = sorted(zip(names, values, strict=True))
    return "{" + ",".join(f'{n}="{_escape_value(v)}"' for n, v in pairs) + "}"


class Renderer:
    """Writes families in either format, keeping each series' prefix (`name{labels} `, the same in
    both formats) for the next render."""

    def __init__(self) -> None:
        self._heads: dict[tuple[str, bool], tuple[str, str, str]] = {}
        self._prefixes: dict[str, dict[Labels, str]] = {}
        """Per sample name, the prefix of each label-value tuple seen."""
        self._last: dict[str, tuple[list[Labels], list[float], str]] = {}
        """Per sample name, the series and text of the last render: a family whose series did not
        change (versions, statuses, devices, site figures) is not written again."""

    def render(self, families: Iterable[Family], openmetrics: bool) -> bytes:
        """The exposition of `families` (ValueError for a name Prometheus does not take)."""
        out: list[str] = []
        for family in families:
            out.append(self._head(family.name, family.type, family.documentation, openmetrics))
            sample = family.name + "_total" if family.type == "counter" else family.name
            self._write_rows(out, sample, family.labelnames, family.labels, family.values)
        if openmetrics:
            out.append("# EOF\n")
        return "".join(out).encode("utf-8")

    def _head(self, name: str, kind: str, documentation: str, openmetrics: bool) -> str:
        known = self._heads.get((name, openmetrics))
        if known is not None and known[0] == kind and known[1] == documentation:
            return known[2]
        if kind not in _TYPES or not _NAME.match(name):
            raise ValueError(f"cannot expose {kind} {name!r}: counters and gauges with Prometheus names only")
        shown = name if openmetrics or kind != "counter" else name + "_total"
        head = f"# HELP {shown} {_escape_help(documentation, openmetrics)}\n# TYPE {shown} {kind}\n"
        self._heads[(name, openmetrics)] = (kind, documentation, head)
        return head

    def _write_rows(
        self,
        out: list[str],
        sample: str,
        names: tuple[str, ...],
        labels: list[tuple[str, ...]],
        values: list[float],
    ) -> None:
        if len(labels) > MEMO_SERIES:  # jobs' families: their values change every sample
            self._write_series(out, sample, names, labels, values)
            return
        last = self._last.get(sample)
        if last is not None and last[1] == values and last[0] == labels:  # values first: they change
            out.append(last[2])
            return
        start = len(out)
        self._write_series(out, sample, names, labels, values)
        self._last[sample] = (labels, values, "".join(out[start:]))

    def _write_series(
        self, out: list[str], sample: str, names: tuple[str, ...], labels: list[Labels], values: list[float]
    ) -> None:
        # The hot loop of a scrape (10,000 series at 2,000 jobs): kept local and flat.
        cache = self._prefixes.get(sample)
        if cache is None or len(cache) > 2 * len(labels) + 64:  # many series gone since: start afresh
            cache = self._prefixes[sample] = {}
        known = cache.get
        append = out.append
        for label_values, value in zip(labels, values, strict=True):
            prefix = known(label_values)
            if prefix is None:
                prefix = cache[label_values] = f"{sample}{_label_text(names, label_values)} "
            append(prefix)
            append(go_number(value))


def go_number(value: float) -> str:
    """A sample's value and the line's end, as prometheus_client writes values: Python's shortest
    repr, `+Inf`, `-Inf`, `NaN`, and from 1e6 up Go's exponent form (1234567.0 is 1.234567e+06)."""
    text = repr(float(value))
    dot = text.find(".")
    if dot > 6 and value > 0:
        digits = (text[0] + "." + text[1:dot] + text[dot + 1 :]).rstrip("0.")
        return f"{digits}e+{dot - 1:02d}\n"
    if dot < 0 and text[-1] in "fn":
        return ("+Inf" if text == "inf" else "-Inf" if text == "-inf" else "NaN") + "\n"
    return text + "\n"


TEXT_0_0_4 = "text/plain; version=0.0.4; charset=utf-8"
OPENMETRICS_1_0_0 = "application/openmetrics-text; version=1.0.0; charset=utf-8"
ESCAPINGS = ("allow-utf-8", "underscores", "dots", "values")
"""Name escaping schemes a scraper may ask for; every agent name is a legacy one, the same in all."""


@functools.lru_cache(maxsize=64)
def content_type(accept: str) -> str:
    """The content type to answer an Accept header with, by prometheus_client's rules (scrapers send
    the same header each time, hence the cache): the first OpenMetrics range without a version or of
    version 1 or later, or text/plain of version 1 or later; else the text format 0.0.4."""
    for accepted in accept.split(","):
        media, *params = (part.strip() for part in accepted.split(";"))
        if media not in (OPENMETRICS, "text/plain"):
            continue
        version = _parameter(params, "version")
        escaping = _parameter(params, "escaping")
        escaping = escaping if escaping in ESCAPINGS else "underscores"
        if media == OPENMETRICS and not version:
            return OPENMETRICS_1_0_0
        if version and _at_least_1(version):
            if media == OPENMETRICS:
                return f"{OPENMETRICS}; version={version}; charset=utf-8; escaping={escaping}"
            return f"text/plain; version=1.0.0; charset=utf-8; escaping={escaping}"
    return TEXT_0_0_4


def _parameter(params: list[str], name: str) -> str:
    """The first value given to `name` in a media range's parameters; "" when none is."""
    for param in params:
        key, sep, value = param.partition("=")
        if sep and key == name:
            return value
    return ""


def _at_least_1(version: str) -> bool:
    parts = version.split(".")
    return all(p.isdigit() for p in parts) and tuple(int(p) for p in parts) >= (1, 0, 0)


def same(a: object, b: object) -> bool:
    """Whether two versions are the same: the same objects, or tuples of the same, or equal plain values
    (numbers, strings). Objects are never compared by value: a published sample is itself or not."""
    if a is b:
        return True
    if type(a) is tuple and type(b) is tuple:
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return type(a) in (int, float, bool, str) and type(a) is type(b) and a == b


@dataclass
class _Rendered:
    body: bytes
    gzipped: bytes | None = None


class Exposition:
    """The bytes of /metrics: `collect()` rendered once per `version()` and format, gzip kept with them.

    `version()` names what `collect()` would show now; while it is the same (see `same`) as at the
    last render, scrapes get the kept bytes. None (no version function) renders every scrape.
    """

    def __init__(
        self,
        collect: Callable[[], Iterable[Family]],
        version: Callable[[], object] | None = None,
    ) -> None:
        self._collect = collect
        self._version = version
        self._renderer = Renderer()
        self._lock = threading.Lock()
        self._kept_version: object = None
        self._kept: dict[bool, _Rendered] = {}

    def render(self, accept: str = "") -> tuple[bytes, str]:
        """The exposition for this Accept header, and its content type."""
        rendered, media = self._rendered(accept)
        return rendered.body, media

    def render_gzip(self, accept: str = "") -> tuple[bytes, str, bool]:
        """For a client that takes gzip: the body, its content type, and whether the body is
        compressed (kept with the plain bytes). Below GZIP_MIN_BYTES it is not: compressing a node's
        few kB costs more CPU than sending them."""
        rendered, media = self._rendered(accept)
        if len(rendered.body) < GZIP_MIN_BYTES:
            return rendered.body, media, False
        with self._lock:
            if rendered.gzipped is None:
                rendered.gzipped = gzip.compress(rendered.body, GZIP_LEVEL, mtime=0)
            return rendered.gzipped, media, True

    def _rendered(self, accept: str) -> tuple[_Rendered, str]:
        chosen = content_type(accept)
        openmetrics = chosen.startswith(OPENMETRICS)
        with self._lock:  # one render per sample, however many scrapes arrive at once
            version = self._version() if self._version is not None else None
            if version is None or not same(version, self._kept_version):
                self._kept_version, self._kept = version, {}
            rendered = self._kept.get(openmetrics)
            if rendered is None:
                body = self._renderer.render(self._collect(), openmetrics)
                rendered = self._kept[openmetrics] = _Rendered(body)
            return rendered, chosen
