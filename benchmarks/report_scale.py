"""The annual report at scale: 50 ledgers, 1 million job-hour rows in one year; at most 30 s and 500 MB.

The ledgers are created by the real writer (schema and migrations), then filled with SQLite executemany:
per job-hour a GPU (nvml) and a CPU (rapl) row in `energy` and one `usage` row; per node-hour an
unattributed and node total. The report (`greenai report`, all three formats) runs in a child process,
whose wall time and peak RSS are printed. Exit 1 when over a limit.

    python3 benchmarks/report_scale.py [--dir DIR] [--ledgers 50] [--rows 1000000]
"""

from __future__ import annotations

import argparse
import calendar
import random
import resource
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from agent.ledger.writer import Ledger  # noqa: E402

YEAR = 2025
LIMIT_S = 30.0
LIMIT_MB = 500.0
PHASES = ("pretraining", "fine-tuning", "inference", "evaluation", "other")


def make_ledger(path: Path, node: str, job_hours: int, rng: random.Random) -> None:
    Ledger(path, node, background=False).close()  # the real schema, through the migrations
    start = calendar.timegm((YEAR, 1, 1, 0, 0, 0))
    year_hours = (calendar.timegm((YEAR + 1, 1, 1, 0, 0, 0)) - start) // 3600
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous = OFF")
    conn.execute("BEGIN")
    jobs, energy, usage = [], [], []
    node_j: dict[int, float] = {}
    job_id, streams, left = 0, 3, job_hours
    cursors = [rng.randrange(0, 200) for _ in range(streams)]
    while left > 0:
        stream = min(range(streams), key=lambda s: cursors[s])
        first = cursors[stream]
        length = min(rng.randint(6, 96), left, year_hours - first)
        if length <= 0:
            break
        job_id += 1
        phase = PHASES[job_id % len(PHASES)]
        t0 = start + first * 3600
        jobs.append(
            (
                job_id,
                "slurm",
                f"{node}-{job_id}",
                node,
                f"user{job_id % 40}",
                f"job{job_id}",
                t0,
                t0 + length * 3600,
                t0 + length * 3600,
                f"proj{job_id % 7}",
                phase,
                f"model{job_id % 5}",
                rng.randint(10**8, 10**10) if phase != "inference" else None,
            )
        )
        for h in range(first, first + length):
            hour = start + h * 3600
            gpu, cpu = rng.uniform(1e6, 3e6), rng.uniform(2e5, 6e5)
            energy += [(job_id, hour, "gpu", "nvml", gpu), (job_id, hour, "cpu", "rapl", cpu)]
            usage.append((job_id, hour, 3600.0, 3600.0))
            node_j[hour] = node_j.get(hour, 0.0) + gpu + cpu
        cursors[stream] = first + length + rng.randint(0, 3)
        left -= length
    conn.executemany(
        'INSERT INTO jobs (id, scheduler, job_id, node, user, name, start, "end", last_seen, project, phase, '
        "model, tokens) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
        jobs,
    )
    conn.executemany("INSERT INTO energy VALUES (?,?,?,?,?)", energy)
    conn.executemany("INSERT INTO usage VALUES (?,?,?,?)", usage)
    idle = [(node, start + h * 3600, "cpu", "rapl", 3.6e5) for h in range(year_hours)]
    conn.executemany("INSERT INTO unattributed VALUES (?,?,?,?,?)", idle)
    conn.executemany(
        "INSERT INTO node_energy VALUES (?,?,?,?,?)",
        [
            (node, hour, "cpu", "rapl", j + 3.6e5)
            for (node, hour, *_r) in idle
            for j in (node_j.get(hour, 0.0),)
        ],
    )
    conn.execute("COMMIT")
    conn.close()


def write_config(folder: Path) -> Path:
    start = calendar.timegm((YEAR, 1, 1, 0, 0, 0))
    csv = folder / "hourly.csv"
    rng = random.Random(7)
    rows = [f"{start + h * 3600},{rng.uniform(20, 120):.1f},{rng.uniform(40, 95):.1f}" for h in range(8760)]
    csv.write_text("timestamp,g_per_kwh,cfe_pct\n" + "\n".join(rows) + "\n")
    cfg = folder / "agent.yaml"
    cfg.write_text(
        "carbon:\n  sites:\n"
        f"    paris: {{location: FRA, intensity_csv: {csv}, pue: 1.2, nodes: ['node-[0-2].*']}}\n"
        "    virginia: {location: US-VA, pue: 1.4, cfe_contract_pct: 30, nodes: ['node-[3-9].*']}\n"
        "  default_site: virginia\n"
        "  embodied:\n    - {name: dgx, total_kg: 3000, lifetime_years: 5, nodes: ['node-.*']}\n"
    )
    return cfg


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, help="where to build the ledgers (default: a temporary folder)")
    parser.add_argument("--ledgers", type=int, default=50)
    parser.add_argument("--rows", type=int, default=1_000_000, help="job-hour rows in all")
    args = parser.parse_args()
    folder = args.dir or Path(tempfile.mkdtemp(prefix="greenai-report-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"node-{i:02d}.db" for i in range(args.ledgers)]
    t = time.monotonic()
    rng = random.Random(42)
    for i, path in enumerate(paths):
        if not path.exists():
            make_ledger(path, f"node-{i:02d}", args.rows // args.ledgers, rng)
    cfg = write_config(folder)
    print(f"ledgers ready in {time.monotonic() - t:.1f} s: {folder}")
    out = folder / "report"
    command = [
        sys.executable,
        "-m",
        "agent.cli",
        "report",
        "--year",
        str(YEAR),
        "--config",
        str(cfg),
        "--out",
        str(out),
        "--baseline-year",
        str(YEAR - 1),
        "--ledger",
        *map(str, paths),
    ]
    t = time.monotonic()
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    seconds = time.monotonic() - t
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    if done.returncode != 0:
        print(done.stderr, file=sys.stderr)
        return 1
    print(
        f"report: {seconds:.1f} s, peak RSS {peak_mb:.0f} MB ({args.ledgers} ledgers, {args.rows} job-hours)"
    )
    over = seconds > LIMIT_S or peak_mb > LIMIT_MB
    print(f"{'OVER' if over else 'within'} the limits ({LIMIT_S:g} s, {LIMIT_MB:g} MB)")
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())
