"""The process tree below a PID, read from Linux ``/proc``: a Ray session started by this process
(``ray.init``) has its raylet and every worker below it, so a benchmark can sample exactly its own
trial workers and a test can signal exactly its own, never another session's on the same machine."""

from __future__ import annotations

import collections
import os


def descendants(root: int) -> list[int]:
    """PIDs of every process below ``root`` (Ray's raylet and its workers are children of the driver)."""
    children: dict[int, list[int]] = collections.defaultdict(list)
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])  # the name may hold spaces and ')'
        except (OSError, IndexError, ValueError):
            continue
        children[ppid].append(int(entry))
    found, stack = [], [root]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found
