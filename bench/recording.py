"""The one way every system in the side-by-side bench reports a run: a line per run, written
inside the job itself when it starts (standard library only: every peer's venv imports it).

A line is ``SYSTEM REPLICA SLOT START JOB`` (the slot and the start in Unix seconds; JOB
tells apart the jobs of one process in the many-workers bench). The file is
``$BENCH_RECORD``; each line is one ``write`` on an ``O_APPEND`` descriptor, so lines from
several processes never interleave.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

_fd: int | None = None


def record(
    system: str, replica: str, slot: float, start: float | None = None, job: str = "-"
) -> None:
    """Write one run; ``start`` defaults to now (call this first thing in the job)."""
    global _fd
    now = time.time() if start is None else start
    if _fd is None:
        _fd = os.open(os.environ["BENCH_RECORD"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.write(_fd, f"{system} {replica} {slot:.6f} {now:.6f} {job}\n".encode())


def grid_slot(now: float, *, anchor: float, period: float) -> float:
    """The latest slot ``anchor + k * period`` at or before ``now`` (for peers whose job is
    not told its slot; right while a run is less than one period late)."""
    return anchor + math.floor((now - anchor) / period + 1e-9) * period


@dataclass(frozen=True)
class Run:
    system: str
    replica: str
    slot: float
    start: float
    job: str = "-"

    @property
    def lateness(self) -> float:
        return self.start - self.slot


def read(path: Path) -> list[Run]:
    runs = []
    if not path.exists():
        return runs
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) == 5:
            runs.append(Run(parts[0], parts[1], float(parts[2]), float(parts[3]), parts[4]))
    return runs
