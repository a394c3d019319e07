"""The report's charts as PNG bytes, drawn with matplotlib's Agg backend from report.json's figures.

Every panel has a title and both axes labelled with their units; a legend wherever it shows several
series. All charts are WIDTH_IN wide at DPI, so that they print at one scale across an A4 page.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
from typing import Any

from agent.report.numbers import units

MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
GREEN, GREY, BLUE = "#2e7d32", "#9e9e9e", "#1565c0"
WIDTH_IN, DPI = 8.0, 150
FONT_PT = 9


def charts(doc: Mapping[str, Any]) -> dict[str, bytes]:
    """File name -> PNG bytes: monthly energy, monthly emissions, the intensity heatmap, the targets."""
    import matplotlib

    matplotlib.use("Agg")
    matplotlib.rcParams.update({"font.size": FONT_PT, "axes.titlesize": FONT_PT + 1, "legend.fontsize": 8})
    return {
        "energy_by_month.png": _energy_by_month(doc),
        "emissions_by_month.png": _emissions_by_month(doc),
        "intensity_heatmap.png": _heatmap(doc),
        "targets.png": _targets(doc),
    }


def _png(fig: Any, layout: bool = True) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    if layout:
        fig.tight_layout()
    fig.savefig(buf, format="png", dpi=DPI)
    plt.close(fig)
    return buf.getvalue()


def _figure(height: float = 3.2) -> tuple[Any, Any]:
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(WIDTH_IN, height))


def _energy_by_month(doc: Mapping[str, Any]) -> bytes:
    fig, ax = _figure()
    rows = doc["by_month"]
    div, unit, _m_div, _m_unit = units(doc)
    ax.bar(MONTHS, [r["facility_kwh"] / div for r in rows], color=GREY, label="facility (IT x PUE)")
    ax.bar(MONTHS, [r["it_kwh"] / div for r in rows], color=GREEN, label="IT")
    ax.set_xlabel(f"month of {doc['year']} (UTC)")
    ax.set_ylabel(f"energy ({unit})")
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
    ax.set_xlabel(f"month of {doc['year']} (UTC)")
    ax.set_ylabel(f"CO2e ({unit})")
    ax.set_title(f"Emissions by month, {doc['year']} (embodied apart)")
    ax.legend(frameon=False)
    return _png(fig)


def _heatmap(doc: Mapping[str, Any]) -> bytes:
    fig, ax = _figure(3.6)
    grid = [[float("nan") if v is None else v for v in row] for row in doc["emissions"]["intensity_heatmap"]]
    image = ax.imshow(grid, aspect="auto", cmap="YlOrRd", interpolation="nearest")
    ax.set_yticks(range(12), MONTHS)
    ax.set_xticks(range(0, 24, 3), [f"{h:02d}" for h in range(0, 24, 3)])
    ax.set_xlabel("hour of day (UTC)")
    ax.set_ylabel(f"month of {doc['year']}")
    ax.set_title("Carbon intensity of the energy used, energy-weighted (blank: no energy used)")
    fig.colorbar(image, ax=ax, label="intensity (gCO2e/kWh)")
    return _png(fig)


TARGET_PANELS = (
    # (target key, path key, title, y axis label); the first two are worded from the target itself
    ("co2_per_training_task", "path", "", ""),
    ("cfe", "path", "Carbon-free energy", "CFE (% of energy)"),
    ("efficiency", "path_5x", "Training efficiency (5x, 10x)", "kWh per million tokens"),
)


def _co2_panel(target: Mapping[str, Any]) -> tuple[str, str, float]:
    """Title, y axis label and kg divisor of the CO2e per task panel: the headline phase's figure
    (`mean` or `median`, from the target's `figure`), in t when its values reach 1,000 kg."""
    phase = target.get("headline_phase")
    statistic = str(target.get("figure") or "location_kg_median").rsplit("_", 1)[-1]
    values = [target.get("actual"), target.get("baseline")] + [p["target"] for p in target.get("path") or []]
    div, unit = (
        (1000.0, "t") if max((abs(v) for v in values if v is not None), default=0) >= 1000 else (1.0, "kg")
    )
    title = f"CO2e per {phase} task" if phase else "CO2e per training task"
    return title, f"{unit} CO2e per task ({statistic})", div


def _targets(doc: Mapping[str, Any]) -> bytes:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(TARGET_PANELS), figsize=(WIDTH_IN, 3.0))
    t = doc["targets"]
    for ax, (key, path_key, title, ylabel) in zip(axes, TARGET_PANELS, strict=True):
        target = t[key]
        div = 1.0
        if key == "co2_per_training_task":
            title, ylabel, div = _co2_panel(target)
        path = target.get(path_key) or []
        if path:
            ax.plot(
                [p["year"] for p in path], [p["target"] / div for p in path], "--", color=GREY, label="path"
            )
        if path_key == "path_5x" and target.get("path_10x"):
            p10 = target["path_10x"]
            ax.plot([p["year"] for p in p10], [p["target"] for p in p10], ":", color=GREY, label="path 10x")
        if target.get("baseline") is not None and doc.get("baseline_year") is not None:
            ax.plot([doc["baseline_year"]], [target["baseline"] / div], "o", color=BLUE, label="baseline")
        if target.get("actual") is not None:
            ax.plot([doc["year"]], [target["actual"] / div], "s", color=GREEN, label=str(doc["year"]))
        ax.set_title(title)
        ax.set_xlabel("year")
        ax.set_ylabel(ylabel)
        ax.xaxis.get_major_locator().set_params(integer=True)
        if not ax.get_legend_handles_labels()[0]:
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes, color=GREY)
    # One legend under the panels, for the series of all three: inside a panel it would hide points.
    legend: dict[str, Any] = {}
    for ax in axes:
        handles, labels = ax.get_legend_handles_labels()
        legend.update(zip(labels, handles, strict=True))
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    if legend:
        fig.legend(list(legend.values()), list(legend), loc="lower center", ncol=len(legend), frameon=False)
    return _png(fig, layout=False)
