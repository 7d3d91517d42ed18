"""SUT batching and response layout with a fake instant engine (no LoadGen call in this process)."""

from __future__ import annotations

import json
import signal
import threading
from pathlib import Path

import numpy as np
import pytest
from harness_support import InstantEngine, make_spec, write_features

from orchestrator.errors import ConfigError, DatasetError, RunError
from orchestrator.harness.engines.engine import Engine
from orchestrator.harness.qsl import SampleLibrary, load_feature_arrays
from orchestrator.harness.sut import BertSUT, CostModel, pick_length, plan_batches


@pytest.fixture(scope="module")
def features(tmp_path_factory: pytest.TempPathFactory):
    return load_feature_arrays(write_features(tmp_path_factory.mktemp("feat") / "features.npz", count=64))


def _engine(**options: str) -> InstantEngine:
    return InstantEngine(
        "unused.onnx", device="cpu", batch_size=4, threads=None, execution_provider="X", options=options
    )


def _sut(features, engine, kind="optimized", batch_size=4, scenario="Offline") -> BertSUT:
    qsl = SampleLibrary(features, features.count, features.count)
    qsl.load_samples(list(range(features.count)))
    return BertSUT(engine, qsl, scenario=scenario, kind=kind, batch_size=batch_size)


def test_plan_batches_sorts_longest_first_and_keeps_leftovers() -> None:
    lengths = [10, 50, 30, 20, 40]
    assert plan_batches(lengths, 2, sort=True) == [[1, 4], [2, 3], [0]]
    assert plan_batches(lengths, 2, sort=False) == [[0, 1], [2, 3], [4]]
    assert plan_batches([7], 16, sort=True) == [[0]]
    assert plan_batches([], 4, sort=True) == []


def test_pick_length_rounds_up_to_a_bucket() -> None:
    assert pick_length(100, None) == 100
    assert pick_length(100, [128, 256, 384]) == 128
    assert pick_length(128, [128, 256, 384]) == 128
    assert pick_length(129, [128, 256, 384]) == 256
    with pytest.raises(RunError):
        pick_length(385, [128, 384])


def test_optimized_batches_cut_to_longest_row_with_leftover(features) -> None:
    engine = _engine()
    sut = _sut(features, engine)
    query = np.arange(9)  # 9 samples, batch 4: 4 + 4 + a single leftover
    batches = sut._plan(query)
    assert [len(b) for b in batches] == [4, 4, 1]
    seq_len = features.seq_len
    flat = [int(query[p]) for b in batches for p in b]
    assert sorted(flat) == list(range(9))
    assert [seq_len[i] for i in flat] == sorted((seq_len[i] for i in range(9)), reverse=True)
    for positions in batches:
        indices = query[positions]
        outputs = sut.answers(indices)
        longest = max(int(seq_len[idx]) for idx in indices)
        assert engine.calls[-1] == (len(indices), longest)
        for idx, out in zip(indices, outputs, strict=True):
            n = int(seq_len[idx])
            assert out.dtype == np.float32 and out.shape == (n, 2) and out.flags.c_contiguous
            np.testing.assert_array_equal(out[:, 0], features.input_ids[idx, :n].astype(np.float32))
            np.testing.assert_array_equal(out[:, 1], np.arange(n, dtype=np.float32))
    # The input buffers are reused, not reallocated per batch.
    assert len(set(engine.buffers_seen)) == 1
    assert engine.buffers_seen[0] == sut._workers[0].inputs[0].ctypes.data


def test_each_answer_is_a_contiguous_row_of_one_response_buffer(features) -> None:
    """The bytes LoadGen gets for sample r start at row r of the [rows, width, 2] buffer: (start, end) per
    token for the sample's real tokens, exactly the logits the engine returned."""
    engine = _engine()
    sut = _sut(features, engine, batch_size=8)
    indices = np.array([5, 2, 7])
    lengths = features.seq_len[indices].astype(int)
    width, answer = sut._infer_into(sut._workers[0], indices, lengths)
    assert width == lengths.max() and answer is None
    raw = sut._workers[0].responses
    for r, (idx, n) in enumerate(zip(indices, lengths, strict=True)):
        row = raw[r * width * 2 : r * width * 2 + n * 2].reshape(n, 2)  # what the response pointer covers
        np.testing.assert_array_equal(row[:, 0], features.input_ids[idx, :n].astype(np.float32))
        np.testing.assert_array_equal(row[:, 1], np.arange(n, dtype=np.float32))


