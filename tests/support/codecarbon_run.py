"""A real emissions.csv, written by CodeCarbon's own OfflineEmissionsTracker over a second of work."""

from __future__ import annotations

import csv
import time
import warnings
from pathlib import Path


def tracked_run(out_dir: Path) -> tuple[Path, dict[str, str]]:
    """Track a one-second busy loop in France; the emissions.csv and the row CodeCarbon wrote."""
    from codecarbon import OfflineEmissionsTracker  # imported only by the tests that need it

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # save_to_file: we still allow codecarbon 2.3
        tracker = OfflineEmissionsTracker(
            country_iso_code="FRA", output_dir=str(out_dir), save_to_file=True, log_level="error",
            measure_power_secs=0.5, project_name="greenai-test",
        )  # fmt: skip
        tracker.start()
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            sum(i * i for i in range(1000))
        tracker.stop()
    path = out_dir / "emissions.csv"
    with path.open(encoding="utf-8", newline="") as f:
        (written,) = list(csv.DictReader(f))
    return path, written
