"""scripts/slurm-epilog: Slurm's output-file patterns, the summary's wording, and jobs submitted with
`sbatch --output=<pattern>` to the real Slurm of the tests, whose Epilog runs the script.

The pattern cases marked "recorded" are the file names slurmstepd of Slurm 22.05.8 (the test
cluster) created for those `--output` values.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from importlib.machinery import SourceFileLoader
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent import units
from tests.support.job_api import serve_job
from tests.support.processes import AgentProcess, http_get, wait_for
from tests.support.slurm_cluster import EPILOG, SlurmCluster, missing_binaries

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="the epilog drops to the job's uid: needs root")
real_slurm = pytest.mark.skipif(
    bool(missing_binaries()) or os.geteuid() != 0,
    reason="needs root and Slurm: apt-get install slurm-wlm munge",
)
NOBODY = 65534
SYSTEM_PYTHON = Path("/usr/bin/python3")


def _load_epilog() -> ModuleType:
    loader = SourceFileLoader("slurm_epilog", str(EPILOG))
    spec = importlib.util.spec_from_loader("slurm_epilog", loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


epilog = _load_epilog()


def _values(job_id: str = "3", **changes: str | None) -> dict[str, str | None]:
    values: dict[str, str | None] = {
        "A": job_id,
        "a": "4294967294",
        "J": job_id,
        "j": job_id,
        "N": "vm",
        "n": "0",
        "s": "batch",
        "t": "0",
        "u": "root",
        "x": "nm",
    }
    return {**values, **changes}


# ---- the pattern expander ----


@pytest.mark.parametrize(
    ("pattern", "values", "expected"),
    [
        # recorded
        ("x-%j.out", _values("1"), "x-1.out"),
        ("%x-%u-%j.out", _values("2", x="myname"), "myname-root-2.out"),
        (
            "p-%4j-%J-%s-%N-%n-%t-%A-%a-%q-%3q-%%j.out",
            _values("3"),
            "p-0003-3-batch-vm-0-0-3-4294967294-%q-3q-%j.out",
        ),
        ("arr-%A_%a-%3a.out", _values("5", A="4", a="1"), "arr-4_1-001.out"),
        ("a2-%5A-%a.out", _values("9", A="8", a="3"), "a2-00008-3.out"),
        ("w-%12j-%10j-%x%5x-%5N-%05j-%0j.out", _values("2"), "w-0000000002-0000000002-nmnm-vm-00002-2.out"),
        ("e1-%j-%", _values("3"), "e1-3-%"),
        ("e2-%j-%5", _values("4"), "e2-4-5"),
        ("t-%%%j-%%%%j-%5%-%-j-%Z.out", _values("5"), "t-%5-%%j-5%-%-j-%Z.out"),
        ("esc\\\\-%j.out", _values("5"), "esc\\-%j.out"),  # `\\` is `\`, and nothing is expanded
        ("s1\\-%j.out", _values("1"), "s1-%j.out"),  # a lone `\` goes
        # not recorded
        ("", _values(), ""),
        ("plain.out", _values(), "plain.out"),
    ],
)
def test_patterns_expand_as_slurmstepd_does(
    pattern: str, values: dict[str, str | None], expected: str
) -> None:
    assert epilog.expand_pattern(pattern, values) == expected


def test_an_unknown_value_is_no_guess() -> None:
    assert epilog.expand_pattern("%x-%j.out", _values(x=None)) is None
    assert epilog.expand_pattern("%%x-%j.out", _values(x=None)) == "%x-3.out"  # %x is not a field here


@given(st.text(alphabet="ab-_./%0123456789AaJjNnstuxqZ ", max_size=16))
def test_doubled_percent_signs_round_trip(text: str) -> None:
    assert epilog.expand_pattern(text.replace("%", "%%"), _values()) == text


def test_unknown_letters_are_kept_as_slurm_keeps_them() -> None:
    known = set("AaJjNnstux")
    for letter in (chr(c) for c in range(33, 127)):
        if letter in known or letter in "%\\" or letter.isdigit():
            continue
        assert epilog.expand_pattern(f"a%{letter}b-%j", _values("7")) == f"a%{letter}b-7"
        assert epilog.expand_pattern(f"a%3{letter}b", _values("7")) == f"a3{letter}b"


@given(st.integers(min_value=1, max_value=10**9), st.integers(min_value=0, max_value=14))
def test_numbers_are_padded_to_at_most_ten_digits_and_names_never(job: int, width: int) -> None:
    job_id = str(job)
    values = _values(job_id, A="42", a="5")
    assert epilog.expand_pattern(f"%{width}j", values) == job_id.zfill(min(width, 10))
    assert epilog.expand_pattern(f"%{width}J", values) == job_id.zfill(min(width, 10))
    assert epilog.expand_pattern(f"%{width}A_%{width}a", values) == (
        f"{'42'.zfill(min(width, 10))}_{'5'.zfill(min(width, 10))}"
    )
    for letter, value in (("x", "nm"), ("u", "root"), ("N", "vm"), ("s", "batch")):
        assert epilog.expand_pattern(f"%{width}{letter}", values) == value


def test_scontrol_record_fields() -> None:
    record = (
        "JobId=9 ArrayJobId=8 ArrayTaskId=1 JobName=a b UserId=nobody(65534) GroupId=nogroup(65534) "
        "JobState=COMPLETED WorkDir=/w d StdErr=/w d/e StdIn=/dev/null StdOut=/w d/arr-8_1-%3a.out Power= \n"
    )
    fields = epilog.parse_record(record)
    assert fields == {
        "ArrayJobId": "8",
        "ArrayTaskId": "1",
        "JobName": "a b",
        "WorkDir": "/w d",
        "StdOut": "/w d/arr-8_1-%3a.out",
    }
    spoof = record.replace("JobName=a b", "JobName=a UserId=x(5) GroupId=x(5) StdOut=/etc/x", 1)
    fields = epilog.parse_record(spoof)
    assert "JobName" not in fields  # two places the name could end: it is not guessed
    assert fields["StdOut"] == "/w d/arr-8_1-%3a.out"


# ---- the summary ----

JOB = {
    "duration_seconds": 3723.0,
    "energy_joules": {"cpu": 36000.0, "dram": 3600.0, "gpu": 0.0, "total": 39600.0},
    "gpu_hours": 0.0,
    "sources": {"estimate": 39600.0},
    "estimated_share": 1.0,
}


def test_a_small_estimated_job_reads_in_plain_units_and_never_as_measured() -> None:
    text = epilog.format_summary("12", JOB, units)
    assert "energy:    11.0 Wh (cpu 10.0 Wh, dram 1.00 Wh, gpu 0 Wh)" in text, text
    assert "measured:  none of it" in text
    assert "estimated: 11.0 Wh (100.0 %), a model estimate (estimate), not measured" in text
    assert "CO2e:      not available: the agent has no carbon settings" in text
    assert "kWh" not in text and "0.0000" not in text


def test_measured_and_estimated_parts_and_co2e() -> None:
    job = {
        **JOB,
        "energy_joules": {"cpu": 7.2e6, "dram": 0.0, "gpu": 1.8e8, "total": 1.872e8},
        "sources": {"nvml": 1.8e8, "estimate": 7.2e6},
        "estimated_share": 7.2e6 / 1.872e8,
        "gpu_hours": 8.0,
        "co2e_grams": {"location": 2730.0, "market": 0.0},
        "carbon": {"location": "FRA"},
    }
    text = epilog.format_summary("12", job, units)
    assert "energy:    52.0 kWh (cpu 2.00 kWh, dram 0 Wh, gpu 50.0 kWh)" in text, text
    assert "measured:  50.0 kWh (96.2 %), read from the meters nvml" in text
    assert "estimated: 2.00 kWh (3.8 %), a model estimate (estimate), not measured" in text
    assert "CO2e:      2.73 kg location-based, 0 g market-based (grid: FRA)" in text
    world = {**job, "carbon": {"location": "world", "provenance": [{"location": "world", "fallback": True}]}}
    assert "(grid: world, a fallback average, not this site's own grid)" in epilog.format_summary(
        "1", world, units
    )
    assert "GPU hours: 8.00" in text


def test_the_agents_own_words_for_each_source_when_it_gives_them() -> None:
    job = {**JOB, "provenance": {"methods": {"estimate": "estimated from CPU time and the CPU's TDP"}}}
    text = epilog.format_summary("12", job, units)
    assert "estimated: 11.0 Wh (100.0 %), estimated from CPU time and the CPU's TDP" in text


def test_an_older_agents_list_of_sources() -> None:
    job = {**JOB, "sources": ["rapl", "estimate"], "estimated_share": 0.25}
    text = epilog.format_summary("12", job, units)
    assert "measured:  8.25 Wh (75.0 %), read from the meters rapl" in text, text
    assert "estimated: 2.75 Wh (25.0 %), a model estimate (estimate), not measured" in text


# ---- how the output file is found: scontrol first, the pattern expanded here when it cannot ----


@pytest.fixture
def job_api() -> Iterator[str]:
    """The agent's API stand-in answering with JOB and CO2e."""
    with serve_job({**JOB, "co2e_grams": {"location": 1.5, "market": 0.9}}) as (url, _):
        yield url


