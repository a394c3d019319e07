"""/metrics rendered once per sample and kept: the same bytes as prometheus_client's own encoders, for
the agent's real families, hostile label values and every kind of number; kept while the sample is
the same, rendered again when it changes; gzip of the same bytes; over HTTP, as Prometheus asks."""

from __future__ import annotations

import gzip
import http.client
import math
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import ProcessCollector
from prometheus_client.exposition import choose_encoder, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

from agent.export.exposition import GZIP_MIN_BYTES, Exposition, Family, content_type, counter, gauge, same
from agent.export.job_metrics import JobFamilies
from agent.export.process import ProcessFamilies
from agent.export.registry import make_exposition
from agent.export.server import MetricsServer, accepts_gzip
from agent.live.snapshot import CarbonTotals, EnergyRow, JobSeries, JobsSnapshot, Published, Snapshot
from collectors.base import Device, Status
from collectors.workloads import JobInfo, JobKey
from tests.support.metrics import LibraryView as _Library

PROMETHEUS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
    "text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)
GONE = JobKey("k8s", "gone")
"""A job with CO2e but no energy series (it left /metrics between the two)."""
HOSTILE = ('x"y', "back\\slash", "new\nline", "ünï ✓", "", "}{=,", "a" * 300, "\x00\x1f\x7f")


def _published(jobs: int = 3) -> Published:
    node = Snapshot(
        time=5.0,
        samples=12,
        energy=(
            EnergyRow("cpu", "package-0", "rapl", 1234567.891, 120.5),
            EnergyRow("gpu", "0", "nvml", 98765432.1, None),
            EnergyRow("node", "wall", "hwmon", 1e21, 3000.0),
        ),
        collectors_up={"rapl": True, "nvml": False},
        errors={("nvml", "gpu_lost"): 2},
        devices=(Device("gpu", "0", "nvml", "counter", {"name": 'Evil "GPU"\\\n', "uuid": "GPU-1"}),),
        devices_up={("gpu", "0"): False, ("cpu", "package-0"): True},
        sample_duration_s=0.0012,
    )
    keys = [JobKey("slurm", HOSTILE[i % len(HOSTILE)] + str(i)) for i in range(jobs)]
    series = tuple(
        JobSeries(
            key,
            JobInfo(user=HOSTILE[(i + 1) % len(HOSTILE)], project="llm", phase="pretraining"),
            {"cpu": 10.0 * i, "gpu": 1e7 + i, "module": 0.5} if i % 2 else {"dram": 1.5},
            None if i % 3 else 99.0,
        )
        for i, key in enumerate(keys)
    )
    snapshot = JobsSnapshot(
        jobs=series,
        unattributed_j={"cpu": 5.0, "other": 0.25},
        unexported_j={"gpu": 7.0},
        running=jobs,
        errors={"gpu_processes": 1},
    )
    co2 = CarbonTotals(
        "main", 'D"E', 300.0, pue=1.4, cfe_ratio=0.25,
        node_g={"location": 12.0, "market": 1.0},
        jobs_g={key: {"location": 2.0 * i, "market": 0.1} for i, key in enumerate([*keys, GONE])},
    )  # fmt: skip
    return Published(node, snapshot, co2)


class _Ledger:
    def __init__(self) -> None:
        self.errors = {"disk_full": 3}
        self.pending_rows = 7
        self.last_flush_ok = False


def _families(published: Published) -> list[Family]:
    jobs = JobFamilies(labels=("user", "project"), ledger=_Ledger())
    statuses = {"rapl": Status.OK, "nvml": Status.ERROR, "estimate": Status.DISABLED}
    return list(make_exposition(lambda: published, 'node "1"\n', statuses, jobs)._collect())


@pytest.mark.parametrize("accept", ["", "text/plain", PROMETHEUS_ACCEPT, "application/openmetrics-text"])
def test_the_agents_families_render_as_prometheus_client_renders_them(accept: str) -> None:
    families = _families(_published(jobs=40))
    body, content_type = Exposition(lambda: families).render(accept)
    library = generate_openmetrics if "openmetrics" in content_type else generate_latest
    assert body == library(_Library(families))  # type: ignore[no-untyped-call]
    assert b"greenai_job_energy_joules_total{" in body and b"process_cpu_seconds_total" in body


