"""CPU time of a process from /proc, shared by the benchmarks that put CPU beside their latencies."""

from __future__ import annotations

import os
from pathlib import Path


def cpu_seconds(pid: int | None) -> float | None:
    """CPU time (user + system, every thread, seconds) a process has used so far; None when /proc cannot tell."""
    if pid is None:
        return None
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None