def _fake_scontrol(bin_dir: Path, record: str | None) -> None:
    """A `scontrol` that prints `record`, or fails like one that cannot reach slurmctld (None)."""
    bin_dir.mkdir(exist_ok=True)
    script = bin_dir / "scontrol"
    if record is None:
        script.write_text("#!/bin/sh\necho 'Unable to contact slurm controller' >&2\nexit 1\n")
    else:
        (bin_dir / "record").write_text(record)
        script.write_text(f"#!/bin/sh\ncat '{bin_dir / 'record'}'\n")
    script.chmod(0o755)


def _record(job_dir: Path, std_out: str, extra: str = "") -> str:
    uid = os.getuid()
    return (
        f"JobId=77 {extra}JobName=train UserId=me({uid}) GroupId=me({os.getgid()}) MCS_label=N/A "
        f"JobState=COMPLETED WorkDir={job_dir} StdErr={std_out} StdIn=/dev/null StdOut={std_out} Power= \n"
    )


def _run(
    tmp_path: Path, api: str, std_out: str, python: Path = Path(sys.executable), path_extra: str = ""
) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": f"{tmp_path / 'bin'}:/usr/bin:/bin{path_extra}",
        "SLURM_JOB_ID": "77",
        "SLURM_JOB_UID": str(os.getuid()),
        "SLURM_JOB_GID": str(os.getgid()),
        "SLURM_JOB_USER": "me",
        "SLURM_JOB_STDOUT": std_out,
        "SLURM_JOB_WORK_DIR": str(tmp_path / "work"),
        "GREENAI_API_URL": api,
    }
    return subprocess.run([str(python), str(EPILOG)], env=env, capture_output=True, text=True, timeout=60)


