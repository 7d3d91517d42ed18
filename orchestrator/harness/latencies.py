"""The SUT's own per-sample latency: the time from LoadGen's issue call to the sample's QuerySamplesComplete.

LoadGen's summary holds only percentiles and its trace is off (it costs time on LoadGen's thread), so the
SUT keeps these itself, cheaply: two preallocated float64 arrays indexed by the order in which samples were
issued (a slot per sample), written with one numpy slice assignment per issue call and per batch. The
harness saves them after each performance pass as `performance/run_1/sut_latencies.npy`: float32
milliseconds in issue order, NaN for a sample that never completed, and beside them `sut_samples.npy`: the
QSL index of each (int32, the same order; LoadGen draws a performance run's samples at random from the
whole set, so this says which ones ran, e.g. to count their real tokens). They measure the SUT's side only
(from the issue callback's start, not LoadGen's scheduled time), which is what the report's latency chart
says it shows.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

LATENCIES_FILE = "sut_latencies.npy"
SAMPLES_FILE = "sut_samples.npy"


class LatencyLog:
    """Issue and completion times per sample slot; not thread-safe by itself (the SUT holds its lock)."""

    def __init__(self, capacity: int) -> None:
        self._issued = np.full(max(1, capacity), np.nan)
        self._completed = np.full(max(1, capacity), np.nan)
        self._samples = np.full(max(1, capacity), -1, dtype=np.int32)
        self.count = 0

    def reserve(self, n: int, now: float, samples: np.ndarray | list[int] | None = None) -> int:
        """Slots for n samples issued at `now` (time.monotonic), whose QSL indices are `samples` (-1 when
        not given); returns the first slot. Grows when needed."""
        first = self.count
        end = first + n
        if end > self._issued.size:
            size = max(end, 2 * self._issued.size)
            grow = size - self._issued.size
            self._issued = np.concatenate([self._issued, np.full(grow, np.nan)])
            self._completed = np.concatenate([self._completed, np.full(grow, np.nan)])
            self._samples = np.concatenate([self._samples, np.full(grow, -1, dtype=np.int32)])
        self._issued[first:end] = now
        if samples is not None:
            self._samples[first:end] = samples
        self.count = end
        return first

    def complete(self, slots: np.ndarray, now: float | None = None) -> None:
        self._completed[slots] = time.monotonic() if now is None else now

    def latencies_ms(self) -> np.ndarray:
        n = self.count
        return ((self._completed[:n] - self._issued[:n]) * 1000.0).astype(np.float32)

    def samples(self) -> np.ndarray:
        return self._samples[: self.count].copy()

    def save(self, directory: Path) -> Path:
        """Write sut_latencies.npy and sut_samples.npy; returns the first."""
        path = directory / LATENCIES_FILE
        np.save(path, self.latencies_ms(), allow_pickle=False)
        np.save(directory / SAMPLES_FILE, self.samples(), allow_pickle=False)
        return path
