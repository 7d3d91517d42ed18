"""The SUT's own per-sample latency: the time from LoadGen's issue call to the sample's QuerySamplesComplete.

LoadGen's summary holds only percentiles and its trace is off (it costs time on LoadGen's thread), so the
SUT keeps these itself, cheaply: two preallocated float64 arrays indexed by the order in which samples were
issued (a slot per sample), written with one numpy slice assignment per issue call and per batch. The
harness saves them after each performance pass as `performance/run_1/sut_latencies.npy`: float32
milliseconds in issue order, NaN for a sample that never completed. They measure the SUT's side only
(from the issue callback's start, not LoadGen's scheduled time), which is what the report's latency chart
says it shows.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

LATENCIES_FILE = "sut_latencies.npy"


class LatencyLog:
    """Issue and completion times per sample slot; not thread-safe by itself (the SUT holds its lock)."""

    def __init__(self, capacity: int) -> None:
        self._issued = np.full(max(1, capacity), np.nan)
        self._completed = np.full(max(1, capacity), np.nan)
        self.count = 0

    def reserve(self, n: int, now: float) -> int:
        """Slots for n samples issued at `now` (time.monotonic); returns the first. Grows when needed."""
        first = self.count
        end = first + n
        if end > self._issued.size:
            size = max(end, 2 * self._issued.size)
            self._issued = np.concatenate([self._issued, np.full(size - self._issued.size, np.nan)])
            self._completed = np.concatenate([self._completed, np.full(size - self._completed.size, np.nan)])
        self._issued[first:end] = now
        self.count = end
        return first

    def complete(self, slots: np.ndarray, now: float | None = None) -> None:
        self._completed[slots] = time.monotonic() if now is None else now

    def latencies_ms(self) -> np.ndarray:
        n = self.count
        return ((self._completed[:n] - self._issued[:n]) * 1000.0).astype(np.float32)

    def save(self, directory: Path) -> Path:
        path = directory / LATENCIES_FILE
        np.save(path, self.latencies_ms(), allow_pickle=False)
        return path
