"""The system under test: LoadGen queries -> engine batches -> LoadGen responses. Generic over Engine.

Two kinds:
- `reference`: what the MLPerf reference SUT does: batch 1, every sample padded to 384, answer [384, 2].
- `optimized`: sort the query's samples by real length, batch them, cut each batch to its longest real
  row (rounded up to one of the engine's sequence buckets), answer each sample with its own real length.
Padding positions carry input_mask 0, so cutting them does not change the logits of real tokens beyond
float noise (and the quantisation noise of an int8 model's dynamic activation ranges).

Dispatch by scenario:
- Offline: the one query is planned at once (numpy: lengths, a stable longest-first sort, slices) and run
  inside LoadGen's issue call, batch after batch, on every engine instance at once (`instance_count`),
  each instance's worker thread pinned to its own cores (harness/cpu.py) while it runs.
- SingleStream: one sample, run at once at its real length. MultiStream: the query (8 samples) is one
  batch, split only where the engine's max_batch requires.
- Server: worker threads (one per engine instance) take what has arrived; a worker waits for more only
  while the oldest waiting sample can still finish within a share of the latency bound, judged by a
  running estimate of the engine's time per token (latency-aware dynamic batching).

The per-sample Python work is kept to the minimum LoadGen's API allows: the issue callback receives two
lists of ints (LoadGen's "fast" SUT), inputs are gathered with numpy into reused buffers, every batch's
logits are copied into one reused response buffer laid out float32 [batch, width, 2] (start, end
interleaved per token: the layout every accuracy script reads), and each batch ends with ONE
QuerySamplesComplete call holding one response per sample (a pointer into that buffer and the sample's
real length). LoadGen copies what it logs during that call, so the buffer can be reused afterwards.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from orchestrator.errors import ConfigError, RunError
from orchestrator.harness.cpu import pinned_thread, worker_cpu_sets
from orchestrator.harness.engines.engine import Engine
from orchestrator.harness.latencies import LatencyLog
from orchestrator.harness.qsl import SampleLibrary
from orchestrator.harness.settings import MULTISTREAM_SAMPLES_PER_QUERY
from orchestrator.mlperf import SEQ_LEN, SERVER_TARGET_LATENCY_MS, Scenario, SutKind

log = logging.getLogger(__name__)

Item = tuple[int, int]  # (LoadGen response id, QSL index)

# MLPerf's Server latency bound for bert (mlperf.conf); a run's target_latency overrides it.
SERVER_LATENCY_BOUND_S = SERVER_TARGET_LATENCY_MS / 1000
# The share of the bound a sample may spend waiting for its batch plus running: the rest is headroom for
# the 99th percentile (queueing behind a running batch, estimate errors).
SERVER_LATENCY_BUDGET = 0.5
# Never wait longer than this for more samples, whatever the budget says.
SERVER_MAX_WAIT_S = 0.020


def plan_batches(lengths: Sequence[int], batch_size: int, *, sort: bool) -> list[list[int]]:
    """Positions into `lengths`, grouped into batches of at most batch_size; longest first when sorted."""
    return [b.tolist() for b in order_batches(np.asarray(lengths, dtype=np.int64), batch_size, sort=sort)]


def order_batches(lengths: np.ndarray, batch_size: int, *, sort: bool) -> list[np.ndarray]:
    """plan_batches on a numpy array, returning arrays of positions (stable: ties keep issue order)."""
    n = int(lengths.shape[0])
    order = np.argsort(-lengths, kind="stable") if sort else np.arange(n)
    return [order[i : i + batch_size] for i in range(0, n, batch_size)]


def pick_length(needed: int, buckets: Sequence[int] | None) -> int:
    """The sequence length to run `needed` real tokens at: the smallest bucket that holds them."""
    if not buckets:
        return needed
    for b in buckets:
        if b >= needed:
            return b
    raise RunError(f"No sequence bucket of the engine holds {needed} tokens (buckets {list(buckets)}).")


class CostModel:
    """A running estimate of an engine call's time: overhead + per_token * batch * width (seconds).

    Updated after every batch with an exponential moving average of the time per token; the overhead
    is the smallest call time seen for one short sample. Until the first measurement it knows nothing
    and predicts 0, so the first Server batches never wait."""

    def __init__(self, alpha: float = 0.2) -> None:
        self.alpha = alpha
        self.per_token: float | None = None
        self._lock = threading.Lock()

    def observe(self, batch: int, width: int, seconds: float) -> None:
        tokens = max(1, batch * width)
        with self._lock:
            rate = seconds / tokens
            self.per_token = rate if self.per_token is None else (1 - self.alpha) * self.per_token + self.alpha * rate

    def predict(self, batch: int, width: int) -> float:
        return 0.0 if self.per_token is None else self.per_token * batch * width


@dataclass
class _Waiting:
    rid: int
    index: int
    arrived: float  # time.monotonic() at issue
    slot: int  # its place in the latency log


class _Worker:
    """One engine instance's reused buffers: int64 inputs [B, S] and the float32 [B, S, 2] responses."""

    def __init__(self, instance: int, rows: int, width: int) -> None:
        self.instance = instance
        self.rows, self.width = rows, width
        self.inputs = [np.zeros(rows * width, np.int64) for _ in range(3)]
        self.responses = np.zeros(rows * width * 2, np.float32)

    def ensure(self, rows: int, width: int) -> None:
        """Grow (only for a MultiStream query larger than planned, or a wider bucket)."""
        if rows * width > self.inputs[0].size:
            self.inputs = [np.zeros(rows * width, np.int64) for _ in range(3)]
            self.responses = np.zeros(rows * width * 2, np.float32)


