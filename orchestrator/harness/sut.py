"""The system under test: LoadGen queries -> engine batches -> LoadGen responses. Generic over Engine.

Two kinds:
- `reference`: what the MLPerf reference SUT does: batch 1, every sample padded to 384, answer [384, 2].
- `optimized`: sort the query's samples by real length, batch them, cut each batch to its longest real
  row (rounded up to one of the engine's sequence buckets), answer each sample with its own real length.
Padding positions carry input_mask 0, so cutting them does not change the logits of real tokens beyond
float noise (and the quantisation noise of an int8 model's dynamic activation ranges).

Dispatch: Offline, SingleStream and MultiStream run the query inside LoadGen's issue call (LoadGen
issues their next query only when this one completes); Server hands samples to one worker thread that
gathers up to batch_size of them (or what arrived within a short window) per engine call. A MultiStream
query (8 samples) is one batch whatever batch_size says, split only where the engine's max_batch requires.

A response is float32 [seq_len, 2] (start, end interleaved per token), the layout every accuracy
script reads. Its buffer is kept referenced until QuerySamplesComplete has returned (LoadGen copies
the bytes for the accuracy log during that call).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np

from orchestrator.errors import ConfigError, RunError
from orchestrator.harness.engines.base import Engine
from orchestrator.harness.qsl import SampleLibrary
from orchestrator.harness.settings import MAX_SEQ_LEN, MULTISTREAM_SAMPLES_PER_QUERY, Scenario

log = logging.getLogger(__name__)

SutKind = Literal["optimized", "reference"]
Item = tuple[int, int]  # (LoadGen response id, QSL index)

# How long the Server worker waits for more samples to fill a batch. Short against bert's 130 ms bound.
SERVER_BATCH_WINDOW_S = 0.002


def plan_batches(lengths: Sequence[int], batch_size: int, *, sort: bool) -> list[list[int]]:
    """Positions into `lengths`, grouped into batches of at most batch_size; longest first when sorted."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i]) if sort else list(range(len(lengths)))
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def pick_length(needed: int, buckets: Sequence[int] | None) -> int:
    """The sequence length to run `needed` real tokens at: the smallest bucket that holds them."""
    if not buckets:
        return needed
    for b in buckets:
        if b >= needed:
            return b
    raise RunError(f"No sequence bucket of the engine holds {needed} tokens (buckets {list(buckets)}).")


