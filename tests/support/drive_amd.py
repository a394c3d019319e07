"""Drive an AmdSmiCollector and a Sampler on a fake clock from JSON commands on stdin, one per line.

Run as `python -m tests.support.drive_amd [--reprobe-seconds S] [--index-offset N]` from the repo root,
in an environment whose LD_LIBRARY_PATH holds the fake libamd_smi.so and whose FAKE_AMDSMI_STATE names
its state file. The commands and answers are those of tests.support.drive, but that each energy row of
a snapshot carries its source rather than its component:
  {"advance": seconds}  step the fake clock, tick the sampler, print the snapshot;
  {"probe": true}       print the probe result of startup;
  {"usage": true}       print gpu_usage() and its usage_errors (the clock does not move).
"""

from __future__ import annotations

import argparse
import sys

from collectors.amdsmi.collector import AmdSmiCollector
from tests.support.drive import FakeClock, serve


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--reprobe-seconds", type=float, default=30.0)
    parser.add_argument("--index-offset", type=int, default=0)
    args = parser.parse_args(argv)

    clock = FakeClock()
    collector = AmdSmiCollector(clock, reprobe_seconds=args.reprobe_seconds, index_offset=args.index_offset)
    return serve(collector, clock, label="source")


if __name__ == "__main__":
    sys.exit(main())
