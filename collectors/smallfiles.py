"""Reading small kernel files (cgroup and /proc) with as few system calls as possible."""

from __future__ import annotations

import os
import resource

# Nearly every file read is well under a page: a page-sized buffer first, a bigger one only when it fills.
_FIRST_BYTES = 4096
_CHUNK_BYTES = 65536


def read_small(path: str) -> bytes:
    """The whole of a small file, with as few system calls as possible."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks = [os.read(fd, _FIRST_BYTES)]
        if len(chunks[-1]) == _FIRST_BYTES:
            chunks.append(os.read(fd, _CHUNK_BYTES))
            while len(chunks[-1]) == _CHUNK_BYTES:
                chunks.append(os.read(fd, _CHUNK_BYTES))
        return b"".join(chunks)
    finally:
        os.close(fd)


def _pread_whole(fd: int) -> bytes | None:
    """The whole file under `fd`, read in one go from its start; None when it is 64 KiB or more."""
    data = os.pread(fd, _FIRST_BYTES, 0)
    if len(data) < _FIRST_BYTES:
        return data
    data = os.pread(fd, _CHUNK_BYTES, 0)  # read again from the start: one read is one consistent kernel file
    return data if len(data) < _CHUNK_BYTES else None


def read_int(path: str) -> int:
    return int(read_small(path).split()[0])


class OpenFiles:
    """Counter files kept open and re-read with pread: re-opening a cgroup file costs five times
    reading it. At most `limit` are held (past that, a file is opened for each read)."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._fds: dict[str, int] = {}

    def read(self, path: str) -> bytes:
        fd = self._fds.get(path)
        if fd is not None:
            try:
                data = _pread_whole(fd)
                if data is not None:
                    return data
            except OSError:
                pass  # ENODEV: the cgroup was removed, and may have been made again under its name
            self._fds.pop(path)
            os.close(fd)
        if len(self._fds) >= self._limit:
            return read_small(path)
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            data = _pread_whole(fd)
        except OSError:
            os.close(fd)
            raise
        if data is None:
            os.close(fd)
            return read_small(path)
        self._fds[path] = fd
        return data

    def keep_only(self, paths: set[str]) -> None:
        """Close every held file not in `paths`."""
        for path in [p for p in self._fds if p not in paths]:
            os.close(self._fds.pop(path))

    def close(self) -> None:
        self.keep_only(set())


def default_open_files() -> int:
    """A quarter of the soft limit on open files: the rest stays for the agent's other work."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return 1024 if soft == resource.RLIM_INFINITY else max(0, soft // 4)
