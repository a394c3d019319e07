"""BmcCollector against a local HTTPS Redfish service (tests/support/redfish.py).

The served documents are our own, shaped like DMTF's mockup bundle DSP2043 2025.4: "rackmount" and
"rackmount-power" follow public-rackmount1 (chassis 1U: PowerSubsystem + EnvironmentMetrics, and the
deprecated Power resource), "smartnic" follows public-smartnic (a Card chassis inside the 1U),
"bladed" follows public-bladed (an Enclosure with Power, Blades without), and "energy" puts
EnvironmentMetrics.v1_5_0's EnergykWh on chassis 1U, read in kWh like public-rackmount1's
Sensors/TotalEnergy.
"""

from __future__ import annotations

import base64
import logging
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from agent.live.sampler import Sampler
from collectors.base import CollectorError, Status
from collectors.bmc import BmcCollector
from tests.support.clock import FakeClock
from tests.support.redfish import FakeBmc

USER = "greenai"
PASSWORD = "Zq7-not-in-any-log"


@pytest.fixture
def password_file(tmp_path: Path) -> Path:
    path = tmp_path / "bmc-password"
    path.write_text(PASSWORD + "\n")
    path.chmod(0o600)
    return path


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., FakeBmc]]:
    """Starts a FakeBmc of a layout, with basic auth as USER/PASSWORD; closed after the test."""
    started: list[FakeBmc] = []

    def start(layout: str = "rackmount", **options: object) -> FakeBmc:
        directory = tmp_path / f"bmc{len(started)}"
        directory.mkdir()
        bmc = FakeBmc(directory, layout, username=USER, password=PASSWORD, **options)  # type: ignore[arg-type]
        started.append(bmc)
        return bmc

    yield start
    for bmc in started:
        bmc.close()


def collector(
    bmc: FakeBmc, password_file: Path, clock: Callable[[], float], **options: object
) -> BmcCollector:
    settings: dict[str, object] = {
        "username": USER,
        "password_file": password_file,
        "verify_tls": bmc.ca_file,
        "interval_seconds": 10.0,
        "timeout_seconds": 2.0,
        "background": False,
    }
    return BmcCollector(bmc.url, clock, **(settings | options))  # type: ignore[arg-type]


def energy_uj(c: BmcCollector) -> int:
    (counter,) = c.read().counters
    return counter.energy_uj


def test_newer_shape_is_found_over_verified_tls_with_basic_auth(
    serve: Callable[..., FakeBmc], password_file: Path
) -> None:
    bmc = serve("rackmount")
    c = collector(bmc, password_file, FakeClock())
    probe = c.probe()
    assert probe.status is Status.OK, probe
    (device,) = probe.devices
    assert (device.component, device.device, device.source, device.method) == (
        "node",
        "1U",
        "redfish",
        "power",
    )
    assert device.details["resource"] == "/redfish/v1/Chassis/1U/EnvironmentMetrics"
    assert device.details["property"] == "PowerWatts/Reading"
    assert device.details["max_power_w"] == "2000"  # PowerSubsystem CapacityWatts
    assert probe.notes[0] == "Redfish 1.15.0"
    assert "Testco T-1U" in probe.notes[-1]
    (counter,) = c.read().counters
    assert (counter.component, counter.device, counter.source, counter.max_power_w) == (
        "node",
        "1U",
        "redfish",
        2000,
    )
    assert counter.wrap_uj is None
    c.close()


def test_deprecated_power_shape_is_found(serve: Callable[..., FakeBmc], password_file: Path) -> None:
    bmc = serve("rackmount-power", power_w=420.0)
    clock = FakeClock()
    c = collector(bmc, password_file, clock)
    probe = c.probe()
    assert probe.status is Status.OK, probe
    assert probe.devices[0].details["property"] == "PowerControl/0/PowerConsumedWatts"
    assert probe.devices[0].details["max_power_w"] == "1600"  # PowerControl PowerCapacityWatts
    clock.advance(5)
    assert energy_uj(c) == 420 * 5 * 1_000_000
    c.close()


