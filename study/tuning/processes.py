"""The process tree below a PID, read from Linux ``/proc``: a Ray session started by this process
(``ray.init``) has its raylet and every worker below it, so a benchmark can sample exactly its own
trial workers and a test can signal exactly its own, never another session's on the same machine."""

from __future__ import annotations

import collections
import ipaddress
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


def listening_sockets(pids: list[int]) -> list[tuple[int, str, int]]:
    """(pid, address, port) of every TCP socket in LISTEN state that one of ``pids`` holds open, IPv4 and IPv6,
    read from ``/proc/net/tcp{,6}`` and each process's ``/proc/PID/fd``; a process gone meanwhile is skipped.
    An IPv6 address is written as ``ipaddress`` writes it (``::ffff:7f00:1``: 127.0.0.1 mapped into IPv6)."""
    listening: dict[str, tuple[str, int]] = {}  # socket inode -> (address, port)
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                lines = f.read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "0A":  # TCP_LISTEN
                address, port = fields[1].split(":")
                listening[fields[9]] = (_proc_address(address), int(port, 16))
    found = []
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:[") and target[8:-1] in listening:
                found.append((pid, *listening[target[8:-1]]))
    return found


def _proc_address(hex_address: str) -> str:
    """An address as /proc/net/tcp{,6} writes it (32-bit words in host byte order, little-endian here)."""
    words = bytes.fromhex(hex_address)
    raw = b"".join(words[i:i + 4][::-1] for i in range(0, len(words), 4))
    return str(ipaddress.ip_address(raw))
