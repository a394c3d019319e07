"""Kinds, stated accuracies and ranges: what every published figure says about where it came from."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.ledger.provenance import (
    ESTIMATED,
    IMPORTED,
    MEASURED,
    Spread,
    Tally,
    accuracy_of,
    kind_of,
    kinds_sentence,
    method_of,
    tally,
)

SOURCES = ["nvml", "rapl", "estimate", "import:csv", "import:codecarbon"]


def test_every_source_has_its_kind() -> None:
    assert [kind_of(s) for s in SOURCES] == [MEASURED, MEASURED, ESTIMATED, IMPORTED, IMPORTED]
    assert accuracy_of("import:csv").known is False
    assert accuracy_of("import:csv", 10).minus == pytest.approx(0.1)
    assert accuracy_of("estimate").plus == pytest.approx(1.9)
    assert method_of("import:codecarbon", "RAPL where readable") == (
        "imported from CodeCarbon (its method: RAPL where readable)"
    )


def test_energy_counted_during_an_outage_is_measured_and_named_so() -> None:
    assert kind_of("nvml_outage") == MEASURED and accuracy_of("nvml_outage") == accuracy_of("nvml")
    assert "could not be read" in method_of("nvml_outage")


def test_a_range_adds_the_stated_bounds() -> None:
    t = tally([("nvml", 100.0), ("estimate", 10.0), ("import:csv", 50.0)])
    assert t.low == pytest.approx(95.0 + 4.0 + 50.0)
    assert t.high == pytest.approx(105.0 + 29.0 + 50.0)
    assert t.unquantified == 50.0  # an import that states no accuracy is not pretended into the range
    low, high = t.scaled(320.0)
    assert low == pytest.approx(320 * t.low / 160) and high == pytest.approx(320 * t.high / 160)


def test_the_sentence_never_says_measured_for_imported_or_estimated_energy() -> None:
    only_imported = kinds_sentence(tally([("import:csv", 5.0)]))
    assert "measured" not in only_imported and "metered" not in only_imported
    assert "imported from a CSV file" in only_imported
    only_estimated = kinds_sentence(tally([("estimate", 5.0)]))
    assert "measured" not in only_estimated and "estimated" in only_estimated
    mixed = kinds_sentence(tally([("nvml", 3.0), ("estimate", 1.0)]))
    assert mixed.startswith("Of this energy, 75.0 % was measured per job by greenai-agent (NVML)")


parts = st.lists(
    st.tuples(st.sampled_from(SOURCES), st.floats(min_value=0, max_value=1e9, allow_nan=False)), max_size=12
)


@given(parts, parts)
def test_totals_are_conserved_and_bracketed(a: list[tuple[str, float]], b: list[tuple[str, float]]) -> None:
    whole = tally(a + b)
    split = tally(a)
    split.absorb(tally(b))
    assert whole.total == pytest.approx(sum(kwh for _, kwh in a + b), rel=1e-9, abs=1e-6)
    assert split.total == pytest.approx(whole.total, rel=1e-9, abs=1e-6)
    assert split.low == pytest.approx(whole.low, rel=1e-9, abs=1e-6)
    assert whole.low <= whole.total * (1 + 1e-12) + 1e-9 and whole.total <= whole.high * (1 + 1e-12) + 1e-9
    shares = [s for s in whole.shares().values() if s is not None]
    assert not shares or sum(shares) == pytest.approx(1.0)


def test_an_empty_tally_claims_nothing() -> None:
    t = Tally()
    assert t.shares() == {MEASURED: None, ESTIMATED: None, IMPORTED: None}
    assert t.range_dict() == {"value": 0.0, "low": None, "high": None}
    assert kinds_sentence(t) == "No energy was recorded."


def test_a_spread_scales_each_part_by_its_own_energy() -> None:
    spread = Spread()
    spread.add(100.0, tally([("nvml", 10.0)]))  # +/-5 %
    spread.add(50.0, tally([("import:csv", 1.0)]))  # unknown: at its value at both ends
    assert (spread.value, spread.bounds()) == (150.0, (pytest.approx(145.0), pytest.approx(155.0)))
    unknown = Spread()
    unknown.add(50.0, tally([("import:csv", 1.0)]))
    assert unknown.bounds() == (None, None)  # no part of stated accuracy: no range at all
    unknown.absorb(spread)
    assert unknown.value == 200.0 and unknown.bounds(10.0) == (pytest.approx(19.5), pytest.approx(20.5))
