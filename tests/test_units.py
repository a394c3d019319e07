"""The one formatter every output uses: energy and CO2e in the unit that suits them, shares, ranges."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.units import (
    ENERGY_UNITS,
    MASS_UNITS,
    energy_text,
    joules_text,
    mass_text,
    range_text,
    share_text,
    sig,
    table_unit,
)


@pytest.mark.parametrize(
    ("kwh", "text"),
    [
        (0.0, "0 Wh"),
        (0.000412, "0.412 Wh"),
        (0.0123, "12.3 Wh"),
        (12.345, "12.3 kWh"),
        (999.4, "999 kWh"),
        (999.96, "1.00 MWh"),  # rounding up moves to the next unit, never "1,000 kWh"
        (50400.0, "50.4 MWh"),  # the figure `greenai job` printed as 50400.000000 kWh
        (1.2e6, "1.20 GWh"),
        (3.4e9, "3,400 GWh"),
    ],
)
def test_energy_reads_in_the_unit_that_suits_it(kwh: float, text: str) -> None:
    assert energy_text(kwh) == text


def test_mass_and_joules() -> None:
    assert mass_text(1_564_920) == "1.56 t"  # was `1.56492e+06 g`
    assert mass_text(2_550_000) == "2.55 t"
    assert mass_text(412) == "412 g" and mass_text(12_300) == "12.3 kg"
    assert joules_text(181_440_000_000.0) == "50.4 MWh"
    assert joules_text(36_000.0) == "10.0 Wh"


def test_shares_never_read_minus_zero() -> None:
    assert share_text(-1e-12) == "0.0 %"
    assert share_text(0.0) == "0.0 %"
    assert share_text(1e-6) == "< 0.1 %"
    assert share_text(0.1234) == "12.3 %"
    assert share_text(None) == "-"


def test_a_range_is_in_the_value_unit() -> None:
    assert range_text(101_000, 95_000, 108_000, ENERGY_UNITS) == "101 MWh (95.0-108)"
    assert range_text(500, None, None, MASS_UNITS) == "500 g"


def test_one_unit_per_table_suits_its_largest_figure() -> None:
    assert table_unit([0.2, 40.0, 1500.0], ENERGY_UNITS) == ("MWh", 1e3)
    assert table_unit([0.0002], ENERGY_UNITS) == ("Wh", 1e-3)
    assert table_unit([], MASS_UNITS) == ("g", 1.0)


finite = st.floats(min_value=1e-9, max_value=1e15, allow_nan=False)


@given(finite)
def test_energy_text_reads_back_within_rounding(kwh: float) -> None:
    text = energy_text(kwh)
    match = re.fullmatch(r"([\d,]+(?:\.\d+)?) (Wh|kWh|MWh|GWh)", text)
    assert match, text
    value = float(match.group(1).replace(",", "")) * dict(ENERGY_UNITS)[match.group(2)]
    assert value == pytest.approx(kwh, rel=5e-3, abs=1e-12)
    assert float(match.group(1).replace(",", "")) >= 1 or match.group(2) == "Wh"


@given(
    st.one_of(
        st.just(0.0), st.floats(min_value=1e-9, max_value=1e12), st.floats(min_value=-1e12, max_value=-1e-9)
    )
)
def test_sig_never_prints_an_exponent_or_minus_zero(value: float) -> None:
    text = sig(value)
    assert "e" not in text and text != "-0"
    assert float(text.replace(",", "")) == pytest.approx(value, rel=5e-3)