class BertSUT:
    def __init__(
        self,
        engine: Engine,
        qsl: SampleLibrary,
        *,
        scenario: Scenario,
        kind: SutKind = SutKind.optimized,
        batch_size: int = 16,
        on_complete: Callable[[int], None] | None = None,
        on_error: Callable[[BaseException], None] | None = None,
        latency_bound_s: float | None = None,
        pin_workers: bool = True,
        expected_samples: int = 1024,
    ) -> None:
        self.engine = engine
        self.qsl = qsl
        self.scenario = scenario
        self.kind = kind
        engine_max = engine.max_batch()
        if kind == "reference":
            self.batch_size = 1
        elif scenario == Scenario.MultiStream:
            self.batch_size = engine_max or MULTISTREAM_SAMPLES_PER_QUERY  # grows to the query (see _plan)
        elif scenario == Scenario.SingleStream:
            self.batch_size = 1  # one sample per query: nothing to batch
        else:
            self.batch_size = max(1, min(batch_size, engine_max or batch_size))
        self._engine_max = engine_max
        buckets = engine.seq_buckets()
        self.buckets = sorted(buckets) if buckets else None
        if self.buckets and self.buckets[-1] < SEQ_LEN:
            raise ConfigError(
                f"The engine's largest sequence bucket is {self.buckets[-1]}, below {SEQ_LEN}; "
                f"build it with a {SEQ_LEN} bucket."
            )
        # The features stay in memory for the whole run (see qsl.py): gather rows straight from them.
        f = qsl.features
        self._ids, self._mask, self._seg = f.input_ids, f.input_mask, f.segment_ids
        self._seq_len = np.asarray(f.seq_len, dtype=np.int64)
        # One engine instance per worker.
        self.instances = max(1, engine.instance_count)
        if scenario in (Scenario.SingleStream, Scenario.MultiStream) or kind == SutKind.reference:
            self.instances = 1  # one query at a time: a second instance would idle
        full = pick_length(SEQ_LEN, self.buckets)
        self._workers = [_Worker(i, self.batch_size, full) for i in range(self.instances)]
        # Several engine instances: each worker thread on its own cores (None: not pinned).
        self.worker_cpus = worker_cpu_sets(self.instances) if pin_workers and self.instances > 1 else None
        if self.worker_cpus:
            log.info(
                "%d SUT workers pinned to CPUs %s",
                self.instances,
                "; ".join(",".join(str(c) for c in sorted(cpus)) for cpus in self.worker_cpus),
            )
        self.latency_bound_s = latency_bound_s or SERVER_LATENCY_BOUND_S
        self.cost = CostModel()
        self._count_lock = threading.Lock()  # short: never held across inference (Server issues meanwhile)
        self._on_complete = on_complete
        self._on_error = on_error
        self.samples_issued = 0
        self.samples_completed = 0
        self.batches_run = 0
        self.complete_calls = 0  # QuerySamplesComplete calls: one per batch
        # Issue-to-complete time per sample (harness/latencies.py), written under _count_lock.
        self.latencies = LatencyLog(expected_samples)
        self.error: BaseException | None = None
        self._handle: object | None = None
        self._queue: queue.Queue[_Waiting | None] | None = None
        self._threads: list[threading.Thread] = []

    # ---- LoadGen callbacks -------------------------------------------------------------------------
    def issue_fast(self, ids: list[int], indices: list[int]) -> None:
        """LoadGen's fast issue callback: response ids and QSL indices as two lists of ints."""
        now = time.monotonic()
        with self._count_lock:
            self.samples_issued += len(ids)
            first = self.latencies.reserve(len(ids), now, indices)
        if self._queue is not None:
            for k, (rid, index) in enumerate(zip(ids, indices, strict=True)):
                self._queue.put(_Waiting(rid, index, now, first + k))
            return
        self._process(
            np.asarray(ids, dtype=np.uint64),
            np.asarray(indices, dtype=np.int64),
            np.arange(first, first + len(ids), dtype=np.int64),
        )

    def issue_queries(self, query_samples: list) -> None:  # list[mlperf_loadgen.QuerySample]
        """The classic issue callback (QuerySample objects), for callers that construct a plain SUT."""
        self.issue_fast([q.id for q in query_samples], [q.index for q in query_samples])

    def flush_queries(self) -> None:
        # Nothing is held back: a Server worker waits for more samples only within its latency budget.
        pass

    # ---- lifecycle ---------------------------------------------------------------------------------
    def construct(self) -> object:
        """Start the Server workers (if any) and register with LoadGen; pair with close()."""
        import mlperf_loadgen as lg

        self.warm_up()
        if self.scenario == Scenario.Server:
            self._queue = queue.Queue()
            for worker in self._workers:
                t = threading.Thread(
                    target=self._serve, args=(worker,), name=f"sut-server-{worker.instance}", daemon=True
                )
                t.start()
                self._threads.append(t)
        self._handle = lg.ConstructFastSUT(self.issue_fast, self.flush_queries)
        return self._handle

    def warm_up(self) -> None:
        """Untimed engine calls per instance on synthetic tokens (no dataset sample): the first call of a
        session pays for first-touching the weights and starting its threads, which is no part of the
        system's steady speed. An engine whose first call at each new shape is slow (OpenVINO compiles per
        shape) is called once at every width the dataset's lengths pad to, with the planned batch, so those
        compiles do not land in the timed run (a 128-sample BERT-large run otherwise spent several seconds
        in them); a batch of another size (a Server batch, a query's last partial batch) may still compile
        there. The instances warm up side by side, as they run. An engine error is logged and the run goes
        on (the measured run reports it); a signal (Interrupted, KeyboardInterrupt) stops the warm-up and
        propagates."""
        if self.kind == SutKind.reference:  # batch 1, every sample padded to 384: one shape
            widths, rows = [pick_length(SEQ_LEN, self.buckets)], 1
        elif self.buckets and self.engine.shape_costs_first_call():
            widths = sorted({pick_length(int(n), self.buckets) for n in np.unique(self._seq_len)})
            rows = self.batch_size
        else:
            widths, rows = [pick_length(64, self.buckets)], min(self.batch_size, 4)
        stop = threading.Event()

        def warm_one(worker: _Worker, width: int) -> Exception | None:
            ids = np.full((rows, width), 1996, dtype=np.int64)  # "the", repeated
            ids[:, 0], ids[:, -1] = 101, 102  # [CLS] ... [SEP]
            try:
                self.engine.infer(ids, np.ones_like(ids), np.zeros_like(ids), instance=worker.instance)
            except Exception as exc:  # noqa: BLE001 - the measured run reports engine failures itself
                return exc
            return None

        def warm(worker: _Worker) -> Exception | None:
            for width in widths[1:] if worker is self._workers[0] else widths:  # worker 0 ran widths[0] first
                if stop.is_set():
                    return None
                error = warm_one(worker, width)
                if error is not None:
                    return error
            return None

        started = time.perf_counter()
        pool = ThreadPoolExecutor(max_workers=len(self._workers), thread_name_prefix="sut-warm-up")
        with self.engine.untimed():  # no part of a LoadGen run: an engine's call counts leave these out
            try:
                # The process's first engine call runs alone: OpenVINO's Python binding initialises a
                # function-local static in its first infer() while holding the GIL, and two threads making that
                # first call at once deadlock (seen 2026-12-02: one in __cxa_guard_acquire, one waiting for the
                # GIL).
                first = pool.submit(warm_one, self._workers[0], widths[0]).result()
                errors = [first] if first is not None else [e for e in pool.map(warm, self._workers) if e is not None]
            finally:  # a signal raised in this thread lands here: the threads end after their current call
                stop.set()
                pool.shutdown(wait=True)
        if errors:
            log.warning("warm-up call failed (%s: %s); continuing", type(errors[0]).__name__, errors[0])
            return
        log.log(
            logging.INFO if len(widths) > 1 else logging.DEBUG,
            "warm-up: %d instance(s) x %d shape(s) [%d, %s] in %.2f s",
            len(self._workers),
            len(widths),
            rows,
            ",".join(map(str, widths)),
            time.perf_counter() - started,
        )

    def close(self) -> None:
        import mlperf_loadgen as lg

        if self._queue is not None:
            for _ in self._threads:
                self._queue.put(None)
            for t in self._threads:
                t.join()
            self._threads = []
        if self._handle is not None:
            lg.DestroyFastSUT(self._handle)
            self._handle = None

    # ---- Offline / SingleStream / MultiStream --------------------------------------------------------
    def _process(self, ids: np.ndarray, indices: np.ndarray, slots: np.ndarray | None = None) -> None:
        """Run a query's samples in batches and answer them. Never raises: LoadGen's threads cannot take an
        exception, so a failure is recorded, reported, and the samples are answered empty so the test ends."""
        if slots is None:  # a caller outside LoadGen's issue path (tests): slots of their own
            with self._count_lock:
                first = self.latencies.reserve(len(ids), time.monotonic(), indices)
            slots = np.arange(first, first + len(ids), dtype=np.int64)
        try:
            batches = self._plan(indices)
        except Exception as exc:  # noqa: BLE001 - recorded; the harness raises it after the test
            self._fail(exc)
            self._complete_empty(ids, slots)
            return
        if self.instances == 1 or len(batches) == 1:
            for positions in batches:
                self._run_batch(self._workers[0], ids[positions], indices[positions], slots[positions])
            return
        # Several instances: each worker takes the next batch (longest first) until none is left.
        lock = threading.Lock()
        remaining = iter(batches)
        all_slots = slots

        def drain(worker: _Worker) -> None:
            with pinned_thread(self._cpus_of(worker)):  # worker 0 is LoadGen's thread: restored after
                while True:
                    with lock:
                        positions = next(remaining, None)
                    if positions is None:
                        return
                    self._run_batch(worker, ids[positions], indices[positions], all_slots[positions])

        helpers = [
            threading.Thread(target=drain, args=(w,), name=f"sut-offline-{w.instance}", daemon=True)
            for w in self._workers[1:]
        ]
        for t in helpers:
            t.start()
        drain(self._workers[0])
        for t in helpers:
            t.join()

    def _plan(self, indices: np.ndarray) -> list[np.ndarray]:
        """Positions into the query, per batch: issue order for the reference, else longest first."""
        n = int(indices.shape[0])
        if self.kind == "reference":
            return [np.array([i]) for i in range(n)]
        limit = self.batch_size
        if self.scenario == Scenario.MultiStream:
            limit = min(n, self._engine_max or n)
        return order_batches(self._seq_len[indices], max(1, limit), sort=True)

    # ---- Server ----------------------------------------------------------------------------------------
    def _cpus_of(self, worker: _Worker) -> set[int] | None:
        return self.worker_cpus[worker.instance] if self.worker_cpus else None

    def _serve(self, worker: _Worker) -> None:
        with pinned_thread(self._cpus_of(worker)):
            self._serve_pinned(worker)

    def _serve_pinned(self, worker: _Worker) -> None:
        assert self._queue is not None
        q = self._queue
        budget = self.latency_bound_s * SERVER_LATENCY_BUDGET
        while True:
            first = q.get()
            if first is None:
                return
            batch = [first]
            stop = False
            while len(batch) < self.batch_size:  # take what is already there
                try:
                    nxt = q.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                batch.append(nxt)
            while not stop and len(batch) < self.batch_size:
                # Wait for one more only if the oldest sample can still finish in time with it.
                width = pick_length(int(self._seq_len[[w.index for w in batch]].max()), self.buckets)
                slack = first.arrived + budget - time.monotonic() - self.cost.predict(len(batch) + 1, width)
                if slack <= 0:
                    break
                try:
                    nxt = q.get(timeout=min(slack, SERVER_MAX_WAIT_S))
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                batch.append(nxt)
            self._run_batch(
                worker,
                np.array([w.rid for w in batch], dtype=np.uint64),
                np.array([w.index for w in batch], dtype=np.int64),
                np.array([w.slot for w in batch], dtype=np.int64),
            )
            if stop:
                return

    # ---- one batch -------------------------------------------------------------------------------------
    def _run_batch(self, worker: _Worker, ids: np.ndarray, indices: np.ndarray, slots: np.ndarray) -> None:
        import mlperf_loadgen as lg

        if self.error is not None:
            self._complete_empty(ids, slots)
            return
        try:
            lengths = self._seq_len[indices]
            width, answer = self._infer_into(worker, indices, lengths)
        except Exception as exc:  # noqa: BLE001 - recorded; the harness raises it after the test
            self._fail(exc)
            self._complete_empty(ids, slots)
            return
        # One response per sample: a pointer to its row of the response buffer and its answer length.
        row_bytes = width * 2 * 4
        base = worker.responses.ctypes.data
        rows = len(indices)
        sizes = (lengths * 8).tolist() if answer is None else [answer * 8] * rows
        responses = [
            lg.QuerySampleResponse(rid, base + r * row_bytes, size)
            for r, (rid, size) in enumerate(zip(ids.tolist(), sizes, strict=True))
        ]
        done = time.monotonic()
        lg.QuerySamplesComplete(responses)
        self._completed(rows, batches=1, calls=1, slots=slots, at=done)

    def _infer_into(self, worker: _Worker, indices: np.ndarray, lengths: np.ndarray) -> tuple[int, int | None]:
        """Gather the batch into the worker's inputs, run the engine, write the logits into the worker's
        response buffer as [rows, width, 2]. Returns the width and, for the reference, the answer length
        (384 for every sample) instead of each sample's own (None)."""
        rows = int(indices.shape[0])
        reference = self.kind == "reference"
        needed = SEQ_LEN if reference else int(lengths.max())
        width = pick_length(needed, self.buckets)
        cols = min(width, SEQ_LEN)
        worker.ensure(rows, width)
        ids, mask, seg = (buf[: rows * width].reshape(rows, width) for buf in worker.inputs)
        ids[:, :cols] = self._ids[indices, :cols]
        mask[:, :cols] = self._mask[indices, :cols]
        seg[:, :cols] = self._seg[indices, :cols]
        if width > cols:  # a bucket wider than the features: pad with zeros (mask 0)
            for arr in (ids, mask, seg):
                arr[:, cols:] = 0
        started = time.perf_counter()
        start, end = self.engine.infer(ids, mask, seg, instance=worker.instance)
        self.cost.observe(rows, width, time.perf_counter() - started)
        if start.shape != (rows, width) or end.shape != (rows, width):
            raise RunError(
                f"The engine returned logits of shape {start.shape} and {end.shape} for a [{rows}, {width}] batch; "
                "fix the engine's infer()."
            )
        out = worker.responses[: rows * width * 2].reshape(rows, width, 2)
        out[:, :, 0] = start
        out[:, :, 1] = end
        return width, (SEQ_LEN if reference else None)

    def answers(self, indices: Sequence[int]) -> list[np.ndarray]:
        """Run one batch of QSL indices on the first worker, without LoadGen; a copy of each sample's answer
        as it would be sent: float32 [answer length, 2] (tests and tools)."""
        idx = np.asarray(indices, dtype=np.int64)
        lengths = self._seq_len[idx]
        width, answer = self._infer_into(self._workers[0], idx, lengths)
        out = self._workers[0].responses[: len(idx) * width * 2].reshape(len(idx), width, 2)
        return [out[r, : (answer or int(n))].copy() for r, n in enumerate(lengths.tolist())]

    # ---- bookkeeping -----------------------------------------------------------------------------------
    def _fail(self, exc: Exception) -> None:
        log.error("inference failed: %s: %s", type(exc).__name__, exc)
        if self.error is None:
            self.error = exc
            if self._on_error is not None:
                self._on_error(exc)

    def _complete_empty(self, ids: np.ndarray, slots: np.ndarray) -> None:
        import mlperf_loadgen as lg

        if len(ids):
            done = time.monotonic()
            lg.QuerySamplesComplete([lg.QuerySampleResponse(rid, 0, 0) for rid in ids.tolist()])
            self._completed(len(ids), batches=0, calls=1, slots=slots, at=done)

    def _completed(self, n: int, *, batches: int, calls: int, slots: np.ndarray, at: float) -> None:
        with self._count_lock:
            self.latencies.complete(slots, at)
            self.samples_completed += n
            self.batches_run += batches
            self.complete_calls += calls
        if self._on_complete is not None:
            self._on_complete(n)


def expected_batches(sample_count: int, batch_size: int) -> int:
    """Batches the optimized Offline SUT runs for one query (tests and benchmarks check against it)."""
    return math.ceil(sample_count / max(1, batch_size))


__all__ = [
    "BertSUT",
    "CostModel",
    "Item",
    "SutKind",
    "expected_batches",
    "order_batches",
    "pick_length",
    "plan_batches",
]
