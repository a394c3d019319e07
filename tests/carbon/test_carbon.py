"""Carbon accounting: codecarbon's real data files, real CSV files, published figures reproduced."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import pytest

from agent.carbon.data import G_PER_KWH_PER_LB_PER_MWH, CodecarbonData, UnknownLocation, place_name
from agent.carbon.datafiles import codecarbon_data_dir
from agent.carbon.model import CarbonModel, Emissions, Site, embodied_g, hour_emissions, total
from agent.carbon.places import AWS_REGIONS, AZURE_REGIONS
from agent.carbon.series import IntensityCsvError, read_series
from agent.cli import main
from agent.config.carbon import CarbonConfig, SiteConfig
from agent.config.settings import load
from agent.ledger.job_carbon import describe
from tests.support.processes import run_greenai

JAN_2024 = int(datetime(2024, 1, 15, tzinfo=timezone.utc).timestamp())
JUL_2024 = int(datetime(2024, 7, 15, tzinfo=timezone.utc).timestamp())


@pytest.fixture(scope="module")
def data() -> CodecarbonData:
    return CodecarbonData()


def _model(tmp_path: Path, yaml_text: str) -> CarbonModel:
    path = tmp_path / "agent.yaml"
    path.write_text(yaml_text)
    return CarbonModel.from_config(load(path).carbon, warn=lambda _: None)


def _csv(tmp_path: Path, text: str, name: str = "ci.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# ---- published figures ----


def test_bloom_final_training_through_a_constant_hourly_csv(tmp_path: Path) -> None:
    # Luccioni et al. 2022: 433,196 kWh at 57 gCO2e/kWh = 24.69 t (reported as 24.7 t).
    hours = 118 * 24
    rows = "".join(f"{JAN_2024 // 3600 * 3600 + h * 3600},57\n" for h in range(hours))
    csv = _csv(tmp_path, "timestamp,g_per_kwh\n" + rows)
    model = _model(tmp_path, "carbon:\n  location: FRA\n  sites: {}\n")
    site = Site("bloom", model.default.annual, read_series(csv))
    start = JAN_2024 // 3600 * 3600
    result = total(hour_emissions(site, start + h * 3600, 433_196 / hours) for h in range(hours))
    assert result.location_g / 1000 == pytest.approx(24_692, abs=1)
    assert result.hourly_coverage == pytest.approx(1.0)
    assert result.provenance[0].resolution == "hourly"


def test_sci_embodied_example(tmp_path: Path) -> None:
    # SCI: 1,000 kg device, 4-year life, reserved 1 hour: 1e6 g x 1 h / 35,040 h = 28.54 g.
    assert embodied_g(1000, 4, 3600) == pytest.approx(28.54, abs=0.01)
    model = _model(
        tmp_path,
        "carbon:\n  embodied:\n    - {name: server, total_kg: 1000, lifetime_years: 4, nodes: ['gpu-.*']}\n"
        "    - {name: switch, total_kg: 400, lifetime_years: 4, nodes: ['gpu-.*'], share: 0.25}\n",
    )
    assert model.embodied_g("gpu-1", 3600) == pytest.approx(28.54 + 2.854, abs=0.01)
    assert model.embodied_g("gpu-1", 3600, share=0.5) == pytest.approx((28.54 + 2.854) / 2, abs=0.01)
    assert model.embodied_g("cpu-1", 3600) == 0.0


def test_job_spanning_hours_gets_the_energy_weighted_sum_not_the_mean(tmp_path: Path) -> None:
    h0 = JAN_2024 // 3600 * 3600
    csv = _csv(tmp_path, f"timestamp,g_per_kwh\n{h0},100\n{h0 + 3600},500\n")
    model = _model(
        tmp_path, f"carbon:\n  sites:\n    lab:\n      location: FRA\n      intensity_csv: {csv}\n"
    )
    result = model.emissions("n1", h0, 9.0) + model.emissions("n1", h0 + 3600, 1.0)
    assert result.location_g == pytest.approx(9 * 100 + 1 * 500)  # 1400 g
    assert result.location_g != pytest.approx(10 * (100 + 500) / 2)  # the mean would give 3000 g
    assert result.intensity_g_per_kwh == pytest.approx(140)


# ---- location-based, from codecarbon's files ----


def test_country_and_us_state_in_lbs_per_mwh_converted(data: CodecarbonData) -> None:
    raw = json.loads((codecarbon_data_dir() / "private_infra/2023/usa_emissions.json").read_text())  # type: ignore[operator]
    ca = data.resolve("US-CA")
    assert ca is not None and not ca.provenance.fallback
    assert ca.g_per_kwh == pytest.approx(raw["california"]["emissions"] * G_PER_KWH_PER_LB_PER_MWH)
    assert ca.provenance.year == 2023 and ca.provenance.resolution == "annual"
    assert ca.provenance.version.startswith("codecarbon ")
    fra = data.resolve("FRA")
    assert fra is not None and fra.provenance.dataset.endswith("global_energy_mix.json")
    assert 0 < fra.g_per_kwh < 150 and fra.grid_cfe_share is not None and fra.grid_cfe_share > 0.8


def test_cloud_regions(data: CodecarbonData) -> None:
    aws, azure, gcp = (
        data.resolve("aws:eu-west-3"),
        data.resolve("azure:westeurope"),
        data.resolve("gcp:europe-west1"),
    )
    assert aws is not None and aws.provenance.location == "FRA"
    assert aws.g_per_kwh == data.resolve("FRA").g_per_kwh  # type: ignore[union-attr]
    assert azure is not None and azure.provenance.location == "NLD"
    assert gcp is not None and gcp.provenance.dataset == "cloud/impact.csv" and gcp.g_per_kwh > 0
    virginia = data.resolve("aws:us-east-1")
    assert virginia is not None and virginia.provenance.location == "US-VA"


@pytest.mark.parametrize(
    "region", [*(f"aws:{r}" for r in AWS_REGIONS), *(f"azure:{r}" for r in AZURE_REGIONS)]
)
def test_every_cloud_region_in_our_table_resolves(data: CodecarbonData, region: str) -> None:
    found = data.resolve(region)
    assert found is not None and not found.provenance.fallback, region


@pytest.mark.parametrize("location", ["CA-QC", "CN-BJ", "SE3", "NO4", "FI"])
def test_provinces_and_nordic_zones(data: CodecarbonData, location: str) -> None:
    found = data.resolve(location)
    assert found is not None and 0 < found.g_per_kwh < 1500 and not found.provenance.fallback


@pytest.mark.parametrize(
    ("yaml_text", "key", "value", "nearest"),
    [
        ("carbon:\n  location: Frnace\n", "carbon.location", "Frnace", "FRA (France)"),
        (
            "carbon:\n  sites:\n    lab:\n      location: aws:eu-west-9\n",
            "carbon.sites.lab.location",
            "aws:eu-west-9",
            "aws:eu-west-3 (France)",
        ),
        ("carbon:\n  location: US-ZZ\n", "carbon.location", "US-ZZ", "US-"),
        ("carbon:\n  location: XYZ\n", "carbon.location", "XYZ", ""),
    ],
)
def test_an_unknown_location_is_an_error_naming_the_key_and_the_nearest_codes(
    tmp_path: Path, yaml_text: str, key: str, value: str, nearest: str
) -> None:
    with pytest.raises(UnknownLocation) as e:
        _model(tmp_path, yaml_text)
    message = str(e.value)
    assert e.value.key == key and e.value.value == value and e.value.nearest, message
    assert f"key {key!r}: {value!r}" in message and nearest in message and "\n" not in message


def test_a_country_without_figures_is_an_error_that_names_it(data: CodecarbonData) -> None:
    with pytest.raises(UnknownLocation) as e:
        data.lookup("AQ", "carbon.location")
    assert "Antarctica (ATA)" in str(e.value) and "no figure" in str(e.value)


def test_the_agent_exits_2_with_one_line_on_an_unknown_location(tmp_path: Path) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text("carbon:\n  sites:\n    main:\n      location: Frnace\n")
    result = run_greenai("agent", "--config", str(path), "--sysfs", "/nonexistent-sys")
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.splitlines()
    assert "'carbon.sites.main.location'" in line and "'Frnace'" in line and "FRA (France)" in line
    assert line.startswith(f"greenai: {path}: "), line  # the file, then the key, the value, the fix
    card = run_greenai("card", "--model", "m", "--config", str(path))  # every command that prices CO2e
    assert card.returncode == 2 and card.stderr.startswith(f"greenai: {path}: key "), card.stderr


def test_no_location_is_the_world_average_flagged_with_one_warning() -> None:
    warnings: list[str] = []
    model = CarbonModel.from_config(CarbonConfig(), warn=warnings.append)
    assert model.default.annual.provenance.fallback and model.default.annual.g_per_kwh == 475
    assert len(warnings) == 1 and "carbon.location" in warnings[0] and "\n" not in warnings[0]
    assert model.warnings == tuple(warnings)


@pytest.mark.parametrize(
    ("typed", "code", "fallback"),
    [
        ("FR", "FRA", False),
        ("fr", "FRA", False),
        ("fra", "FRA", False),
        ("DE", "DEU", False),
        ("FI", "FI", False),  # the Nordic zone (Finland's figure from the Nordic file), not FIN
        ("se3", "SE3", False),
        ("DK1", "DNK", True),  # a zone codecarbon lacks: Denmark's figure, flagged
        ("DE-BY", "DEU", True),  # any ISO 3166-2 subdivision without its own figure: its country's
        ("us-ca", "US-CA", False),
        ("GCP:europe-west1", "gcp:europe-west1", False),
    ],
)
def test_locations_a_person_types(data: CodecarbonData, typed: str, code: str, fallback: bool) -> None:
    found = data.resolve(typed)
    assert found is not None, typed
    assert found.provenance.location == code and found.provenance.fallback is fallback


@pytest.mark.parametrize(
    ("location", "name"),
    [
        ("FR", "France"),
        ("FRA", "France"),
        ("US-CA", "California, United States"),
        ("CA-QC", "Quebec, Canada"),
        ("CN-BJ", "Beijing, China"),
        ("SE3", "Sweden, bidding zone SE3"),
        ("FI", "Finland"),
        ("gcp:europe-west1", "Google Cloud europe-west1 (Belgium)"),
        ("aws:us-east-1", "AWS us-east-1 (Virginia, United States)"),
        ("azure:westeurope", "Azure westeurope (Netherlands)"),
        ("world", "world average"),
        ("", "world average"),
        ("site-a", "site-a"),
    ],
)
def test_place_names(location: str, name: str) -> None:
    assert place_name(location) == name


@pytest.mark.parametrize(
    ("location", "words"),
    [
        ("FRA", "Ember and Energy Institute via Our World in Data, carbon intensity of electricity "
                "generation by country, 2023, annual (via codecarbon "),
        ("US-CA", "US EPA, eGRID2023, "),
        ("CA-QC", "Canada Energy Regulator, Canada's Energy Future data appendices"),
        ("CN-BJ", "China Ministry of Ecology and Environment and National Bureau of Statistics, "),
        ("SE3", "ENTSO-E Transparency Platform, actual generation per production type by bidding zone"),
        ("gcp:europe-west1", "Google Cloud, region carbon data, grid carbon intensity by region, "),
    ],
)  # fmt: skip
def test_citations_name_the_dataset_and_its_publisher(
    data: CodecarbonData, location: str, words: str
) -> None:
    found = data.resolve(location)
    assert found is not None
    cite = found.provenance.cite()
    assert cite.startswith(words) and found.provenance.dataset in cite and "\n" not in cite, cite
    assert found.provenance.publisher and found.provenance.title


def test_the_year_of_googles_figures_is_stated_only_for_the_checked_codecarbon(data: CodecarbonData) -> None:
    # Google's region-carbon-info 2023.csv has these values; codecarbon's impact.csv has no year column.
    checked = CodecarbonData(data.data_dir, version="3.3.2").resolve("gcp:europe-west1")
    other = CodecarbonData(data.data_dir, version="9.9.9").resolve("gcp:europe-west1")
    assert checked is not None and checked.g_per_kwh == 122 and checked.provenance.year == 2023
    assert other is not None and other.provenance.year is None
    assert "year not stated" in other.provenance.cite()


def test_the_world_average_cites_the_iea(data: CodecarbonData) -> None:
    cite = data.world().provenance.cite()
    assert cite.startswith("IEA, Global Energy & CO2 Status Report 2019, world average")


def test_describe_cites_each_source_with_its_location_and_fallbacks(data: CodecarbonData) -> None:
    fra, tibet = data.resolve("FRA"), data.resolve("CN-XZ")
    assert fra is not None and tibet is not None
    line = describe([fra.provenance, tibet.provenance])
    assert line.count("Our World in Data") == 2 and " for FRA; " in line
    assert line.endswith("for CHN (fallback: CN-XZ not in codecarbon's data; the country's figure is used)")


def test_province_not_in_data_falls_back_to_its_country_flagged(data: CodecarbonData) -> None:
    found = data.resolve("CN-XZ")  # Tibet is not in the official table
    assert found is not None and found.provenance.fallback and found.provenance.location == "CHN"


# ---- hourly CSVs ----

EM_OLD = (
    "Datetime (UTC),Country,Zone Name,Zone Id,Carbon Intensity gCO₂eq/kWh (direct),"
    "Carbon Intensity gCO₂eq/kWh (LCA),Low Carbon Percentage,Renewable Percentage,Data Source,"
    "Data Estimated,Data Estimation Method\n"
    "2024-01-15 00:00:00,France,France,FR,20,40,90,30,rte,false,\n"
)
EM_NEW = (
    "Datetime (UTC),Country,Zone name,Zone id,Carbon intensity gCO₂eq/kWh (direct),"
    "Carbon intensity gCO₂eq/kWh (Life cycle),Carbon-free energy percentage (CFE%),"
    "Renewable energy percentage (RE%),Data source,Data estimated,Data estimation method\n"
    "2024-01-15T00:00:00.000Z,France,France,FR,20,40,90,30,rte,false,\n"
)
EM_DIRECT = (
    "Datetime (UTC),Carbon Intensity gCO2eq/kWh (direct),Low Carbon Percentage\n2024-01-15 00:00,20,90\n"
)
PLAIN_ISO = "timestamp,g_per_kwh,cfe_pct\n2024-01-15T00:00:00Z,40,90\n"
PLAIN_EPOCH = f"timestamp,g_per_kwh\n{JAN_2024}\n"


@pytest.mark.parametrize(
    ("text", "g", "basis"),
    [
        (EM_OLD, 40, "life cycle"),
        (EM_NEW, 40, "life cycle"),
        (EM_DIRECT, 20, "direct"),
        (PLAIN_ISO, 40, "as given"),
    ],
)
def test_csv_header_variants(tmp_path: Path, text: str, g: float, basis: str) -> None:
    series = read_series(_csv(tmp_path, text))
    assert series.basis == basis
    value = series.hours[JAN_2024 // 3600 * 3600]
    assert value.g_per_kwh == g and value.cfe_share == pytest.approx(0.9)


def test_csv_citation_names_the_file_and_what_it_declares(tmp_path: Path) -> None:
    em = read_series(_csv(tmp_path, EM_NEW, "fr.csv")).provenance("main")
    assert em.cite() == (
        f"{tmp_path / 'fr.csv'} (hourly, main), 2024; life cycle intensity; "
        "source: Electricity Maps (zone: FR; data source: rte)"
    )
    plain = read_series(_csv(tmp_path, PLAIN_ISO + "2025-01-15T00:00:00Z,40,90\n")).provenance("main")
    assert (
        plain.year is None and "2024-2025" in plain.cite() and "no source stated in the file" in plain.cite()
    )


def test_plain_csv_epoch_seconds_and_quarter_hours_averaged(tmp_path: Path) -> None:
    h = JAN_2024 // 3600 * 3600
    series = read_series(_csv(tmp_path, f"timestamp,g_per_kwh\n{h},100\n{h + 900},200\n{h + 3600},50\n"))
    assert series.hours[h].g_per_kwh == 150 and series.hours[h].cfe_share is None
    assert series.hours[h + 3600].g_per_kwh == 50


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("time,g_per_kwh\n2024-01-01,5\n", "row 1: no time column"),
        ("timestamp,intensity\n2024-01-01,5\n", "row 1: no intensity column"),
        (
            "timestamp,kg_per_kwh\n2024-01-01,0.05\n",
            "row 1, column 'kg_per_kwh': intensity must be in gCO2eq/kWh",
        ),
        ("Datetime (UTC),Carbon Intensity kgCO2eq/kWh (direct)\n2024-01-01,1\n", "row 1, column 'Carbon"),
        ("timestamp,g_per_kwh\n2024-01-01,5\n2024-13-01,5\n", "row 3, column 'timestamp': '2024-13-01'"),
        (
            "timestamp,g_per_kwh\n2024-01-01,5\n2024-01-02,-3\n",
            "row 3, column 'g_per_kwh': '-3' must be from 0",
        ),
        ("timestamp,g_per_kwh\n2024-01-01,lots\n", "row 2, column 'g_per_kwh': 'lots' is not a number"),
        ("timestamp,g_per_kwh,cfe_pct\n2024-01-01,5,150\n", "row 2, column 'cfe_pct'"),
        ("timestamp,g_per_kwh\n2024-01-01\n", "row 2, column 'g_per_kwh': missing value"),
    ],
)
def test_bad_csv_is_one_line_naming_file_row_and_column(tmp_path: Path, text: str, words: str) -> None:
    path = _csv(tmp_path, text)
    with pytest.raises(IntensityCsvError) as e:
        read_series(path)
    message = str(e.value)
    assert "\n" not in message and message.startswith(str(path)) and words in message, message


def test_hours_missing_from_the_csv_fall_back_to_the_annual_figure_counted(tmp_path: Path) -> None:
    h = JAN_2024 // 3600 * 3600
    csv = _csv(tmp_path, f"timestamp,g_per_kwh\n{h},10\n")
    model = _model(tmp_path, f"carbon:\n  sites:\n    s:\n      location: DEU\n      intensity_csv: {csv}\n")
    result = model.emissions("n", h, 3.0) + model.emissions("n", h + 3600, 1.0)
    assert result.location_g == pytest.approx(30 + model.default.annual.g_per_kwh)
    assert result.hourly_coverage == pytest.approx(0.75)
    assert {p.resolution for p in result.provenance} == {"hourly", "annual"}


# ---- PUE, market-based, CFE% ----


def test_the_unassigned_site_warns_only_for_nodes_that_fall_to_it(tmp_path: Path) -> None:
    text = (
        "carbon:\n  sites:\n    a:\n      location: FRA\n      nodes: ['gpu-.*']\n"
        "    b:\n      location: DEU\n      nodes: ['cpu-.*']\n"
    )
    path = tmp_path / "agent.yaml"
    path.write_text(text)
    warned: list[str] = []
    model = CarbonModel.from_config(load(path).carbon, warn=warned.append)
    assert model.site_for("gpu-1").name == "a" and model.site_for("cpu-1").name == "b"
    assert warned == [] and model.warnings == ()  # every node matched: nothing to say
    assert model.site_for("login-1").annual.provenance.fallback
    model.site_for("login-1")
    model.site_for("login-2")
    assert len(warned) == 2 and "login-1" in warned[0] and "carbon.default_site" in warned[0]
    (line,) = model.warnings
    assert "nodes login-1, login-2 match no site" in line


def test_pue_constant_and_monthly(tmp_path: Path) -> None:
    model = _model(
        tmp_path,
        "carbon:\n  sites:\n    a:\n      location: FRA\n      pue: 1.5\n      nodes: ['a.*']\n"
        "    b:\n      location: FRA\n"
        "      pue: [1.1, 1.1, 1.1, 1.2, 1.2, 1.3, 1.4, 1.4, 1.3, 1.2, 1.1, 1.1]\n"
        "    c:\n      location: FRA\n"
        "      pue: {1: 1.2, 2: 1.2, 3: 1.2, 4: 1.2, 5: 1.2, 6: 1.2, 7: 1.6, 8: 1.2,"
        " 9: 1.2, 10: 1.2, 11: 1.2, 12: 1.2}\n      nodes: ['c.*']\n  default_site: b\n",
    )
    assert model.emissions("a1", JAN_2024, 10).facility_kwh == pytest.approx(15)
    assert model.emissions("b1", JAN_2024, 10).facility_kwh == pytest.approx(11)
    assert model.emissions("b1", JUL_2024, 10).facility_kwh == pytest.approx(14)
    assert model.emissions("c1", JUL_2024, 10).pue == pytest.approx(1.6)
    assert model.site_for("zzz").name == "b"


def test_market_based_with_supplier_factor_and_contracted_cfe(data: CodecarbonData) -> None:
    grid = data.resolve("DEU")
    assert grid is not None
    i = grid.g_per_kwh
    supplier = hour_emissions(Site("s", grid, supplier_g_per_kwh=50.0), JAN_2024, 10)
    assert supplier.location_g == pytest.approx(10 * i) and supplier.market_g == pytest.approx(500)
    contract = hour_emissions(Site("s", grid, cfe_contract_share=0.6), JAN_2024, 10)
    assert contract.market_g == pytest.approx(10 * 0.4 * i)  # residual at the location factor
    both = hour_emissions(Site("s", grid, cfe_contract_share=0.6, supplier_g_per_kwh=50.0), JAN_2024, 10)
    assert both.market_g == pytest.approx(10 * 0.4 * 50)


def test_cfe_pct_is_contracted_plus_grid_share_of_the_rest_hour_by_hour(tmp_path: Path) -> None:
    h = JAN_2024 // 3600 * 3600
    csv = _csv(tmp_path, f"timestamp,g_per_kwh,cfe_pct\n{h},100,50\n{h + 3600},100,0\n")
    model = _model(
        tmp_path,
        f"carbon:\n  sites:\n    s:\n      location: FRA\n      intensity_csv: {csv}\n"
        "      cfe_contract_pct: 20\n",
    )
    result = model.emissions("n", h, 3.0) + model.emissions("n", h + 3600, 1.0)
    # hour 1: 3 x (0.2 + 0.8 x 0.5) = 1.8 kWh; hour 2: 1 x (0.2 + 0) = 0.2 kWh; 2.0 / 4.0 = 50%
    assert result.cfe_kwh == pytest.approx(2.0) and result.cfe_pct == pytest.approx(50.0)


def test_total_of_no_hours_is_zero() -> None:
    assert total([]) == Emissions(0.0, 0.0, 0.0, 0.0, 0.0)


# ---- the config section ----

BAD_CARBON = [
    ("carbon: 5\n", "carbon", "must be a mapping"),
    ("carbon:\n  sitez: {}\n", "carbon.sitez", "unknown key"),
    ("carbon:\n  sites:\n    main:\n      pue: 0.9\n", "carbon.sites.main.pue", "from 1 to 5"),
    (
        "carbon:\n  sites:\n    main:\n      pue: [1.1, 1.1, 1.1, 0.5, 1, 1, 1, 1, 1, 1, 1, 1]\n",
        "carbon.sites.main.pue[3]",
        "from 1",
    ),
    ("carbon:\n  sites:\n    main:\n      pue: [1.1, 1.2]\n", "carbon.sites.main.pue", "12 monthly"),
    ("carbon:\n  sites:\n    main:\n      pue: {1: 1.2}\n", "carbon.sites.main.pue", "missing 2, 3"),
    ("carbon:\n  sites:\n    main:\n      pue: {13: 1.2}\n", "carbon.sites.main.pue[13]", "not a month"),
    (
        "carbon:\n  sites:\n    main:\n      cfe_contract_pct: 120\n",
        "carbon.sites.main.cfe_contract_pct",
        "0 to 100",
    ),
    (
        "carbon:\n  sites:\n    main:\n      supplier_g_per_kwh: -1\n",
        "carbon.sites.main.supplier_g_per_kwh",
        "from 0",
    ),
    (
        "carbon:\n  sites:\n    main:\n      intensity_csv: ci.csv\n",
        "carbon.sites.main.intensity_csv",
        "absolute",
    ),
    (
        "carbon:\n  sites:\n    main:\n      nodes: ['gpu-[']\n",
        "carbon.sites.main.nodes[0]",
        "not a valid regex",
    ),
    ("carbon:\n  sites:\n    main: {}\n  default_site: other\n", "carbon.default_site", "names no site"),
    ("carbon:\n  sites:\n    main: {}\n  location: FRA\n", "carbon.location", "only without sites"),
    ("carbon:\n  embodied:\n    - {name: a, total_kg: 1}\n", "carbon.embodied[0].lifetime_years", "required"),
    (
        "carbon:\n  embodied:\n    - {name: a, total_kg: 1, lifetime_years: 4}\n"
        "    - {name: b, total_kg: 1, lifetime_years: 4, share: 2}\n",
        "carbon.embodied[1].share",
        "0 to 1",
    ),
    ("carbon:\n  embodied: {name: a}\n", "carbon.embodied", "must be a list"),
]


@pytest.mark.parametrize(("content", "key", "words"), BAD_CARBON)
def test_bad_carbon_config_is_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, key: str, words: str
) -> None:
    path = tmp_path / "agent.yaml"
    path.write_text(content)
    code = main(["doctor", "--config", str(path)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1, err
    assert str(path) in err and f"'{key}'" in err and words in err, err


def test_carbon_config_defaults_and_values(tmp_path: Path) -> None:
    assert load(None).carbon == CarbonConfig()
    path = tmp_path / "agent.yaml"
    path.write_text("carbon:\n  sites:\n    main:\n      location: US-CA\n      nodes: gpu-.*\n")
    assert load(path).carbon.sites["main"] == SiteConfig(location="US-CA", nodes=("gpu-.*",))
