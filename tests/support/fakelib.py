"""Build a fake vendor library written in C, and replace the state file it reads (fake_state.h)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterable
from pathlib import Path

HERE = Path(__file__).parent


def compile_fake(
    sources: Iterable[Path], outdir: Path, library_name: str, defines: Iterable[str] = ()
) -> Path:
    """Compile `sources` into `outdir/library_name` (with -D`define` each) and return `outdir`.

    `outdir` is the LD_LIBRARY_PATH entry of a process that should load the fake. Warnings are errors.
    """
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        raise RuntimeError(f"no C compiler (gcc or cc) on PATH: needed to build the fake {library_name}")
    outdir.mkdir(parents=True, exist_ok=True)
    cmd = [
        cc,
        "-std=c11",
        "-Wall",
        "-Wextra",
        "-Werror",
        "-O2",
        "-fvisibility=hidden",
        "-shared",
        "-fPIC",
        "-pthread",
        f"-I{HERE}",
        *(f"-D{define}" for define in defines),
        f"-Wl,-soname,{library_name}",
        "-o",
        str(outdir / library_name),
        *map(str, sources),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"building the fake {library_name} failed:\n{done.stderr}")
    return outdir


def replace_state(path: Path, lines: Iterable[str]) -> None:
    """Atomically replace the state file with `lines`, so a fake never reads half of it.

    The new file's mtime is made later than the one it replaces: a fake parses the file again only
    when its inode, size or times changed, and a recycled inode of the same size written within one
    tick of the filesystem clock would otherwise look unchanged.
    """
    try:
        previous_ns = path.stat().st_mtime_ns
    except FileNotFoundError:
        previous_ns = -1
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as f:
        f.write("\n".join(lines) + "\n")
    if os.stat(tmp).st_mtime_ns <= previous_ns:
        os.utime(tmp, ns=(previous_ns + 1, previous_ns + 1))
    os.replace(tmp, path)
