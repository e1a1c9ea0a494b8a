"""Per-process CPU and memory from /proc (Linux), shared by the benchmarks: load-independent
figures on this shared machine, where wall time is not."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

__all__ = ["cpu_s", "reset_peak", "status_mb"]


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a live process (fields 14 and 15 of /proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def status_mb(field: str, pid: int | str = "self") -> float:
    """A /proc/<pid>/status memory figure (VmRSS, VmHWM: resident now, its peak) in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return float(line.split()[1]) / 1024
    return float("nan")


def reset_peak() -> None:
    """Start this process's VmHWM again from its current RSS (`clear_refs` 5), so a peak read
    afterwards belongs to the work in between, not to what the process did before it."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")