def _outputs(tmp_path: Path, *names: str) -> list[Path]:
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    files = [work / name for name in names]
    for f in files:
        f.write_text("job output\n")
    return files


@needs_root
def test_scontrols_expanded_std_out_is_preferred_to_the_pattern(tmp_path: Path, job_api: str) -> None:
    listed, expanded_here = _outputs(tmp_path, "listed-by-scontrol.out", "x-77.out")
    _fake_scontrol(tmp_path / "bin", _record(listed.parent, str(listed)))
    result = _run(tmp_path, job_api, "x-%j.out")
    assert result.returncode == 0, result.stderr
    assert "=== greenai: energy of Slurm job 77 ===" in listed.read_text(), result.stderr
    assert "CO2e:      1.50 g location-based, 0.900 g market-based" in listed.read_text()
    assert expanded_here.read_text() == "job output\n"


@needs_root
def test_the_pattern_is_expanded_here_when_scontrol_fails(tmp_path: Path, job_api: str) -> None:
    (out,) = _outputs(tmp_path, "me-77-0077.out")
    _fake_scontrol(tmp_path / "bin", None)
    result = _run(tmp_path, job_api, "%u-%j-%4J.out")  # relative: to SLURM_JOB_WORK_DIR
    assert result.returncode == 0, result.stderr
    assert "energy of Slurm job 77" in out.read_text(), result.stderr
    # %x needs the job name, which only scontrol gives the Epilog: no guess, no summary.
    result = _run(tmp_path, job_api, "%x-%j.out")
    assert result.returncode == 0 and "cannot expand the output pattern '%x-%j.out'" in result.stderr


@needs_root
def test_a_std_out_scontrol_left_unexpanded_is_expanded_here(tmp_path: Path, job_api: str) -> None:
    """Slurm 22.05's scontrol prints `arr-8_1-%3a.out` where slurmstepd wrote `arr-8_1-001.out`."""
    (out,) = _outputs(tmp_path, "train-arr-8_1-001.out")
    work = tmp_path / "work"
    record = _record(work, f"{work}/train-arr-8_1-%3a.out", extra="ArrayJobId=8 ArrayTaskId=1 ")
    _fake_scontrol(tmp_path / "bin", record)
    result = _run(tmp_path, job_api, f"{work}/%x-arr-%A_%a-%3a.out")
    assert result.returncode == 0, result.stderr
    assert "energy of Slurm job 77" in out.read_text(), result.stderr


@needs_root
@pytest.mark.skipif(not SYSTEM_PYTHON.exists(), reason="no /usr/bin/python3")
def test_a_python_without_greenai_runs_the_script_under_greenais(tmp_path: Path, job_api: str) -> None:
    (out,) = _outputs(tmp_path, "plain.out")
    _fake_scontrol(tmp_path / "bin", None)
    no_greenai = _run(tmp_path, job_api, str(out), python=SYSTEM_PYTHON)
    assert no_greenai.returncode == 0
    assert "cannot import agent.units" in no_greenai.stderr and "no energy summary" in no_greenai.stderr
    assert out.read_text() == "job output\n"

    venv_bin = f":{Path(sys.executable).parent}"  # where pip put `greenai`, its #! naming this Python
    result = _run(tmp_path, job_api, str(out), python=SYSTEM_PYTHON, path_extra=venv_bin)
    assert result.returncode == 0, result.stderr
    assert "energy summary appended" in result.stderr, result.stderr
    assert "estimated: 11.0 Wh (100.0 %)" in out.read_text()