def test_a_card_inside_the_node_is_not_the_node(serve: Callable[..., FakeBmc], password_file: Path) -> None:
    bmc = serve("smartnic", power_w=600.0)  # Card1 comes first in the collection and reads 25 W
    clock = FakeClock()
    c = collector(bmc, password_file, clock)
    probe = c.probe()
    assert [d.device for d in probe.devices] == ["1U"]
    assert any("Card1 (Card): not a node chassis" in note for note in probe.notes)
    clock.advance(2)
    assert energy_uj(c) == 1200 * 1_000_000
    c.close()


def test_an_enclosure_of_blades_is_not_a_node_meter(
    serve: Callable[..., FakeBmc], password_file: Path
) -> None:
    bmc = serve("bladed")
    probe = collector(bmc, password_file, FakeClock()).probe()
    assert probe.status is Status.NOT_FOUND
    assert "no power reading for a whole node" in probe.reason
    assert any("MultiBladeEncl (Enclosure)" in note for note in probe.notes)
    assert "/redfish/v1/Chassis/MultiBladeEncl/Power" not in bmc.paths


def test_untrusted_certificate_is_a_tls_error_and_can_be_skipped(
    serve: Callable[..., FakeBmc], password_file: Path
) -> None:
    bmc = serve("rackmount")
    probe = collector(bmc, password_file, FakeClock(), verify_tls=True).probe()
    assert probe.status is Status.ERROR
    assert "certificate not trusted" in probe.reason
    assert "verify_tls: /path/to/ca.pem" in probe.fix
    unverified = collector(bmc, password_file, FakeClock(), verify_tls=False)
    probe = unverified.probe()
    assert probe.status is Status.OK
    assert "TLS certificate not verified (verify_tls: false)" in probe.notes
    unverified.close()


def test_a_minute_of_power_steps_is_integrated_within_half_a_percent(
    serve: Callable[..., FakeBmc], password_file: Path
) -> None:
    bmc = serve("rackmount")
    clock = FakeClock()
    c = collector(bmc, password_file, clock)
    steps_w = [374.0, 900.0, 150.0, 1500.0, 620.5, 80.0]  # the node's power for each 10 s poll interval
    bmc.power_w = steps_w[0]
    assert c.probe().status is Status.OK  # the first poll, at t=0
    previous = energy_uj(c)
    assert previous == 0
    for power_w in steps_w:
        bmc.power_w = power_w
        assert c.poll_once()
        for _ in range(10):  # the sampler's 1 s samples in between
            clock.advance(1)
            now = energy_uj(c)
            assert now - previous == pytest.approx(power_w * 1e6, abs=1)  # smooth: no burst at polls
            previous = now
    truth_uj = sum(steps_w) * 10 * 1e6
    assert abs(previous - truth_uj) / truth_uj < 0.005
    assert bmc.paths["/redfish/v1/Chassis/1U/EnvironmentMetrics"] == 1 + 1 + len(steps_w)  # probe + polls
    c.close()


def test_an_energy_meter_is_followed_smoothly_and_never_overtaken(
    serve: Callable[..., FakeBmc], password_file: Path
) -> None:
    bmc = serve("energy")
    clock = FakeClock()
    c = collector(bmc, password_file, clock)
    power_w, resolution_kwh, start_kwh = 1800.0, 0.001, 1234.5

    def meter_at(t: float) -> float:
        return start_kwh + int(power_w * t / 3.6e6 / resolution_kwh) * resolution_kwh

    bmc.energy_kwh = meter_at(0)
    probe = c.probe()
    assert probe.devices[0].method == "counter"
    assert probe.devices[0].details["property"] == "EnergykWh/Reading"
    first_move: float | None = None
    previous = 0
    for t in range(1, 301):
        clock.advance(1)
        if t % 10 == 0:
            bmc.energy_kwh = meter_at(t)
            assert c.poll_once()
            if first_move is None and bmc.energy_kwh > start_kwh:
                first_move = bmc.energy_kwh
        now = energy_uj(c)
        assert 0 <= now - previous <= 2 * power_w * 1e6  # never a burst of a whole meter step
        measured_uj = 0.0 if first_move is None else (bmc.energy_kwh - first_move) * 3.6e12
        assert now <= measured_uj + 1  # never ahead of what the meter has measured
        previous = now
    assert first_move is not None
    # It trails the meter by what the meter counted in the last poll interval, to one step.
    assert measured_uj - previous <= power_w * 10 * 1e6 + resolution_kwh * 3.6e12
    c.close()


