"""A generated procfs: just the files the estimate collector reads, with CPU time the test controls."""

from __future__ import annotations

from pathlib import Path

USER_HZ = 100


class FakeProcfs:
    """<root>/stat, cpuinfo and meminfo for a node of `threads` CPUs whose busy time the test sets."""

    def __init__(
        self,
        root: Path,
        model: str = "Intel(R) Xeon(R) Gold 6148 CPU @ 2.40GHz",
        sockets: int = 2,
        threads: int = 8,
        memory_kib: int = 64 * 1024 * 1024,
        virtual: bool = False,
    ) -> None:
        self.root = root
        self.threads = threads
        self.busy = 0
        self.idle = 0
        root.mkdir(parents=True, exist_ok=True)
        flags = "fpu vme de pse tsc msr" + (" hypervisor" if virtual else "")
        blocks = []
        for i in range(threads):
            blocks.append(
                f"processor\t: {i}\nvendor_id\t: GenuineIntel\nmodel name\t: {model}\n"
                f"physical id\t: {i * sockets // threads}\nflags\t\t: {flags}\n"
            )
        (root / "cpuinfo").write_text("\n".join(blocks) + "\n")
        (root / "meminfo").write_text(f"MemTotal:       {memory_kib} kB\nMemFree:        1024 kB\n")
        self._write()

    def run(self, seconds: float, utilisation: float) -> None:
        """Let `seconds` of wall time pass with every CPU busy for `utilisation` of it."""
        ticks = round(seconds * USER_HZ * self.threads)
        busy = round(ticks * utilisation)
        self.busy += busy
        self.idle += ticks - busy
        self._write()

    def _write(self) -> None:
        # user nice system idle iowait irq softirq steal guest guest_nice, split like a real kernel would
        user, system = self.busy - self.busy // 4, self.busy // 4
        idle, iowait = self.idle - self.idle // 10, self.idle // 10
        line = f"cpu  {user} 0 {system} {idle} {iowait} 0 0 0 0 0\n"
        (self.root / "stat").write_text(line + "intr 0\nctxt 0\n")
