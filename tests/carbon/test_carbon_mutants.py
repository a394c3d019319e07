"""The carbon model's figures that reports and logs show, each pinned: sums of hours field by field,
the month a PUE is taken from, the site no node pattern claims, embodied coverage, and the warnings'
exact words."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest

from agent.carbon.data import CodecarbonData
from agent.carbon.model import UNASSIGNED, CarbonModel, Emissions, total
from agent.config.settings import load

JAN_31_NOON = int(datetime(2024, 1, 31, 12, tzinfo=timezone.utc).timestamp())
"""Already 1 February east of UTC+12, still 31 January everywhere else."""
JUL_2024 = int(datetime(2024, 7, 15, tzinfo=timezone.utc).timestamp())
MONTHLY_PUE = "[1.5, 1.1, 1.1, 1.1, 1.1, 1.1, 1.2, 1.1, 1.1, 1.1, 1.1, 1.1]"


def _model(tmp_path: Path, yaml_text: str, warned: list[str] | None = None) -> CarbonModel:
    path = tmp_path / "agent.yaml"
    path.write_text(yaml_text)
    sink = warned if warned is not None else []
    return CarbonModel.from_config(load(path).carbon, warn=sink.append)


@pytest.fixture
def far_east_clock() -> Iterator[None]:
    """The process's local time zone at UTC+14, where a UTC hour can fall in the next month."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TZ", "Pacific/Kiritimati")
        time.tzset()
        yield
    time.tzset()


# ---- a sum of hours ----


def test_a_sum_of_hours_adds_every_figure_and_keeps_each_source_once(tmp_path: Path) -> None:
    csv = tmp_path / "ci.csv"
    csv.write_text(f"timestamp,g_per_kwh,cfe_pct\n{JAN_31_NOON},100,50\n", encoding="utf-8")
    model = _model(
        tmp_path,
        f"carbon:\n  sites:\n    lab:\n      location: FRA\n      intensity_csv: {csv}\n"
        f"      pue: {MONTHLY_PUE}\n      cfe_contract_pct: 20\n      supplier_g_per_kwh: 300\n",
    )
    hourly = model.emissions("n1", JAN_31_NOON, 2.0)  # January: PUE 1.5, from the CSV
    annual = model.emissions("n1", JUL_2024, 1.0)  # July: PUE 1.2, France's annual figure
    again = model.emissions("n1", JAN_31_NOON, 2.0)
    result = total([hourly, annual, again])
    assert result.it_kwh == pytest.approx(5.0)
    assert result.facility_kwh == pytest.approx(3.0 + 1.2 + 3.0)
    assert result.pue == pytest.approx(7.2 / 5.0)  # what a job's card shows as its effective PUE
    assert result.location_g == pytest.approx(2 * 300.0 + 1.2 * annual.intensity_g_per_kwh)
    assert result.market_g == pytest.approx(0.8 * 300.0 * 7.2)  # the supplier's figure, every hour
    assert result.cfe_kwh == pytest.approx(2 * 3.0 * (0.2 + 0.8 * 0.5) + annual.cfe_kwh)
    assert result.hourly_kwh == pytest.approx(6.0)
    assert result.hourly_coverage == pytest.approx(6.0 / 7.2)
    assert result.provenance == (hourly.provenance[0], annual.provenance[0])  # each source once, in order
    assert hourly + annual == Emissions(
        it_kwh=3.0,
        facility_kwh=4.2,
        location_g=hourly.location_g + annual.location_g,
        market_g=hourly.market_g + annual.market_g,
        cfe_kwh=hourly.cfe_kwh + annual.cfe_kwh,
        hourly_kwh=3.0,
        provenance=(hourly.provenance[0], annual.provenance[0]),
    )


def test_an_hourly_figure_is_cited_with_its_file_and_site(tmp_path: Path) -> None:
    csv = tmp_path / "ci.csv"
    csv.write_text(f"timestamp,g_per_kwh\n{JAN_31_NOON},100\n", encoding="utf-8")
    model = _model(
        tmp_path, f"carbon:\n  sites:\n    lab:\n      location: FRA\n      intensity_csv: {csv}\n"
    )
    (prov,) = model.emissions("n1", JAN_31_NOON, 1.0).provenance
    assert (prov.resolution, prov.location) == ("hourly", "lab")
    assert prov.cite().startswith(f"{csv} (hourly, lab)")


# ---- PUE by month, in UTC ----