class BertSUT:
    def __init__(
        self,
        engine: Engine,
        qsl: SampleLibrary,
        *,
        scenario: Scenario,
        kind: SutKind = "optimized",
        batch_size: int = 16,
        on_complete: Callable[[int], None] | None = None,
        on_error: Callable[[BaseException], None] | None = None,
    ) -> None:
        self.engine = engine
        self.qsl = qsl
        self.scenario = scenario
        self.kind = kind
        engine_max = engine.max_batch()
        if kind == "reference":
            self.batch_size = 1
        elif scenario == "MultiStream":
            self.batch_size = engine_max or MULTISTREAM_SAMPLES_PER_QUERY  # grows to the query (see _plan)
        else:
            self.batch_size = max(1, min(batch_size, engine_max or batch_size))
        self._engine_max = engine_max
        buckets = engine.seq_buckets()
        self.buckets = sorted(buckets) if buckets else None
        if self.buckets and self.buckets[-1] < MAX_SEQ_LEN:
            raise ConfigError(
                f"The engine's largest sequence bucket is {self.buckets[-1]}, below {MAX_SEQ_LEN}; "
                f"build it with a {MAX_SEQ_LEN} bucket."
            )
        # Input buffers reused for every batch: a flat int64 block per input, viewed as [B, S] (contiguous).
        self._buffers = [
            np.zeros(self.batch_size * pick_length(MAX_SEQ_LEN, self.buckets), np.int64) for _ in range(3)
        ]
        self._buffer_lock = threading.Lock()  # held while the input buffers are filled and run
        self._count_lock = threading.Lock()  # short: never held across inference (Server issues meanwhile)
        self._on_complete = on_complete
        self._on_error = on_error
        self.samples_issued = 0
        self.samples_completed = 0
        self.batches_run = 0
        self.error: BaseException | None = None
        self._handle: object | None = None
        self._queue: queue.Queue[Item | None] | None = None
        self._worker: threading.Thread | None = None

    # ---- LoadGen callbacks -------------------------------------------------------------------------
    def issue_queries(self, query_samples: list) -> None:  # list[mlperf_loadgen.QuerySample]
        items = [(q.id, q.index) for q in query_samples]
        with self._count_lock:
            self.samples_issued += len(items)
        if self._queue is not None:
            for item in items:
                self._queue.put(item)
        else:
            self._process(items)

    def flush_queries(self) -> None:
        # Nothing is held back: the Server worker's batching window is a few milliseconds.
        pass

    # ---- lifecycle ---------------------------------------------------------------------------------
    def construct(self) -> object:
        """Start the Server worker (if any) and register with LoadGen; pair with close()."""
        import mlperf_loadgen as lg

        if self.scenario == "Server":
            self._queue = queue.Queue()
            self._worker = threading.Thread(target=self._serve, name="sut-server-worker", daemon=True)
            self._worker.start()
        self._handle = lg.ConstructSUT(self.issue_queries, self.flush_queries)
        return self._handle

    def close(self) -> None:
        import mlperf_loadgen as lg

        if self._worker is not None and self._queue is not None:
            self._queue.put(None)
            self._worker.join()
            self._worker = None
        if self._handle is not None:
            lg.DestroySUT(self._handle)
            self._handle = None

    # ---- work --------------------------------------------------------------------------------------
    def _serve(self) -> None:
        assert self._queue is not None
        q = self._queue
        stop = False
        while not stop:
            first = q.get()
            if first is None:
                break
            items = [first]
            deadline = time.monotonic() + SERVER_BATCH_WINDOW_S
            while len(items) < self.batch_size:
                try:
                    nxt = q.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                items.append(nxt)
            self._process(items)

    def _process(self, items: list[Item]) -> None:
        """Run items in batches and answer them. Never raises: LoadGen's threads cannot take an exception,
        so a failure is recorded, reported, and the samples are answered empty so the test can end."""
        import mlperf_loadgen as lg

        try:
            batches = self._plan(items)
        except Exception as exc:  # noqa: BLE001 - recorded; the harness raises it after the test
            self._fail(exc)
            batches = [items]
        for batch in batches:
            if self.error is not None:
                self._complete_empty(batch)
                continue
            try:
                outputs = self._infer_batch(batch)
            except Exception as exc:  # noqa: BLE001 - recorded; the harness raises it after the test
                self._fail(exc)
                self._complete_empty(batch)
                continue
            # `outputs` keeps the response bytes alive until QuerySamplesComplete has returned.
            responses = [
                lg.QuerySampleResponse(rid, out.ctypes.data, out.nbytes)
                for (rid, _), out in zip(batch, outputs, strict=True)
            ]
            lg.QuerySamplesComplete(responses)
            del outputs
            self._completed(len(batch), batches=1)

    def _plan(self, items: list[Item]) -> list[list[Item]]:
        if self.kind == "reference":
            return [[item] for item in items]
        lengths = [self.qsl.sample(idx).seq_len for _, idx in items]
        limit = self.batch_size
        if self.scenario == "MultiStream":
            limit = min(len(items), self._engine_max or len(items))
        return [[items[i] for i in b] for b in plan_batches(lengths, max(1, limit), sort=True)]

    def _fail(self, exc: Exception) -> None:
        log.error("inference failed: %s: %s", type(exc).__name__, exc)
        if self.error is None:
            self.error = exc
            if self._on_error is not None:
                self._on_error(exc)

    def _infer_batch(self, batch: list[Item]) -> list[np.ndarray]:
        """Fill the reused input buffers, run the engine, return one float32 [length, 2] array per sample."""
        samples = [self.qsl.sample(idx) for _, idx in batch]
        b = len(samples)
        needed = MAX_SEQ_LEN if self.kind == "reference" else max(s.seq_len for s in samples)
        width = pick_length(needed, self.buckets)
        cols = min(width, MAX_SEQ_LEN)
        with self._buffer_lock:
            if self._buffers[0].size < b * width:  # only a MultiStream query larger than expected
                self._buffers = [np.zeros(b * width, np.int64) for _ in range(3)]
            ids, mask, seg = (buf[: b * width].reshape(b, width) for buf in self._buffers)
            if width > cols:  # a bucket wider than the features: pad with zeros (mask 0)
                for arr in (ids, mask, seg):
                    arr[:, cols:] = 0
            for r, s in enumerate(samples):
                ids[r, :cols] = s.input_ids[:cols]
                mask[r, :cols] = s.input_mask[:cols]
                seg[r, :cols] = s.segment_ids[:cols]
            start, end = self.engine.infer(ids, mask, seg)
        if start.shape != (b, width) or end.shape != (b, width):
            raise RunError(
                f"The engine returned logits of shape {start.shape} and {end.shape} for a [{b}, {width}] batch; "
                "fix the engine's infer()."
            )
        outputs = []
        for r, s in enumerate(samples):
            length = MAX_SEQ_LEN if self.kind == "reference" else s.seq_len
            out = np.empty((length, 2), dtype=np.float32)
            out[:, 0] = start[r, :length]
            out[:, 1] = end[r, :length]
            outputs.append(out)
        return outputs

    def _complete_empty(self, items: list[Item]) -> None:
        import mlperf_loadgen as lg

        if items:
            lg.QuerySamplesComplete([lg.QuerySampleResponse(rid, 0, 0) for rid, _ in items])
            self._completed(len(items), batches=0)

    def _completed(self, n: int, *, batches: int) -> None:
        with self._count_lock:
            self.samples_completed += n
            self.batches_run += batches
        if self._on_complete is not None:
            self._on_complete(n)