def test_reference_runs_batch_1_at_384(features) -> None:
    engine = _engine()
    sut = _sut(features, engine, kind="reference", batch_size=16)
    assert sut.batch_size == 1
    batches = sut._plan(np.array([3, 5]))
    assert [b.tolist() for b in batches] == [[0], [1]]  # issue order, one at a time
    out = sut.answers([3])[0]
    assert engine.calls == [(1, 384)]
    assert out.shape == (384, 2)
    np.testing.assert_array_equal(out[:, 0], features.input_ids[3].astype(np.float32))


def test_engine_buckets_and_max_batch_are_respected(features) -> None:
    engine = _engine(buckets="128,256,384", max_batch="3")
    sut = _sut(features, engine, batch_size=16)
    assert sut.batch_size == 3
    query = np.arange(7)
    for positions in sut._plan(query):
        indices = query[positions]
        outputs = sut.answers(indices)
        assert engine.calls[-1][0] == len(indices) <= 3
        assert engine.calls[-1][1] in (128, 256, 384)
        assert engine.calls[-1][1] >= max(int(features.seq_len[i]) for i in indices)
        assert [o.shape[0] for o in outputs] == [int(features.seq_len[i]) for i in indices]
    assert [c[0] for c in engine.calls] == [3, 3, 1]


def test_multistream_query_is_one_batch_unless_the_engine_caps_it(features) -> None:
    query = np.arange(8)
    engine = _engine()
    sut = _sut(features, engine, batch_size=2, scenario="MultiStream")
    (positions,) = sut._plan(query)
    outputs = sut.answers(query[positions])
    assert engine.calls == [(8, max(int(features.seq_len[i]) for i in range(8)))]
    assert [o.shape[0] for o in outputs] == [int(features.seq_len[i]) for i in query[positions]]
    capped = _sut(features, _engine(max_batch="3"), batch_size=16, scenario="MultiStream")
    assert [len(b) for b in capped._plan(query)] == [3, 3, 2]


def test_singlestream_and_reference_use_one_instance(features) -> None:
    engine = _engine(instances="2")
    assert _sut(features, engine, scenario="Offline").instances == 2
    assert _sut(features, engine, scenario="SingleStream").instances == 1
    assert _sut(features, engine, scenario="SingleStream").batch_size == 1
    assert _sut(features, engine, kind="reference").instances == 1


class MinimalEngine(Engine):
    """Only what Engine requires: the defaults do the rest (one instance)."""

    name = "minimal"

    def __init__(self) -> None:
        super().__init__("unused.onnx", device="cpu", batch_size=4, threads=None, execution_provider="X")
        self.instances_seen: list[int] = []

    @property
    def execution_provider(self) -> str:
        return "X"

    def versions(self) -> dict[str, str]:
        return {}

    def infer(
        self, input_ids: np.ndarray, input_mask: np.ndarray, segment_ids: np.ndarray, *, instance: int = 0
    ) -> tuple[np.ndarray, np.ndarray]:
        self.instances_seen.append(instance)
        logits = input_ids.astype(np.float32)
        return logits, logits


def test_engine_defaults_one_instance_and_the_sut_names_it(features) -> None:
    engine = MinimalEngine()
    assert engine.instance_count == 1 and engine.seq_buckets() is None and engine.max_batch() is None
    assert engine.settings() == {}
    sut = _sut(features, engine)
    assert sut.instances == 1
    sut.warm_up()
    indices = np.array([5, 2, 7])
    sut._infer_into(sut._workers[0], indices, features.seq_len[indices].astype(int))
    assert engine.instances_seen and set(engine.instances_seen) == {0}