def test_a_second_render_reuses_the_kept_prefixes_and_still_agrees() -> None:
    """Jobs come and go between renders: kept prefixes of jobs gone never show again."""
    exposition_families: list[list[Family]] = [_families(_published(jobs=5))]
    exposition = Exposition(lambda: exposition_families[0])
    exposition.render()
    exposition_families[0] = _families(_published(jobs=2))
    body, _ = exposition.render()
    assert body == generate_latest(_Library(exposition_families[0]))  # type: ignore[arg-type]
    assert body.count(b"greenai_job_energy_joules_total{") == 3 + 4  # cpu, dram, gpu each; job 1 has module


labels = st.text(st.characters(codec="utf-8"), max_size=12)
numbers = st.floats(allow_nan=True, allow_infinity=True) | st.integers(-(2**63), 2**63).map(float)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(labels, labels, numbers), max_size=8), st.booleans())
def test_any_labels_and_numbers_render_as_the_library_does(
    rows: list[tuple[str, str, float]], openmetrics: bool
) -> None:
    family = counter("greenai_test", 'help with "quotes" \\ and\nnewline', ["a", "b"])
    for a, b, value in rows:
        family.add([a, b], value)
    plain = gauge("greenai_plain", "no labels", value=rows[0][2] if rows else 0.0)
    accept = "application/openmetrics-text; version=1.0.0" if openmetrics else ""
    body, _ = Exposition(lambda: [family, plain]).render(accept)
    library = generate_openmetrics if openmetrics else generate_latest
    assert body == library(_Library([family, plain]))  # type: ignore[no-untyped-call]


