"""The report's charts as PNG bytes, drawn with matplotlib's Agg backend from report.json's figures."""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import Any

from agent.report.numbers import units

MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
GREEN, GREY, BLUE = "#2e7d32", "#9e9e9e", "#1565c0"


def charts(doc: Mapping[str, Any]) -> dict[str, bytes]:
    """File name -> PNG bytes: monthly energy, monthly emissions, the intensity heatmap, the targets."""
    import matplotlib

    matplotlib.use("Agg")
    return {
        "energy_by_month.png": _energy_by_month(doc),
        "emissions_by_month.png": _emissions_by_month(doc),
        "intensity_heatmap.png": _heatmap(doc),
        "targets.png": _targets(doc),
    }


def _png(fig: Any) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def _figure(width: float = 8.0, height: float = 3.2) -> tuple[Any, Any]:
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(width, height))


def _energy_by_month(doc: Mapping[str, Any]) -> bytes:
    fig, ax = _figure()
    rows = doc["by_month"]
    div, unit, _m_div, _m_unit = units(doc)
    ax.bar(MONTHS, [r["facility_kwh"] / div for r in rows], color=GREY, label="facility (IT x PUE)")
    ax.bar(MONTHS, [r["it_kwh"] / div for r in rows], color=GREEN, label="IT")
    ax.set_ylabel(unit)
    ax.set_title(f"Energy by month, {doc['year']}")
    ax.legend(frameon=False)
    return _png(fig)


def _emissions_by_month(doc: Mapping[str, Any]) -> bytes:
    fig, ax = _figure()
    rows = doc["by_month"]
    _e_div, _e_unit, div, unit = units(doc)
    x = range(12)
    ax.bar(
        [i - 0.2 for i in x],
        [r["location_kg"] / div for r in rows],
        0.4,
        color=GREY,
        label="location-based",
    )
    ax.bar([i + 0.2 for i in x], [r["market_kg"] / div for r in rows], 0.4, color=BLUE, label="market-based")
    ax.set_xticks(list(x), MONTHS)
    ax.set_ylabel(f"{unit} CO2e")
    ax.set_title(f"Emissions by month, {doc['year']} (embodied apart)")
    ax.legend(frameon=False)
    return _png(fig)


def _heatmap(doc: Mapping[str, Any]) -> bytes:
    fig, ax = _figure(8.0, 3.6)
    grid = [[float("nan") if v is None else v for v in row] for row in doc["emissions"]["intensity_heatmap"]]
    image = ax.imshow(grid, aspect="auto", cmap="YlOrRd", interpolation="nearest")
    ax.set_yticks(range(12), MONTHS)
    ax.set_xticks(range(0, 24, 3), [f"{h:02d}" for h in range(0, 24, 3)])
    ax.set_xlabel("hour of day (UTC)")
    ax.set_title("Carbon intensity of the energy used (gCO2e/kWh, energy-weighted)")
    fig.colorbar(image, ax=ax, label="g/kWh")
    return _png(fig)


def _targets(doc: Mapping[str, Any]) -> bytes:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(10.0, 3.2))
    t = doc["targets"]
    specs = (
        (axes[0], t["co2_per_training_task"], "path", "kg CO2e per training task"),
        (axes[1], t["cfe"], "path", "CFE %"),
        (axes[2], t["efficiency"], "path_5x", "kWh per million tokens"),
    )
    for ax, target, path_key, title in specs:
        path = target.get(path_key) or []
        if path:
            ax.plot([p["year"] for p in path], [p["target"] for p in path], "--", color=GREY, label="path")
        if path_key == "path_5x" and target.get("path_10x"):
            p10 = target["path_10x"]
            ax.plot([p["year"] for p in p10], [p["target"] for p in p10], ":", color=GREY, label="path 10x")
        if target.get("baseline") is not None and doc.get("baseline_year") is not None:
            ax.plot([doc["baseline_year"]], [target["baseline"]], "o", color=BLUE, label="baseline")
        if target.get("actual") is not None:
            ax.plot([doc["year"]], [target["actual"]], "s", color=GREEN, label=str(doc["year"]))
        ax.set_title(title, fontsize=10)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(frameon=False, fontsize=8)
        else:
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes, color=GREY)
    return _png(fig)