def test_warm_up_covers_every_width_the_dataset_pads_to_when_shapes_cost_a_compile(features) -> None:
    # OpenVINO compiles per input shape at its first call: the warm-up runs each width the dataset's lengths
    # fall into, at the planned batch, on every instance, so no compile lands in LoadGen's timed run.
    buckets = [32, 64, 96, 128, 192, 256, 384]
    engine = _engine(instances="2", buckets=",".join(map(str, buckets)), shape_cost="1")
    sut = _sut(features, engine, batch_size=3)
    sut.warm_up()
    widths = sorted({pick_length(int(n), buckets) for n in features.seq_len})
    assert len(widths) > 1  # the fixture's lengths span several buckets, or this test proves nothing
    assert sorted(engine.calls_by_instance) == sorted([(i, 3, w) for w in widths for i in (0, 1)])
    # An engine without a per-shape cost: one short call per instance, as before.
    plain = _engine(instances="2", buckets=",".join(map(str, buckets)))
    _sut(features, plain, batch_size=3).warm_up()
    assert sorted(plain.calls_by_instance) == [(0, 3, 64), (1, 3, 64)]
    # The reference SUT runs batch 1 at 384 only: that one shape.
    ref = _engine(buckets=",".join(map(str, buckets)), shape_cost="1")
    _sut(features, ref, kind="reference").warm_up()
    assert ref.calls == [(1, 384)]