def test_stale_reading_is_down_and_stops_counting(serve: Callable[..., FakeBmc], password_file: Path) -> None:
    bmc = serve("rackmount", power_w=500.0)
    clock = FakeClock()
    c = collector(bmc, password_file, clock)
    c.probe()
    clock.advance(30)
    assert energy_uj(c) == 500 * 30 * 1_000_000
    clock.advance(5)
    with pytest.raises(CollectorError) as raised:
        c.read()
    assert raised.value.reason == "stale"
    assert c.poll_once()
    clock.advance(1)
    assert energy_uj(c) == 500 * 31 * 1_000_000  # nothing for the stale 5 s
    c.close()


@pytest.mark.parametrize(("mode", "reason"), [("slow", "timeout"), ("fail", "http_500")])
def test_a_failing_bmc_never_delays_reads_and_books_nothing_for_the_gap(
    serve: Callable[..., FakeBmc], password_file: Path, mode: str, reason: str
) -> None:
    bmc = serve("rackmount", power_w=1000.0)
    c = collector(
        bmc, password_file, time.monotonic, interval_seconds=0.1, timeout_seconds=0.2, background=True
    )
    assert c.probe().status is Status.OK
    time.sleep(0.25)  # a few polls by the thread
    before = energy_uj(c)
    assert before > 0
    bmc.delay_s = 5.0
    bmc.mode = mode
    gap_start = time.monotonic()
    reasons: list[str] = []
    slowest = 0.0
    while time.monotonic() - gap_start < 1.5:
        started = time.monotonic()
        try:
            last_good = energy_uj(c)
        except CollectorError as e:
            reasons.append(e.reason)
        slowest = max(slowest, time.monotonic() - started)
        time.sleep(0.01)
    assert slowest < 0.05
    assert reasons and set(reasons) == {reason}
    bmc.mode = "ok"
    recovered_at = time.monotonic()
    while True:
        try:
            after = energy_uj(c)
            break
        except CollectorError as e:
            assert e.reason == reason
            assert time.monotonic() - recovered_at < 3, "no recovery"
            time.sleep(0.01)
    gap_s = time.monotonic() - gap_start
    assert gap_s > 1.5
    # Before the failure the counter rose at most 3 intervals past the last good poll; not over the gap.
    assert after - last_good < 1000 * 0.5 * 1e6
    time.sleep(0.3)
    assert energy_uj(c) > after  # counting again
    c.close()


def test_bad_answers_have_their_reason(serve: Callable[..., FakeBmc], password_file: Path) -> None:
    bmc = serve("rackmount")
    c = collector(bmc, password_file, FakeClock())
    c.probe()
    for mode, reason in [
        ("login", "bad_document"),
        ("html", "bad_document"),
        ("unauthorized", "unauthorized"),
    ]:
        bmc.mode = mode
        assert not c.poll_once()
        with pytest.raises(CollectorError) as raised:
            c.read()
        assert raised.value.reason == reason, mode
        assert "\n" not in str(raised.value)
    c.close()


