"""Small-file reads: whole files at every size around the buffer sizes, held files that grow and shrink."""

from __future__ import annotations

from pathlib import Path

import pytest

from collectors.smallfiles import OpenFiles, read_small

SIZES = [0, 1, 4095, 4096, 4097, 8192, 65535, 65536, 65537, 131072, 200_001]


def _content(size: int, seed: int = 0) -> bytes:
    """`size` bytes that differ at every offset, so a chunk read twice or skipped shows."""
    return bytes((i * 7 + seed) % 251 for i in range(size))


@pytest.mark.parametrize("size", SIZES)
def test_read_small_returns_the_whole_file(tmp_path: Path, size: int) -> None:
    path = tmp_path / "f"
    path.write_bytes(_content(size))
    assert read_small(str(path)) == _content(size)


@pytest.mark.parametrize("limit", [0, 8])
@pytest.mark.parametrize("size", SIZES)
def test_open_files_return_the_whole_file_held_or_not(tmp_path: Path, size: int, limit: int) -> None:
    path = tmp_path / "f"
    path.write_bytes(_content(size))
    files = OpenFiles(limit)
    try:
        assert files.read(str(path)) == _content(size)
        assert files.read(str(path)) == _content(size)  # again, through the held descriptor if any
    finally:
        files.close()


def test_a_held_file_that_grows_past_every_buffer_and_shrinks_is_read_whole(tmp_path: Path) -> None:
    path = tmp_path / "f"
    files = OpenFiles(8)
    try:
        for seed, size in enumerate([100, 5000, 70_000, 300, 4096, 66_000, 10]):
            with path.open("r+b" if path.exists() else "wb") as f:  # in place: the same file stays held
                f.write(_content(size, seed))
                f.truncate(size)
            assert files.read(str(path)) == _content(size, seed), size
    finally:
        files.close()
