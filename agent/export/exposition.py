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

import gzip
import re
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from prometheus_client.core import Metric
from prometheus_client.exposition import choose_encoder

OPENMETRICS = "application/openmetrics-text"
GZIP_LEVEL = 3
"""A scrape of 2,000 jobs (about 1 MB) compresses about 12-fold at level 3, in a few ms, once per sample."""
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


def _escape_help(text: str, openmetrics: bool) -> str:
    text = text.replace("\\", r"\\").replace("\n", r"\n")
    return text.replace('"', r"\"") if openmetrics else text


def _escape_value(text: str) -> str:
    return text.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _label_text(names: Sequence[str], values: Sequence[str]) -> str:
    """`{a="x",b="y"}` with the labels sorted by name, as both formats write them; "" for none."""
    if not names:
        return ""
    pairs = sorted(zip(names, values, strict=True))
    return "{" + ",".join(f'{n}="{_escape_value(v)}"' for n, v in pairs) + "}"


class Unsupported(Exception):
    """A family this renderer does not write (a type or sample beyond counters and gauges)."""


class Renderer:
    """Writes families in either format, keeping each series' prefix (`name{labels} `, the same in
    both formats) for the next render."""

    def __init__(self) -> None:
        self._heads: dict[tuple[str, str, str, str, bool], str] = {}
        self._prefixes: dict[str, dict[Labels, str]] = {}
        """Per sample name, the prefix of each label-value tuple seen."""

    def render(self, families: Iterable[Family | Metric], openmetrics: bool) -> bytes:
        """The exposition of `families`; raises Unsupported for what only prometheus_client writes."""
        out: list[str] = []
        for family in families:
            if isinstance(family, Family):
                out.append(self._head(family.name, family.type, family.documentation, "", openmetrics))
                sample = family.name + "_total" if family.type == "counter" else family.name
                self._write_rows(out, sample, family.labelnames, family.labels, family.values)
            else:
                self._write_metric(out, family, openmetrics)
        if openmetrics:
            out.append("# EOF\n")
        return "".join(out).encode("utf-8")

    def _head(self, name: str, kind: str, documentation: str, unit: str, openmetrics: bool) -> str:
        key = (name, kind, documentation, unit, openmetrics)
        head = self._heads.get(key)
        if head is None:
            if kind not in _TYPES or not _NAME.match(name) or (unit and not openmetrics):
                raise Unsupported(f"{name}: {kind}")
            shown = name if openmetrics or kind != "counter" else name + "_total"
            head = f"# HELP {shown} {_escape_help(documentation, openmetrics)}\n# TYPE {shown} {kind}\n"
            if unit:
                head += f"# UNIT {shown} {unit}\n"
            self._heads[key] = head
        return head

    def _write_rows(
        self,
        out: list[str],
        sample: str,
        names: tuple[str, ...],
        labels: list[tuple[str, ...]],
        values: list[float],
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

    def _write_metric(self, out: list[str], metric: Metric, openmetrics: bool) -> None:
        """A family from a prometheus_client collector (the process's own metrics)."""
        out.append(self._head(metric.name, metric.type, metric.documentation, metric.unit, openmetrics))
        for s in metric.samples:
            if s.timestamp is not None or s.exemplar is not None or s.native_histogram is not None:
                raise Unsupported(f"{s.name}: timestamps, exemplars and native histograms")
            if s.name.endswith("_created") or not _NAME.match(s.name):
                raise Unsupported(s.name)
            out.append(f"{s.name}{_label_text(tuple(s.labels), tuple(s.labels.values()))} ")
            out.append(go_number(s.value))


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


class _Collected:
    """Families as a prometheus_client collector, for its encoders (the fallback)."""

    def __init__(self, families: Iterable[Family | Metric]) -> None:
        self._families = families

    def collect(self) -> Iterable[Metric]:
        for family in self._families:
            yield as_metric(family) if isinstance(family, Family) else family


def as_metric(family: Family) -> Metric:
    """The family as a prometheus_client Metric."""
    metric = Metric(family.name, family.documentation, family.type)
    sample = family.name + "_total" if family.type == "counter" else family.name
    for values, value in zip(family.labels, family.values, strict=True):
        metric.add_sample(sample, dict(zip(family.labelnames, values, strict=True)), value)
    return metric


def render_families(families: Sequence[Family | Metric], accept: str = "") -> tuple[bytes, str]:
    """`families` in the format the Accept header asks for, and its content type, with a fresh
    Renderer: the exposition of something rendered once."""
    return Exposition(lambda: families).render(accept)


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
        collect: Callable[[], Iterable[Family | Metric]],
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
        rendered, content_type = self._rendered(accept)
        return rendered.body, content_type

    def render_gzip(self, accept: str = "") -> tuple[bytes, str]:
        """The same, gzip-compressed (kept with the plain bytes)."""
        rendered, content_type = self._rendered(accept)
        with self._lock:
            if rendered.gzipped is None:
                rendered.gzipped = gzip.compress(rendered.body, GZIP_LEVEL, mtime=0)
            return rendered.gzipped, content_type

    def _rendered(self, accept: str) -> tuple[_Rendered, str]:
        _, content_type = choose_encoder(accept)
        openmetrics = content_type.startswith(OPENMETRICS)
        with self._lock:  # one render per sample, however many scrapes arrive at once
            version = self._version() if self._version is not None else None
            if version is None or not same(version, self._kept_version):
                self._kept_version, self._kept = version, {}
            rendered = self._kept.get(openmetrics)
            if rendered is None:
                rendered = self._kept[openmetrics] = _Rendered(
                    self._render(content_type, openmetrics, accept)
                )
            return rendered, content_type

    def _render(self, content_type: str, openmetrics: bool, accept: str) -> bytes:
        families = list(self._collect())
        try:
            return self._renderer.render(families, openmetrics)
        except Unsupported:
            encoder, _ = choose_encoder(accept)
            return encoder(_Collected(families))
