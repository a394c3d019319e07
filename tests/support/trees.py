"""Helpers for the generated sysfs and procfs trees the fakes write."""

from __future__ import annotations

import os
from pathlib import Path


def open_up(root: Path) -> None:
    """Directories 0755 and files 0644 whatever the umask, so that another user can read the tree.

    Symlinks are left alone: chmod would follow them, and their targets are in the tree anyway.
    """
    for parent, dirs, files in os.walk(root):
        for names, mode in ((dirs, 0o755), (files, 0o644)):
            for name in names:
                path = os.path.join(parent, name)
                if not os.path.islink(path):
                    os.chmod(path, mode)