def test_the_first_warm_up_call_runs_alone(features) -> None:
    # OpenVINO's Python binding deadlocks when two threads make the process's first infer() at once.
    import time

    spans: list[tuple[float, float]] = []

    class Timed(InstantEngine):
        def infer(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            start = time.monotonic()
            out = super().infer(*args, **kwargs)
            spans.append((start, time.monotonic()))
            return out

    engine = Timed(
        "unused.onnx",
        device="cpu",
        batch_size=4,
        threads=None,
        execution_provider="X",
        options={"instances": "2", "buckets": "96,160,192,384", "shape_cost": "1", "delay_s": "0.05"},
    )
    _sut(features, engine).warm_up()
    spans.sort()
    assert len(spans) > 2 and all(spans[0][1] <= later[0] for later in spans[1:])


def test_the_warm_up_calls_are_made_untimed_and_the_run_s_are_not(features) -> None:
    # An engine that counts its calls for run.json (the Ray pool's ray_batches) must not count the warm-up's.
    import contextlib

    inside: list[bool] = []
    untimed = [0]

    class Counting(InstantEngine):
        @contextlib.contextmanager
        def untimed(self):  # type: ignore[no-untyped-def]
            untimed[0] += 1
            try:
                yield
            finally:
                untimed[0] -= 1

        def infer(self, *args, **kwargs):  # type: ignore[no-untyped-def]
            inside.append(untimed[0] > 0)
            return super().infer(*args, **kwargs)

    engine = Counting(
        "unused.onnx",
        device="cpu",
        batch_size=4,
        threads=None,
        execution_provider="X",
        options={"instances": "2", "buckets": "96,160,192,384", "shape_cost": "1"},
    )
    sut = _sut(features, engine)
    sut.warm_up()
    assert len(inside) > 2 and all(inside) and untimed[0] == 0
    indices = np.array([1, 3])
    sut._infer_into(sut._workers[0], indices, features.seq_len[indices].astype(int))
    assert inside[-1] is False


def test_a_signal_during_the_warm_up_stops_it_and_propagates(features) -> None:
    # The harness turns SIGTERM into Interrupted (an Exception) in the main thread; the warm-up must not
    # swallow it as an engine error (the run would go on and never be marked interrupted), and its threads
    # stop after their current call.
    from orchestrator.harness.run import Interrupted

    def on_term(signum: int, _frame: object) -> None:
        raise Interrupted(signum)

    buckets = list(range(32, 385, 32))
    engine = _engine(instances="2", buckets=",".join(map(str, buckets)), shape_cost="1", delay_s="0.5")
    sut = _sut(features, engine, batch_size=2)
    previous = signal.signal(signal.SIGTERM, on_term)
    timer = threading.Timer(0.25, signal.pthread_kill, (threading.main_thread().ident, signal.SIGTERM))
    timer.start()
    try:
        with pytest.raises(Interrupted, match="SIGTERM"):
            sut.warm_up()
    finally:
        timer.cancel()
        signal.signal(signal.SIGTERM, previous)
    widths = {pick_length(int(n), buckets) for n in features.seq_len}
    assert len(widths) >= 3
    assert len(engine.calls) < 2 * len(widths)  # stopped early (2 calls, one per instance), not every width


def test_an_engine_error_in_the_warm_up_is_logged_and_the_run_goes_on(features, caplog) -> None:
    engine = _engine(instances="2", fail_at_batch="1")
    sut = _sut(features, engine)
    with caplog.at_level("WARNING"):
        sut.warm_up()  # does not raise: the measured run reports engine failures itself
    assert "warm-up call failed" in caplog.text


def test_each_worker_passes_its_own_instance(features) -> None:
    engine = _engine(instances="2")
    sut = _sut(features, engine)
    sut.warm_up()  # one call per instance; InstantEngine asserts 0 <= instance < instance_count
    assert sut.instances == 2 and len(engine.calls) == 2
    indices = np.array([1, 3])
    sut._infer_into(sut._workers[1], indices, features.seq_len[indices].astype(int))
    with pytest.raises(AssertionError):  # an instance the engine does not have is refused by it
        engine.infer(*(np.zeros((1, 8), np.int64),) * 3, instance=2)


def test_cost_model_learns_the_time_per_token() -> None:
    model = CostModel(alpha=0.5)
    assert model.predict(4, 100) == 0.0  # nothing known yet: never wait on a guess
    model.observe(2, 100, 0.02)  # 100 us per token
    assert model.predict(4, 100) == pytest.approx(0.04)
    model.observe(1, 100, 0.03)  # 300 us per token: the average moves halfway
    assert model.predict(1, 100) == pytest.approx(0.02)


def test_engine_without_a_384_bucket_is_rejected(features) -> None:
    with pytest.raises(ConfigError, match="largest sequence bucket is 256"):
        _sut(features, _engine(buckets="128,256"))


def test_qsl_load_builds_views_and_unload_drops_them(features) -> None:
    qsl = SampleLibrary(features, 10, 10833)
    assert qsl.performance_count == 10
    qsl.load_samples([2, 4])
    s = qsl.sample(4)
    assert np.shares_memory(s.input_ids, features.input_ids)
    assert s.seq_len == int(features.seq_len[4])
    qsl.unload_samples([4])
    assert qsl.loaded_count == 1
    with pytest.raises(KeyError):
        qsl.sample(4)


def test_qsl_counts_per_mode(features, tmp_path: Path) -> None:
    spec = make_spec(tmp_path / "run", tmp_path / "f.npz", test_query_count=12)
    acc = SampleLibrary.for_mode(features, spec, "accuracy")
    perf = SampleLibrary.for_mode(features, spec, "performance")
    assert (acc.total_count, acc.performance_count) == (12, 12)
    assert (perf.total_count, perf.performance_count) == (64, 64)  # 10,833 capped at the 64 features here
    valid = spec.model_copy(update={"execution_mode": "valid"})
    assert SampleLibrary.for_mode(features, valid, "accuracy").total_count == 64


def test_features_file_problems_are_named(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="does not exist"):
        load_feature_arrays(tmp_path / "missing.npz")
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip file at all")
    with pytest.raises(DatasetError, match="cannot be read"):
        load_feature_arrays(junk)
    partial = tmp_path / "partial.npz"
    np.savez(partial, input_ids=np.zeros((2, 384), np.int32))
    with pytest.raises(DatasetError, match="missing input_mask, segment_ids, seq_len"):
        load_feature_arrays(partial)
    bad = tmp_path / "bad_mask.npz"
    mask = np.zeros((2, 384), np.int8)
    mask[:, :10] = 1
    np.savez(
        bad,
        input_ids=np.zeros((2, 384), np.int32),
        input_mask=mask,
        segment_ids=mask,
        seq_len=np.array([10, 12], np.int16),
    )
    with pytest.raises(DatasetError, match="input_mask of feature 1"):
        load_feature_arrays(bad)


def test_server_batches_what_arrives_within_the_latency_budget(tmp_path: Path) -> None:
    """Real LoadGen Server run (Poisson arrivals at 400/s) with an engine that takes 10 ms a call: the
    worker batches the samples that arrive while it runs (far fewer engine calls than samples), and the
    99th-percentile latency stays within bert's 130 ms bound."""
    from harness_support import FAKE_ENGINE, run_harness

    from orchestrator.loadgen_logs import parse_performance

    features = write_features(tmp_path / "features.npz", count=512)
    record = tmp_path / "calls.jsonl"
    run_dir = tmp_path / "run"
    make_spec(
        run_dir,
        features,
        engine_class=FAKE_ENGINE,
        scenario="Server",
        modes=["performance"],
        test_query_count=400,
        target_qps=400.0,
        batch_size=16,
        engine_options={"delay_s": "0.01", "record": str(record)},
    )
    code, stderr, _ = run_harness(run_dir)
    assert code == 0, stderr
    calls = [json.loads(line) for line in record.read_text().splitlines()][1:]  # the first is the warm-up
    rows = [c[0] for c in calls]
    assert sum(rows) == 400
    assert len(calls) < 200 and max(rows) > 1 and max(rows) <= 16
    perf = parse_performance(run_dir / "performance" / "run_1")
    assert perf.samples_issued == 400
    assert perf.latency_percentiles_ms["99"] < 130


def test_worker_cpu_sets_keep_hyperthread_siblings_together(tmp_path: Path) -> None:
    from orchestrator.harness.cpu import physical_core_count, worker_cpu_sets

    # 4 cores x 2 hyper-threads: CPU n and n+4 are siblings (the usual Linux numbering).
    for cpu in range(8):
        topo = tmp_path / f"cpu{cpu}" / "topology"
        topo.mkdir(parents=True)
        (topo / "physical_package_id").write_text("0\n")
        (topo / "core_id").write_text(f"{cpu % 4}\n")
    assert physical_core_count(list(range(8)), tmp_path) == 4
    assert worker_cpu_sets(2, list(range(8)), tmp_path) == [{0, 4, 1, 5}, {2, 6, 3, 7}]
    assert worker_cpu_sets(3, list(range(8)), tmp_path) == [{0, 4, 1, 5}, {2, 6}, {3, 7}]
    assert worker_cpu_sets(5, list(range(8)), tmp_path) is None  # more workers than cores: not pinned
    assert worker_cpu_sets(2, [0, 1], tmp_path / "nowhere") == [{0}, {1}]  # unreadable topology: CPUs


def test_offline_workers_run_pinned_and_the_loadgen_thread_is_restored(features, monkeypatch) -> None:
    import os
    import threading

    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        pytest.skip("pinning two workers needs two CPUs")
    engine = _engine(instances="2")
    sut = _sut(features, engine)
    assert sut.worker_cpus is not None and len(sut.worker_cpus) == 2
    assert not sut.worker_cpus[0] & sut.worker_cpus[1]
    seen: list[tuple[int, frozenset[int], str]] = []
    lock = threading.Lock()

    def run_batch(worker, ids, indices, slots) -> None:  # in place of inference + QuerySamplesComplete
        with lock:
            seen.append((worker.instance, frozenset(os.sched_getaffinity(0)), threading.current_thread().name))

    monkeypatch.setattr(sut, "_run_batch", run_batch)
    before = os.sched_getaffinity(0)
    sut._process(np.arange(32, dtype=np.uint64), np.arange(32, dtype=np.int64))
    assert os.sched_getaffinity(0) == before  # LoadGen's thread (worker 0) gets its CPUs back
    assert len(seen) == 8 and {w for w, _, _ in seen} <= {0, 1}
    for instance, affinity, _ in seen:
        assert affinity == frozenset(sut.worker_cpus[instance])
    unpinned = BertSUT(engine, sut.qsl, scenario="Offline", batch_size=4, pin_workers=False)
    assert unpinned.worker_cpus is None
