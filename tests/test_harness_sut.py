"""SUT batching and response layout with a fake instant engine (no LoadGen call in this process)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from harness_support import InstantEngine, make_spec, write_features

from orchestrator.errors import ConfigError, DatasetError, RunError
from orchestrator.harness.qsl import SampleLibrary, load_feature_arrays
from orchestrator.harness.sut import BertSUT, pick_length, plan_batches


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
    items = [(1000 + i, i) for i in range(9)]  # 9 samples, batch 4: 4 + 4 + a single leftover
    batches = sut._plan(items)
    assert [len(b) for b in batches] == [4, 4, 1]
    seq_len = features.seq_len
    flat = [idx for b in batches for _, idx in b]
    assert sorted(flat) == list(range(9))
    assert [seq_len[i] for i in flat] == sorted((seq_len[i] for i in range(9)), reverse=True)
    for batch in batches:
        outputs = sut._infer_batch(batch)
        longest = max(int(seq_len[idx]) for _, idx in batch)
        assert engine.calls[-1] == (len(batch), longest)
        for (_, idx), out in zip(batch, outputs, strict=True):
            n = int(seq_len[idx])
            assert out.dtype == np.float32 and out.shape == (n, 2) and out.flags.c_contiguous
            np.testing.assert_array_equal(out[:, 0], features.input_ids[idx, :n].astype(np.float32))
            np.testing.assert_array_equal(out[:, 1], np.arange(n, dtype=np.float32))
    # The input buffers are reused, not reallocated per batch.
    assert len(set(engine.buffers_seen)) == 1
    assert engine.buffers_seen[0] == sut._buffers[0].ctypes.data


def test_reference_runs_batch_1_at_384(features) -> None:
    engine = _engine()
    sut = _sut(features, engine, kind="reference", batch_size=16)
    assert sut.batch_size == 1
    items = [(7, 3), (8, 5)]
    batches = sut._plan(items)
    assert batches == [[(7, 3)], [(8, 5)]]
    out = sut._infer_batch(batches[0])[0]
    assert engine.calls == [(1, 384)]
    assert out.shape == (384, 2)
    np.testing.assert_array_equal(out[:, 0], features.input_ids[3].astype(np.float32))


def test_engine_buckets_and_max_batch_are_respected(features) -> None:
    engine = _engine(buckets="128,256,384", max_batch="3")
    sut = _sut(features, engine, batch_size=16)
    assert sut.batch_size == 3
    items = [(i, i) for i in range(7)]
    for batch in sut._plan(items):
        outputs = sut._infer_batch(batch)
        assert engine.calls[-1][0] == len(batch) <= 3
        assert engine.calls[-1][1] in (128, 256, 384)
        assert engine.calls[-1][1] >= max(int(features.seq_len[i]) for _, i in batch)
        assert [o.shape[0] for o in outputs] == [int(features.seq_len[i]) for _, i in batch]
    assert [c[0] for c in engine.calls] == [3, 3, 1]


def test_multistream_query_is_one_batch_unless_the_engine_caps_it(features) -> None:
    items = [(i, i) for i in range(8)]
    engine = _engine()
    sut = _sut(features, engine, batch_size=2, scenario="MultiStream")
    (batch,) = sut._plan(items)
    outputs = sut._infer_batch(batch)
    assert engine.calls == [(8, max(int(features.seq_len[i]) for i in range(8)))]
    assert [o.shape[0] for o in outputs] == [int(features.seq_len[i]) for _, i in batch]
    capped = _sut(features, _engine(max_batch="3"), batch_size=16, scenario="MultiStream")
    assert [len(b) for b in capped._plan(items)] == [3, 3, 2]


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
    with pytest.raises(DatasetError, match="lacks input_mask, segment_ids, seq_len"):
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
