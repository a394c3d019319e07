"""Mutation testing of the accounting core: the score per module and the mutants the tests let live.

A mutant is the module with one small change (`>=` to `>`, `+` to `-`, a constant or a string
altered); the tests kill it when one of them fails. A mutant that survives is a change of behaviour
no test notices, or an equivalent change (one that cannot alter behaviour). The modules, and the
test folders run against each:

    collectors/base.py          counter_delta        tests/collectors tests/live
    agent/live/attribution.py                        tests/live
    agent/live/carbon.py        live CO2e            tests/live
    agent/carbon/model.py       Emissions, site_for  tests/carbon tests/live
    agent/ledger/writer.py      the flush path       tests/ledger
    agent/ledger/pending.py                          tests/ledger

It runs mutmut (install it into the project's virtual environment: `.venv/bin/pip install mutmut`;
it is not a test dependency) in a copy of the tree made in a temporary folder, so the checkout is
never touched. mutmut changes function and method bodies (not module constants),
runs the tests once to learn which tests reach which function, then runs only those tests against
each mutant of that function. On two cores the counter, attribution and carbon modules take a few
minutes each; the ledger writer (over 400 mutants, tests that start the CLI in child processes)
takes an hour or more: `--module` picks fewer. Test folders rather than files, so that new tests
there count. Run as root, like the suite:

    .venv/bin/python benchmarks/mutation.py [--module attribution ...] [--ref HEAD] [--json FILE]

`--ref` measures a commit (`git archive`) instead of the working tree (tracked files and new ones
that git does not ignore). The score is killed / all mutants; "no tests" are mutants of functions no
selected test reaches, counted as not killed. Exit 0 whatever the scores (this is a now-and-then
look, not a gate); 1 when a module could not be measured, most often because a test fails unmutated.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

MODULES: dict[str, tuple[str, ...]] = {
    "collectors/base.py": ("tests/collectors", "tests/live"),
    "agent/live/attribution.py": ("tests/live",),
    "agent/live/carbon.py": ("tests/live",),
    "agent/carbon/model.py": ("tests/carbon", "tests/live"),
    "agent/ledger/writer.py": ("tests/ledger",),
    "agent/ledger/pending.py": ("tests/ledger",),
    "agent/ledger/job_rows.py": ("tests/ledger",),
}
"""Module -> the test folders run against its mutants."""

IGNORED = ("tests/collectors/test_job_discovery.py",)
"""Tests of real CPU time in real cgroups, which a loaded machine fails; they reach none of the modules."""

KILLED = ("killed", "timeout", "segfault", "caught by type check")
NOT_KILLED = ("survived", "no tests", "suspicious", "skipped", "not checked")


@dataclass
class Outcome:
    """One module's mutants by status, and each survivor's changed lines."""

    module: str
    statuses: dict[str, str] = field(default_factory=dict)
    diffs: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    error: str = ""

    def count(self, *statuses: str) -> int:
        return sum(1 for s in self.statuses.values() if s in statuses)

    @property
    def score(self) -> float:
        return 100.0 * self.count(*KILLED) / len(self.statuses) if self.statuses else 0.0


def copy_tree(dest: Path, ref: str | None) -> None:
    """The working tree (tracked and untracked, not ignored), or commit `ref`, into `dest`."""
    if ref is not None:
        archive = subprocess.run(
            ["git", "-C", str(REPO), "archive", ref], check=True, capture_output=True
        ).stdout
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(dest, filter="data")
        return
    listed = subprocess.run(
        ["git", "-C", str(REPO), "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    for name in filter(None, listed.split("\0")):
        source = REPO / name
        if source.is_file():  # a tracked file deleted in the working tree is not copied
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)


def configure(tree: Path, modules: list[str]) -> None:
    """Append mutmut's settings for `modules` and their test folders to the copy's pyproject.toml."""
    folders = sorted({folder for m in modules for folder in MODULES[m]})
    # Tests read scripts, docs, examples and the like by path: the copy mutmut runs them in has them all.
    others = [p.name for p in sorted(tree.iterdir()) if p.name not in ("agent", "collectors")]
    ignored = [f"--ignore={path}" for path in IGNORED]
    with (tree / "pyproject.toml").open("a", encoding="utf-8") as f:
        f.write(
            "\n[tool.mutmut]\n"
            'source_paths = ["agent", "collectors"]\n'
            f"only_mutate = {json.dumps(modules)}\n"
            f"also_copy = {json.dumps(others)}\n"
            f"pytest_add_cli_args_test_selection = {json.dumps(folders)}\n"
            f"pytest_add_cli_args = {json.dumps(['-p', 'no:cacheprovider', '-q', *ignored])}\n"
            "use_git_change_detection = false\n"
        )


def mutmut(tree: Path, *args: str, timeout: float | None = None) -> subprocess.CompletedProcess[str]:
    bin_dir = str(Path(sys.executable).parent)
    env = {
        **os.environ,
        "PATH": os.pathsep.join([bin_dir, os.environ.get("PATH", ""), "/usr/sbin", "/sbin"]),
        # Child processes a test starts import the copy, not the checkout an editable install points to.
        "PYTHONPATH": str(tree / "mutants"),
    }
    with subprocess.Popen(
        [sys.executable, "-m", "mutmut", *args],
        cwd=tree,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # so that a timeout ends mutmut's workers too
    ) as proc:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def changed_lines(diff: str) -> str:
    """The -/+ lines of a unified diff, without its file headers."""
    lines = diff.splitlines()
    keep = [ln for ln in lines if ln[:1] in "-+" and not ln.startswith(("---", "+++"))]
    return "\n".join(keep)


def module_of(name: str, modules: list[str]) -> str:
    """The module a mutant belongs to: `agent.live.carbon.x_...` -> `agent/live/carbon.py`."""
    return next(m for m in modules if name.startswith(m.removesuffix(".py").replace("/", ".") + ".x"))


def measure(tree: Path, modules: list[str], children: int, timeout: float) -> list[Outcome]:
    """One mutmut run over `modules` with the union of their test folders: the tests run once to
    learn which test reaches which function, and each mutant then runs only the tests that reach it."""
    outcomes = {m: Outcome(m) for m in modules}
    configure(tree, modules)
    # Made now, before the interpreter starts: a PYTHONPATH entry missing at start-up is never searched.
    (tree / "mutants").mkdir()
    started = time.monotonic()
    try:
        run = mutmut(tree, "run", "--max-children", str(children), timeout=timeout)
    except subprocess.TimeoutExpired:
        for o in outcomes.values():
            o.error = f"over {timeout:g} s (--timeout)"
        return list(outcomes.values())
    seconds = time.monotonic() - started
    output = run.stdout + run.stderr
    # mutmut stops early, exit 1, when no selected test reaches any mutated function: all "no tests".
    untested = "could not find any test case for any mutant" in output
    if run.returncode != 0 and not untested:  # most often a test that fails unmutated
        for o in outcomes.values():
            o.error = f"mutmut run failed (exit {run.returncode}):\n" + output[-3000:]
        return list(outcomes.values())
    for line in mutmut(tree, "results", "--all", "true").stdout.splitlines():
        name, sep, status = line.strip().rpartition(": ")
        if sep:
            outcomes[module_of(name, modules)].statuses[name] = "no tests" if untested else status
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        for o in outcomes.values():
            o.seconds = seconds
            survivors = [n for n, s in o.statuses.items() if s in NOT_KILLED]
            shown = pool.map(lambda n: changed_lines(mutmut(tree, "show", n).stdout), survivors)
            o.diffs = dict(zip(survivors, shown, strict=True))
    return list(outcomes.values())


def short(name: str) -> str:
    """`agent.carbon.model.xǁEmissionsǁ__add____mutmut_4` -> `Emissions.__add__ #4`."""
    match = re.match(r".*?\.x(?:ǁ(\w+?)ǁ|_)(\w+?)__mutmut_(\d+)$", name)
    if match is None:
        return name
    cls, func, number = match.groups()
    return f"{cls + '.' if cls else ''}{func} #{number}"


def report(outcomes: list[Outcome]) -> None:
    print(f"{'module':30} {'mutants':>7} {'killed':>6} {'survived':>8} {'no tests':>8} {'score':>6}")
    for o in outcomes:
        if o.error:
            print(f"{o.module:30} not measured: {o.error.splitlines()[0]}")
            continue
        print(
            f"{o.module:30} {len(o.statuses):7} {o.count(*KILLED):6} {o.count('survived'):8} "
            f"{o.count('no tests'):8} {o.score:5.1f}%"
        )
    if outcomes:
        print(f"({outcomes[0].seconds:.0f} s)")
    for error in dict.fromkeys(o.error for o in outcomes if o.error):  # one run: usually one error for all
        print(f"\n== {error}")
    for o in outcomes:
        if not o.diffs:
            continue
        print(f"\n== {o.module}: {len(o.diffs)} not killed")
        for name, diff in o.diffs.items():
            print(f"-- {short(name)} ({o.statuses[name]})")
            print(diff)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--module", action="append", help="a module of the table, or a part of its path (repeatable)"
    )
    parser.add_argument("--ref", help="measure this commit instead of the working tree")
    parser.add_argument("--json", type=Path, help="also write the statuses and survivors to this file")
    parser.add_argument("--children", type=int, default=os.cpu_count() or 2, help="mutants tested at once")
    parser.add_argument("--timeout", type=float, default=1200.0, help="seconds at most per module")
    parser.add_argument("--keep", action="store_true", help="keep the temporary copies and say where")
    args = parser.parse_args()
    try:
        import mutmut  # noqa: F401
    except ImportError:
        print("mutation: mutmut is not installed: .venv/bin/pip install mutmut", file=sys.stderr)
        return 2
    chosen = [m for m in MODULES if not args.module or any(part in m for part in args.module)]
    if not chosen:
        print(f"mutation: no module matches {args.module}; modules: {', '.join(MODULES)}", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="greenai-mutation-"))
    try:
        base = work / "tree"
        base.mkdir()
        copy_tree(base, args.ref)
        print(f"mutation: {', '.join(chosen)} in {work} ...", file=sys.stderr, flush=True)
        outcomes = measure(base, chosen, args.children, args.timeout)
        report(outcomes)
        if args.json is not None:
            args.json.write_text(
                json.dumps(
                    {
                        o.module: {
                            "score": round(o.score, 1),
                            "statuses": o.statuses,
                            "survivors": o.diffs,
                            "error": o.error,
                        }
                        for o in outcomes
                    },
                    indent=1,
                    ensure_ascii=False,
                )
            )
    finally:
        if args.keep:
            print(f"mutation: copies kept in {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 1 if any(o.error for o in outcomes) else 0


if __name__ == "__main__":
    sys.exit(main())