# ---- real jobs: sbatch --output=<pattern>, and slurmd running the epilog ----


def _agent_config(directory: Path, cluster: SlurmCluster) -> Path:
    cfg = directory / "agent.yaml"
    cfg.write_text(
        f"ledger: {{path: {directory / 'ledger.db'}, flush_seconds: 0.5}}\n"
        f"slurm: {{scontrol: {cluster.scontrol_path}}}\n"
        "carbon: {location: FRA}\n"
    )
    return cfg


def _job_dir(cluster: SlurmCluster) -> Path:
    path = cluster.workdir / "jobs" / f"epilog-{os.urandom(4).hex()}"
    path.mkdir()
    os.chown(path, NOBODY, NOBODY)
    return path


def _seen(agent: AgentProcess, job_id: str) -> dict[str, Any] | None:
    try:
        record = json.loads(http_get(f"{agent.url}/api/v1/jobs/slurm:{job_id}"))
    except OSError:  # 404 until the agent has sampled the job
        return None
    return record if record["energy_joules"]["total"] > 0 else None


def _summary_of_a_real_job(
    cluster: SlurmCluster, tmp_path: Path, output: str, expected_name: str, extra: list[str]
) -> None:
    job_dir = _job_dir(cluster)
    release = job_dir / "release"
    script = f"#!/bin/sh\necho job output\nwhile [ ! -e '{release}' ]; do sleep 0.1; done\n"
    args = ["--config", str(_agent_config(tmp_path, cluster)), "--interval", "0.2"]
    with AgentProcess([*args, "--sysfs", "/nonexistent-sys"], env=cluster.env) as agent:
        agent.wait_ready()
        cluster.run_epilog_in(job_dir, agent.url)
        job = cluster.submit(
            script, uid=NOBODY, output=job_dir / "unused", extra=[f"--output={output}", *extra]
        )
        try:
            seen = wait_for(lambda: _seen(agent, job.job_id), 30, f"the agent to measure job {job.job_id}")
            assert seen["co2e_grams"]["location"] > 0, seen
            release.touch()
            cluster.wait_finished(job.job_id, timeout=30)
            out = job_dir / expected_name.replace("ID", job.job_id)
            text = wait_for(
                lambda: "(the last sampling" in (t := out.read_text() if out.exists() else "") and t,
                30,
                f"the summary in {out}; epilog log:\n{cluster.host.epilog_log.read_text(errors='replace')}",
            )
        finally:
            cluster.cancel(job.job_id)
    assert text.startswith("job output\n"), text
    assert out.stat().st_uid == NOBODY
    assert f"=== greenai: energy of Slurm job {job.job_id} ===" in text, text
    assert re.search(
        r"\nenergy:    [\d.,]+ (m?Wh|kWh) \(cpu [\d.,]+ (Wh|kWh), dram .*, gpu 0 Wh\)\n", text
    ), text
    assert "measured:  none of it" in text, text
    estimated = re.search(r"\nestimated: [\d.,]+ (Wh|kWh) \(100\.0 %\), (.*)\n", text)
    assert estimated, text
    assert "measured" not in estimated.group(2).replace("not measured", ""), text
    assert re.search(
        r"\nCO2e:      [\d.,]+ (g|kg) location-based, [\d.,]+ (g|kg) market-based \(grid: FRA\)\n", text
    ), text
    assert " 0.0000 kWh" not in text and "e-0" not in text
    assert sorted(p.name for p in job_dir.iterdir()) == sorted([out.name, "release"])


@real_slurm
def test_sbatch_output_with_the_job_id(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    _summary_of_a_real_job(slurm_cluster, tmp_path, "x-%j.out", "x-ID.out", [])


@real_slurm
def test_sbatch_output_with_name_user_and_job_id(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:
    _summary_of_a_real_job(
        slurm_cluster, tmp_path, "%x-%u-%j.out", "greenai-named-nobody-ID.out", ["--job-name=greenai-named"]
    )


def test_a_superchip_jobs_module_and_wall_energy_are_named() -> None:
    job = {
        **JOB,
        "energy_joules": {
            "cpu": 0.0,
            "dram": 0.0,
            "gpu": 0.0,
            "module": 3.6e7,
            "other": 3.6e6,
            "total": 3.96e7,
        },
        "sources": {"nvml": 3.6e7, "redfish": 3.6e6},
        "estimated_share": 0.0,
    }
    text = epilog.format_summary("12", job, units)
    assert "energy:    11.0 kWh (cpu 0 Wh, dram 0 Wh, gpu 0 Wh, module 10.0 kWh, other 1.00 kWh)" in text, (
        text
    )
