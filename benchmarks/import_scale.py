"""`greenai import csv` at scale: 100,000 runs into a fresh ledger; at most 20 s and 300 MB.

The CSV holds runs of 1 minute to 48 hours (log-uniform: half are shorter than 40 minutes, the mean
is 6 hours) over one year on 20 nodes, with CPU, GPU and DRAM energy and
GPU-hours, so each run books several hours of energy, usage and node rows. The import runs in a child
process (`python -m agent.cli import csv`), whose wall time and peak RSS are printed; then the same
file is imported again (every run unchanged). Exit 1 when over a limit.

    python3 benchmarks/import_scale.py [--dir DIR] [--rows 100000]
"""

from __future__ import annotations

import argparse
import calendar
import math
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
YEAR = 2025
LIMIT_S = 20.0
LIMIT_MB = 300.0
NODES = 20


def write_csv(path: Path, rows: int, rng: random.Random) -> None:
    start = calendar.timegm((YEAR, 1, 1, 0, 0, 0))
    year_s = 365 * 24 * 3600
    with path.open("w", encoding="utf-8") as f:
        f.write("job_id,node,user,project,phase,start,end,cpu_kwh,gpu_kwh,dram_kwh,gpu_hours,tokens\n")
        for i in range(rows):
            t0 = start + rng.randrange(0, year_s - 48 * 3600)
            length = round(math.exp(rng.uniform(math.log(60), math.log(48 * 3600))))
            hours = length / 3600
            f.write(
                f"{i},node-{i % NODES:02d},user{i % 40},proj{i % 7},pretraining,{t0},{t0 + length},"
                f"{0.3 * hours:.4f},{2.4 * hours:.4f},{0.05 * hours:.4f},{4 * hours:.3f},{i * 1000}\n"
            )


def timed_import(csv: Path, ledger: Path) -> tuple[float, float, str]:
    """(wall seconds, peak RSS in MB of the children so far, stdout) of one `greenai import csv`."""
    command = [sys.executable, "-m", "agent.cli", "import", "csv", str(csv), "--ledger", str(ledger)]
    t = time.monotonic()
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    seconds = time.monotonic() - t
    if done.returncode != 0:
        print(done.stderr, file=sys.stderr)
        raise SystemExit(1)
    return seconds, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, done.stdout.strip()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--dir", type=Path, help="where to write the file and ledger (default: a temporary dir)"
    )
    parser.add_argument("--rows", type=int, default=100_000)
    args = parser.parse_args()
    folder = args.dir or Path(tempfile.mkdtemp(prefix="greenai-import-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    csv, ledger = folder / "runs.csv", folder / "ledger.db"
    ledger.unlink(missing_ok=True)
    write_csv(csv, args.rows, random.Random(42))
    print(f"{csv}: {args.rows} runs, {csv.stat().st_size / 1e6:.1f} MB")
    seconds, peak_mb, line = timed_import(csv, ledger)
    print(f"import: {seconds:.1f} s, peak RSS {peak_mb:.0f} MB: {line}")
    again_s, peak_mb, line = timed_import(csv, ledger)
    print(f"re-import: {again_s:.1f} s, peak RSS {peak_mb:.0f} MB: {line}")
    over = seconds > LIMIT_S or again_s > LIMIT_S or peak_mb > LIMIT_MB
    print(f"{'OVER' if over else 'within'} the limits ({LIMIT_S:g} s, {LIMIT_MB:g} MB)")
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())
