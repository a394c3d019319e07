"""Each job's hardware in the ledger, from the live path: the real pynvml over the fake libnvidia-ml.so.1
names the GPUs, attribution says which a job used and how many at once, procfs names the CPU."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from agent.cli import main
from tests.live.gpu_node import A100, CPU_MODEL, H100

REPO = Path(__file__).resolve().parents[2]


def test_a_job_on_2_of_4_gpus_records_their_model_and_count(
    fake_nvml_lib: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ledger = tmp_path / "ledger.db"
    env = {**os.environ, "LD_LIBRARY_PATH": str(fake_nvml_lib), "FAKE_NVML_STATE": str(tmp_path / "state")}
    done = subprocess.run(
        [sys.executable, "-m", "tests.live.gpu_node", str(tmp_path / "node"), str(ledger),
         "--state", str(tmp_path / "state")],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr

    with sqlite3.connect(ledger) as conn:
        rows = conn.execute(
            'SELECT job_id, gpu_model, gpu_count, cpu_model, "end" IS NOT NULL FROM jobs ORDER BY job_id'
        ).fetchall()
    assert rows == [
        ("77", H100, 2, CPU_MODEL, 1),  # gpu0, then gpu0 and gpu1 at once
        ("78", f"{A100}; {H100}", 1, CPU_MODEL, 1),  # moved from gpu2 to gpu3: one at a time
    ]

    assert main(["job", "slurm:77", "--ledger", str(ledger), "--json"]) == 0
    job = json.loads(capsys.readouterr().out)
    assert job["hardware"] == {"gpu_model": H100, "gpu_count": 2, "cpu_model": CPU_MODEL}
    assert job["energy_joules"]["gpu"] > 0
    assert main(["job", "slurm:77", "--ledger", str(ledger)]) == 0
    out = capsys.readouterr().out
    assert f"2 x {H100}" in out and CPU_MODEL in out