def test_the_month_of_a_pue_is_the_utc_month_whatever_the_local_time_zone(
    tmp_path: Path, far_east_clock: None
) -> None:
    model = _model(tmp_path, f"carbon:\n  sites:\n    lab:\n      location: FRA\n      pue: {MONTHLY_PUE}\n")
    assert datetime.fromtimestamp(JAN_31_NOON).month == 2  # the local clock is in February already
    assert model.emissions("n1", JAN_31_NOON, 10.0).facility_kwh == pytest.approx(15.0)  # January's 1.5


# ---- the node no site claims ----


def test_a_node_no_site_claims_is_priced_at_the_world_average_with_the_reason(tmp_path: Path) -> None:
    warned: list[str] = []
    model = _model(
        tmp_path,
        "carbon:\n  sites:\n    a: {location: FRA, nodes: ['gpu-.*']}\n"
        "    b: {location: DEU, nodes: ['cpu-.*']}\n",
        warned,
    )
    world = CodecarbonData().world().g_per_kwh
    priced = model.emissions("login-1", JAN_31_NOON, 2.0)
    assert priced.location_g == pytest.approx(2.0 * world)
    assert priced.market_g == pytest.approx(2.0 * world)
    site = model.site_for("login-1")
    assert site.name == UNASSIGNED == "unassigned"
    (prov,) = priced.provenance
    assert (prov.location, prov.fallback) == ("world", True)
    assert prov.note == "node matches no site and no carbon.default_site is set"
    assert warned == [
        f"carbon: node login-1 matches no site's nodes: CO2 is priced at the world average, {world:g} g/kWh; "
        "add a pattern to carbon.sites.NAME.nodes or set carbon.default_site"
    ]
    model.site_for("login-2")
    assert model.warnings == (
        f"carbon: nodes login-1, login-2 match no site's nodes: CO2 is priced at the world average, "
        f"{world:g} g/kWh; add a pattern to carbon.sites.NAME.nodes or set carbon.default_site",
    )


def test_the_data_given_is_the_data_used(tmp_path: Path) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text("carbon:\n  location: FRA\n")
    data = CodecarbonData(version="9.9.9")
    model = CarbonModel.from_config(load(path).carbon, data, warn=lambda _: None)
    assert model.default.annual.provenance.version == "codecarbon 9.9.9"


# ---- sites without a location: one warning, in words ----


def test_no_location_at_all_is_said_once_with_the_key_to_set(tmp_path: Path) -> None:
    warned: list[str] = []
    model = _model(tmp_path, "carbon: {}\n", warned)
    world = CodecarbonData().world().g_per_kwh
    line = (
        f"carbon: no carbon.location is set: CO2 is priced at the world average, {world:g} g/kWh; "
        "set carbon.location, e.g. FR or US-CA (docs/carbon.md)"
    )
    assert warned == [line] and model.notes == (line,) and model.warnings == (line,)
    assert model.default.annual.provenance.note == "no location configured"
    assert model.emissions("n1", JUL_2024, 2.0).location_g == pytest.approx(2.0 * world)


@pytest.mark.parametrize(
    ("sites", "where"),
    [
        ("    a: {nodes: ['a.*']}\n    b: {location: FRA}\n", "no location for site 'a'"),
        ("    a: {nodes: ['a.*']}\n    b: {nodes: ['b.*']}\n", "no location for sites 'a', 'b'"),
    ],
)
def test_sites_without_a_location_are_named(tmp_path: Path, sites: str, where: str) -> None:
    warned: list[str] = []
    _model(tmp_path, f"carbon:\n  sites:\n{sites}", warned)
    world = CodecarbonData().world().g_per_kwh
    assert warned == [
        f"carbon: {where}: CO2 is priced at the world average, {world:g} g/kWh; "
        "set carbon.sites.NAME.location (docs/carbon.md)"
    ]


# ---- embodied coverage ----


def test_embodied_covers_only_the_nodes_an_item_names(tmp_path: Path) -> None:
    model = _model(
        tmp_path,
        "carbon:\n  location: FRA\n  embodied:\n"
        "    - {name: server, total_kg: 1000, lifetime_years: 4, nodes: ['gpu-.*']}\n",
    )
    assert model.embodied_covers("gpu-1")
    assert not model.embodied_covers("cpu-1")
    assert not model.embodied_covers("xgpu-1")  # a full match, not a search
    assert not _model(tmp_path, "carbon:\n  location: FRA\n").embodied_covers("gpu-1")