def test_rendered_once_per_version_and_again_when_it_changes() -> None:
    renders = []
    current = [_published(jobs=2)]

    def collect() -> list[Family]:
        renders.append(current[0])
        family = counter("greenai_padding", "Enough series to be worth compressing.", ["i"])
        for i in range(GZIP_MIN_BYTES // 20):
            family.add([str(i)], current[0].node.samples)
        return [family]

    exposition = Exposition(collect, lambda: (current[0], (3, True)))
    first, _ = exposition.render()
    assert exposition.render()[0] is first  # the kept bytes themselves
    zipped, _, compressed = exposition.render_gzip()
    assert compressed and exposition.render_gzip()[0] is zipped and gzip.decompress(zipped) == first
    om, om_type = exposition.render("application/openmetrics-text")
    assert om_type.startswith("application/openmetrics-text") and om.endswith(b"# EOF\n")
    assert len(renders) == 2  # one per format
    current[0] = _published(jobs=1)  # a new sample: a new object, whatever its figures
    second, _ = exposition.render()
    assert len(renders) == 3 and second is not first


def test_a_version_is_the_same_only_for_the_same_objects_or_equal_plain_values() -> None:
    a, b = _published(1), _published(1)
    assert a == b  # equal figures...
    assert not same((a, ()), (b, ()))  # ...but another sample
    assert same((a, (7, True, (("disk_full", 3),))), (a, (7, True, (("disk_full", 3),))))
    assert not same((a, (7, True, ())), (a, (8, True, ())))
    assert not same(1, 1.0)


@pytest.mark.parametrize(
    ("header", "expected"),
    [("gzip", True), ("deflate, gzip;q=0.5", True), ("gzip;q=0", False), ("identity", False), ("", False),
     ("*", True), ("GZIP", True), ("gzip;q=x", False)],
)  # fmt: skip
def test_accept_encoding(header: str, expected: bool) -> None:
    assert accepts_gzip(header) is expected


def _get(port: int, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/metrics", headers=headers)
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


def test_a_scrape_as_prometheus_makes_it_gets_gzip_of_the_kept_openmetrics() -> None:
    published = [_published(jobs=20)]
    jobs = JobFamilies(labels=("user",))
    exposition = make_exposition(lambda: published[0], "n1", {"rapl": Status.OK}, jobs)
    server = MetricsServer("127.0.0.1", 0, exposition)
    server.start()
    try:
        status, headers, body = _get(server.port, {"Accept": PROMETHEUS_ACCEPT, "Accept-Encoding": "gzip"})
        assert status == 200 and headers["content-encoding"] == "gzip"
        assert headers["content-type"].startswith("application/openmetrics-text; version=1.0.0")
        assert int(headers["content-length"]) == len(body)
        text = gzip.decompress(body)
        assert text == exposition.render(PROMETHEUS_ACCEPT)[0] and text.endswith(b"# EOF\n")
        again = _get(server.port, {"Accept": PROMETHEUS_ACCEPT, "Accept-Encoding": "gzip"})[2]
        assert again == body  # the same sample: the kept bytes
        status, headers, plain = _get(server.port, {})
        assert status == 200 and "content-encoding" not in headers
        assert headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
        assert b'greenai_node_info{node="n1"} 1.0' in plain
        published[0] = _published(jobs=1)
        assert _get(server.port, {})[2] != plain
        status, headers, small = _get(server.port, {"Accept": PROMETHEUS_ACCEPT, "Accept-Encoding": "gzip"})
        assert len(small) < GZIP_MIN_BYTES and "content-encoding" not in headers  # not worth compressing
        assert small.endswith(b"# EOF\n")
    finally:
        server.stop()


def test_the_process_families_are_prometheus_clients_own() -> None:
    """Names, help, types and values as ProcessCollector gives them (read a moment apart)."""
    ours = {f.name: f for f in ProcessFamilies().families()}
    theirs = {m.name: m for m in ProcessCollector(registry=None).collect()}
    assert ours.keys() == theirs.keys() and len(ours) == 6
    for name, family in ours.items():
        assert (family.type, family.documentation) == (theirs[name].type, theirs[name].documentation)
        mine, library = family.values[0], theirs[name].samples[0].value
        if name in ("process_start_time_seconds", "process_max_fds"):
            assert mine == library
        elif name == "process_cpu_seconds":
            assert abs(mine - library) <= 0.5
        elif name == "process_open_fds":
            assert abs(mine - library) <= 2
        else:
            assert abs(mine - library) <= 0.1 * library


def test_numbers_as_go_writes_them() -> None:
    family = gauge("greenai_n", "n", ["k"])
    for i, value in enumerate((1e6, 1234567.0, 0.1, -2.5e-9, math.inf, -math.inf, math.nan, 12)):
        family.add([str(i)], value)
    body = Exposition(lambda: [family]).render()[0].decode()
    assert '{k="0"} 1e+06' in body and '{k="1"} 1.234567e+06' in body and '{k="4"} +Inf' in body
    assert '{k="6"} NaN' in body and '{k="7"} 12.0' in body


media = st.sampled_from(["application/openmetrics-text", "text/plain", "*/*", "application/json", ""])
versions = st.sampled_from(
    ["", "version=1.0.0", "version=0.0.1", "version=0.0.4", "version=2.0.0", "version=1"]
)
escapings = st.sampled_from(
    ["", "escaping=underscores", "escaping=allow-utf-8", "escaping=values", "escaping=x"]
)
ranges = st.builds(
    lambda m, v, e, q: ";".join(p for p in (m, v, e, q) if p),
    media,
    versions,
    escapings,
    st.sampled_from(["", "q=0.5"]),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(ranges, max_size=4).map(",".join))
def test_content_negotiation_is_prometheus_clients(accept: str) -> None:
    assert content_type(accept) == choose_encoder(accept)[1]


def test_prometheus_client_is_not_loaded_by_the_agent() -> None:
    """The agent renders and negotiates itself: prometheus_client's import costs 4 MB of RSS."""
    code = "import sys, agent.daemon, agent.cli; print('prometheus_client' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
