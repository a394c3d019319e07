"""The card's blocks for the standards: Hugging Face's `co2_eq_emissions` and the EU AI Act Annex XI.

Also the hardware text both of them (and the card) name; docs/standards.md maps each field.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from agent import __version__
from agent.carbon.data import CodecarbonData
from agent.commands.card.totals import (
    METER_SHORT,
    bounds,
    gpu_hours,
    kinds_words,
    locations,
    phase_words,
    phases_of,
    sources_of,
    span_seconds,
    summed,
    tally,
)
from agent.ledger.job_carbon import JobCarbon
from agent.ledger.provenance import ESTIMATED, IMPORT_PREFIX, IMPORTED, KINDS, MEASURED, Tally
from agent.ledger.summary import JobSummary
from agent.units import DAY_SECONDS, share_text

TOOL_SHORT = {"csv": "a CSV file", "codecarbon": "CodeCarbon"}
NOT_RECORDED = "not recorded"


def gpu_text(model: str, count: int | None) -> str:
    """`8 x NVIDIA H100 80GB HBM3`; "" when nothing of the GPUs is recorded."""
    if model and count:
        return f"{count} x {model}"
    if model:
        return f"{model} (count not recorded)"
    return f"{count} x GPU (model not recorded)" if count else ""


def hardware(jobs: Sequence[JobSummary]) -> dict[str, Any]:
    """Hardware type and count: {gpus: [{model, count, runs}], cpus: [model], text}; `text` is the GPUs
    (with their runs where they differ), else the CPUs, else `not recorded`."""
    configs: dict[tuple[str, int | None], int] = {}
    for j in jobs:
        if j.info.gpu_model or j.info.gpu_count:
            key = (j.info.gpu_model, j.info.gpu_count)
            configs[key] = configs.get(key, 0) + 1
    cpus = list(dict.fromkeys(j.info.cpu_model for j in jobs if j.info.cpu_model))
    texts = [gpu_text(m, c) for m, c in configs]
    if len(texts) > 1:
        texts = [f"{gpu_text(m, c)} ({n} run{'s' if n != 1 else ''})" for (m, c), n in configs.items()]
    return {
        "gpus": [{"model": m or None, "count": c, "runs": n} for (m, c), n in configs.items()],
        "cpus": cpus,
        "text": ", ".join(texts) or ", ".join(cpus) or NOT_RECORDED,
    }


def hf_block(runs: Sequence[JobCarbon], training: bool, data: CodecarbonData | None) -> dict[str, Any]:
    """Hugging Face's `co2_eq_emissions`: grams location-based; `training_type` only for training runs."""
    block: dict[str, Any] = {
        "emissions": round(summed(runs).location_g, 3),
        "source": source_text(tally(runs)),
    }
    if training:
        block["training_type"] = phase_words(phases_of(runs))
    block["geographical_location"] = ", ".join(p["place"] for p in locations(runs, data))
    block["hardware_used"] = hardware([r.job for r in runs])["text"]
    return block


def tools(t: Tally) -> str:
    """The tools imported energy came from: `a CSV file`, `CodeCarbon`."""
    names = (s[len(IMPORT_PREFIX) :] for s in sources_of(t, IMPORTED))
    return ", ".join(sorted({TOOL_SHORT.get(n, n) for n in names}))


def source_text(t: Tally) -> str:
    """`greenai-agent 0.1.0: measured (NVML, RAPL) 92 %, estimated 8 %`, generated from the kinds."""
    shares = t.shares()
    how = {
        MEASURED: f"measured ({', '.join(METER_SHORT.get(s, s) for s in sources_of(t, MEASURED))})",
        ESTIMATED: "estimated",
        IMPORTED: f"imported from {tools(t)}",
    }
    parts = [f"{how[k]} {share_text(shares[k], 0)}" for k in KINDS if t.by_kind[k] > 0]
    return f"greenai-agent {__version__}: " + (", ".join(parts) or "no energy recorded")


def annex_xi(training: Sequence[JobCarbon]) -> dict[str, Any] | None:
    """The EU AI Act Annex XI training figures; None when no run is training."""
    if not training:
        return None
    jobs = [r.job for r in training]
    energy = bounds(training, lambda r: r.emissions.it_kwh)
    return {
        "runs": len(training),
        "phases": phases_of(training),
        "training_energy_mwh": mwh2(energy["value"]),
        "training_energy_mwh_low": mwh2(energy["low"]),
        "training_energy_mwh_high": mwh2(energy["high"]),
        "training_energy_basis": kinds_words(tally(training)),
        "training_time_wall_clock_days": span_seconds(jobs) / DAY_SECONDS,
        "training_run_days": sum(j.duration_seconds for j in jobs) / DAY_SECONDS,
        "training_time_hardware_days": gpu_hours(jobs) / 24,
        "hardware": hardware(jobs)["text"],
        "compute_flops": None,
        "compute": "not reported",
    }


def mwh2(kwh: float | None) -> float | None:
    """kWh as MWh to 2 significant figures (Annex XI's precision)."""
    return None if kwh is None else float(f"{kwh / 1000:.2g}")