def test_unreachable_bmc_is_a_probe_error(tmp_path: Path, password_file: Path) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    c = BmcCollector(f"https://127.0.0.1:{port}", FakeClock(), username=USER, password_file=password_file)
    probe = c.probe()
    assert probe.status is Status.ERROR
    assert "connection refused" in probe.reason
    assert "collectors.bmc.url" in probe.fix


def test_wrong_password_is_unauthorized(serve: Callable[..., FakeBmc], tmp_path: Path) -> None:
    bmc = serve("rackmount")
    wrong = tmp_path / "wrong"
    wrong.write_text("guess\n")
    wrong.chmod(0o600)
    probe = collector(bmc, wrong, FakeClock()).probe()
    assert probe.status is Status.ERROR
    assert "HTTP 401" in probe.reason
    assert str(wrong) in probe.fix


def test_world_readable_password_file_is_refused(serve: Callable[..., FakeBmc], password_file: Path) -> None:
    bmc = serve("rackmount")
    password_file.chmod(0o644)
    probe = collector(bmc, password_file, FakeClock()).probe()
    assert probe.status is Status.ERROR
    assert str(password_file) in probe.reason and "0644" in probe.reason
    assert probe.fix == f"chmod 600 {password_file}"
    assert bmc.requests == 0  # not even tried
    missing = collector(bmc, password_file.with_name("absent"), FakeClock()).probe()
    assert missing.status is Status.ERROR and "does not exist" in missing.reason


def test_the_password_appears_nowhere(
    serve: Callable[..., FakeBmc], password_file: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    bmc = serve("rackmount")
    c = collector(bmc, password_file, FakeClock())
    said = [repr(c), repr(c.probe())]
    for mode in ("unauthorized", "fail", "login"):
        bmc.mode = mode
        c.poll_once()
        with pytest.raises(CollectorError) as raised:
            c.read()
        said += [str(raised.value), repr(raised.value)]
    c.close()
    password_file.chmod(0o644)
    said.append(repr(collector(bmc, password_file, FakeClock()).probe()))
    said += [r.getMessage() for r in caplog.records]
    assert any("HTTP 401" in s for s in said)  # the failures were logged and raised
    assert not [s for s in said if PASSWORD in s]
    encoded = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    assert not [s for s in said if encoded in s or "Basic " in s]  # nor its basic auth form


def test_sampler_books_the_node_and_shows_the_bmc_down(
    serve: Callable[..., FakeBmc], password_file: Path
) -> None:
    bmc = serve("rackmount", power_w=750.0)
    clock = FakeClock()
    c = collector(bmc, password_file, clock)
    probe = c.probe()
    sampler = Sampler([c], clock, probe.devices)
    sampler.tick()  # the baseline
    for _ in range(4):
        clock.advance(1)
        snapshot = sampler.tick()
    assert snapshot.collectors_up == {"bmc": True}
    assert snapshot.energy_j(component="node", device="1U", source="redfish") == pytest.approx(3000)
    bmc.mode = "fail"
    c.poll_once()
    clock.advance(1)
    snapshot = sampler.tick()
    assert snapshot.collectors_up["bmc"] is False
    assert snapshot.errors[("bmc", "http_500")] == 1
    assert snapshot.devices_up[("node", "1U")] is False
    assert snapshot.energy_j(component="node") == pytest.approx(3000)
    c.close()


def test_close_stops_the_poll_thread_in_a_slow_request(
    serve: Callable[..., FakeBmc], password_file: Path
) -> None:
    bmc = serve("rackmount")
    c = collector(
        bmc, password_file, time.monotonic, interval_seconds=0.05, timeout_seconds=10.0, background=True
    )
    assert c.probe().status is Status.OK
    bmc.delay_s = 30.0
    bmc.mode = "slow"
    time.sleep(0.2)  # the thread is now waiting on the BMC
    started = time.monotonic()
    c.close()
    assert time.monotonic() - started < 1.0
    assert not [t for t in threading.enumerate() if t.name == "greenai-bmc-poll"]
