"""Transformer fusions (orchestrator/harness/engines/onnxruntime_fusions.py) and the ONNX Runtime engine that uses them: real
onnxruntime on a tiny synthetic BERT (2 layers, hidden 64) built here, the embedded int8 demo model, and
(slow) the fp32 demo model through the harness: reference SUT on the raw graph against the optimized SUT
on the fused graph, logits of real tokens equal within float rounding."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import numpy as np
import pytest
from harness_support import MODEL, logits_of, make_spec, run_harness, write_features

from orchestrator.assets.synthetic import BertShape, write_synthetic_bert
from orchestrator.errors import ConfigError, ModelError
from orchestrator.harness.engines.onnxruntime import OnnxRuntimeEngine
from orchestrator.harness.engines.onnxruntime_fusions import (
    MODEL_FILE,
    RECORD_FILE,
    OptimizeOptions,
    cache_key,
    default_fusions,
    detect_attention_shape,
    file_sha256,
    optimize_cached,
)

TINY = BertShape(layers=2, hidden=64, heads=4, ffn=128, vocab=30522)
CPU = "CPUExecutionProvider"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_bert(tmp_path_factory.mktemp("tiny") / "tiny-bert.onnx", TINY, seed=3)


def _inputs(rows: int, width: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows of different real lengths, zero-padded after them (mask 0), as the SUT sends them."""
    rng = np.random.default_rng(seed)
    ids = np.zeros((rows, width), np.int64)
    mask = np.zeros((rows, width), np.int64)
    seg = np.zeros((rows, width), np.int64)
    for r in range(rows):
        n = int(rng.integers(width // 2, width + 1))
        ids[r, :n] = rng.integers(1000, 29000, n)
        ids[r, 0], ids[r, n - 1] = 101, 102
        mask[r, :n] = 1
        seg[r, n // 2 : n] = 1
    return ids, mask, seg


def _engine(model: Path, **options: str) -> OnnxRuntimeEngine:
    return OnnxRuntimeEngine(str(model), device="cpu", batch_size=4, threads=1, execution_provider=CPU, options=options)


def test_detects_heads_and_hidden_size(tiny: Path) -> None:
    import onnx

    assert detect_attention_shape(onnx.load(str(tiny))) == (4, 64)
    # A recent PyTorch export builds the head shape with Concat([..., -1, 32]): the demo int8 model.
    assert detect_attention_shape(onnx.load(str(MODEL))) == (12, 384)


def test_fuses_once_then_reads_the_cache(tiny: Path, tmp_path: Path) -> None:
    cache = tmp_path / "optimized"
    first = optimize_cached(tiny, cache)
    assert first.changed and not first.cache_hit and first.reason == "fused"
    assert first.fused["Attention"] == TINY.layers
    assert first.fused["SkipLayerNormalization"] == 2 * TINY.layers
    assert first.fused["BiasGelu"] == TINY.layers and first.fused["EmbedLayerNormalization"] == 1
    assert first.path.name == MODEL_FILE and first.path.is_file()
    record = json.loads((first.path.parent / RECORD_FILE).read_text())
    assert record["source_sha256"] == file_sha256(tiny) and record["num_heads"] == 4
    assert record["nodes_after"] < record["nodes_before"]
    mtime = first.path.stat().st_mtime_ns
    again = optimize_cached(tiny, cache)
    assert again.cache_hit and again.path == first.path and again.path.stat().st_mtime_ns == mtime
    # Nothing half-written is left beside the entry.
    assert sorted(p.name for p in cache.iterdir() if not p.name.startswith("sha256")) == [first.path.parent.name]


def test_the_key_covers_model_version_and_options() -> None:
    base = cache_key("a" * 64, "1.20.0", OptimizeOptions())
    assert base != cache_key("b" * 64, "1.20.0", OptimizeOptions())
    assert base != cache_key("a" * 64, "1.21.0", OptimizeOptions())
    assert base != cache_key("a" * 64, "1.20.0", OptimizeOptions(num_heads=16, hidden_size=1024))
    assert base != cache_key("a" * 64, "1.20.0", OptimizeOptions(fusions="onnxruntime"))
    assert cache_key("a" * 64, "1.20.0", OptimizeOptions(fusions="onnxruntime")) != cache_key(
        "a" * 64, "1.20.0", OptimizeOptions(fusions="onnxruntime", provider="CUDAExecutionProvider")
    )


def test_onnxruntime_recipe_saves_onnxruntimes_own_cpu_fusions(tiny: Path, tmp_path: Path) -> None:
    """The CPU recipe: ONNX Runtime's ORT_ENABLE_EXTENDED fusions, saved once and read back from the cache."""
    import onnx

    cache = tmp_path / "optimized"
    first = optimize_cached(tiny, cache, OptimizeOptions(fusions="onnxruntime"))
    assert first.changed and first.fusions == "onnxruntime" and not first.cache_hit
    ops = {n.op_type for n in onnx.load(str(first.path)).graph.node}
    assert "LayerNormalization" in ops and ops & {"BiasGelu", "Gelu"}, ops
    assert "SkipLayerNormalization" not in ops  # the slow CPU kernel of the transformers recipe
    assert first.fused["LayerNormalization"] > 0
    record = json.loads((first.path.parent / RECORD_FILE).read_text())
    assert record["fusions"] == "onnxruntime" and record["options"]["provider"] == CPU
    again = optimize_cached(tiny, cache, OptimizeOptions(fusions="onnxruntime"))
    assert again.cache_hit and again.path == first.path
    other = optimize_cached(tiny, cache, OptimizeOptions(fusions="transformers"))
    assert other.path != first.path and other.fusions == "transformers" and other.fused["Attention"] == TINY.layers


def test_fusions_follow_the_provider_unless_told(tiny: Path, tmp_path: Path) -> None:
    assert default_fusions(CPU) == "onnxruntime"
    assert default_fusions("CUDAExecutionProvider") == "transformers"
    engine = _engine(tiny, optimized_cache_dir=str(tmp_path / "o"))
    assert engine.optimization is not None and engine.optimization.fusions == "onnxruntime"
    told = _engine(tiny, fusions="transformers", optimized_cache_dir=str(tmp_path / "o"))
    assert told.optimization is not None and told.optimization.fusions == "transformers"
    with pytest.raises(ConfigError, match="fusions='fastest' is not one of auto, onnxruntime, transformers"):
        _engine(tiny, fusions="fastest", optimized_cache_dir=str(tmp_path / "o"))


def test_concurrent_builders_end_with_one_complete_entry(tiny: Path, tmp_path: Path) -> None:
    cache = tmp_path / "optimized"
    results = []
    threads = [threading.Thread(target=lambda: results.append(optimize_cached(tiny, cache))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 2 and results[0].path == results[1].path and results[0].path.is_file()
    assert not [p for p in cache.iterdir() if ".tmp-" in p.name]


def test_quantized_and_foreign_models_are_left_as_they_are(tmp_path: Path) -> None:
    result = optimize_cached(MODEL, tmp_path / "optimized")
    assert not result.changed and result.path == MODEL and "already quantized" in result.reason
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(np.random.default_rng(0).bytes(2048))
    with pytest.raises(ModelError, match="cannot load"):
        optimize_cached(junk, tmp_path / "optimized")


@pytest.mark.parametrize("fusions", ["onnxruntime", "transformers"])
def test_fused_engine_gives_the_logits_of_the_raw_graph(tiny: Path, tmp_path: Path, fusions: str) -> None:
    raw = _engine(tiny, optimize="none")
    fused = _engine(tiny, optimized_cache_dir=str(tmp_path / "optimized"), fusions=fusions)
    assert fused.optimization is not None and fused.optimization.changed
    assert fused.optimization.fusions == fusions
    assert raw.optimization is None
    ids, mask, seg = _inputs(3, 40)
    want_start, want_end = raw.infer(ids, mask, seg)
    got_start, got_end = fused.infer(ids, mask, seg)
    real = mask.astype(bool)
    np.testing.assert_allclose(got_start[real], want_start[real], atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(got_end[real], want_end[real], atol=1e-4, rtol=1e-4)


def test_io_binding_reuses_its_output_buffers(tiny: Path, tmp_path: Path) -> None:
    engine = _engine(tiny, optimized_cache_dir=str(tmp_path / "optimized"))
    first_start, _ = engine.infer(*_inputs(4, 32, seed=1))
    address = first_start.ctypes.data
    second_start, second_end = engine.infer(*_inputs(2, 24, seed=2))  # smaller: the same memory
    assert second_start.shape == second_end.shape == (2, 24)
    assert second_start.ctypes.data == address
    bigger, _ = engine.infer(*_inputs(8, 48, seed=3))  # larger: grown once
    assert bigger.shape == (8, 48) and np.isfinite(bigger).all()


def test_instances_and_options(tiny: Path, tmp_path: Path) -> None:
    engine = OnnxRuntimeEngine(
        str(tiny),
        device="cpu",
        batch_size=4,
        threads=2,
        execution_provider=CPU,
        options={"instances": "2", "optimized_cache_dir": str(tmp_path / "o")},
    )
    assert engine.instance_count == 2 and engine.threads_per_instance == 1
    ids, mask, seg = _inputs(2, 16)
    a = engine.infer(ids, mask, seg, instance=0)[0].copy()
    b = engine.infer(ids, mask, seg, instance=1)[0]
    np.testing.assert_allclose(a, b, atol=1e-6)
    with pytest.raises(ConfigError, match="unknown onnxruntime engine option 'bogus'"):
        _engine(tiny, bogus="1")
    with pytest.raises(ConfigError, match="optimize='fast'"):
        _engine(tiny, optimize="fast")
    with pytest.raises(ConfigError, match="instances"):
        _engine(tiny, instances="0")
    with pytest.raises(ConfigError, match="instances='many' is not auto or a whole number of at least 1"):
        _engine(tiny, instances="many")


def test_auto_instances_one_per_thread_as_memory_allows(tiny: Path, tmp_path: Path) -> None:
    from orchestrator.harness.engines.onnxruntime import auto_instance_count

    size = tiny.stat().st_size
    assert auto_instance_count(tiny, CPU, 4, available_bytes=100 * size) == 4
    assert auto_instance_count(tiny, CPU, 4, available_bytes=int(5.1 * size)) == 1  # 0.8 x 5.1 / 2.5 = 1.6
    assert auto_instance_count(tiny, CPU, 4, available_bytes=0) == 1
    assert auto_instance_count(tiny, CPU, 1, available_bytes=100 * size) == 1
    assert auto_instance_count(tiny, "CUDAExecutionProvider", 4, available_bytes=100 * size) == 1
    engine = OnnxRuntimeEngine(
        str(tiny),
        device="cpu",
        batch_size=4,
        threads=2,
        execution_provider=CPU,
        options={"instances": "auto", "optimized_cache_dir": str(tmp_path / "o")},
    )
    assert engine.instance_count == 2 and engine.threads_per_instance == 1
    assert engine.settings()["instances"] == "2 (auto)"


def test_available_memory_reads_meminfo_and_the_cgroup_limit(tmp_path: Path) -> None:
    from orchestrator.harness.cpu import available_memory_bytes

    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       24000000 kB\nMemAvailable:   20000000 kB\n")
    cgroup = tmp_path / "cgroup"
    cgroup.mkdir()
    assert available_memory_bytes(meminfo, cgroup) == 20000000 * 1024
    (cgroup / "memory.max").write_text("4294967296\n")
    (cgroup / "memory.current").write_text("1073741824\n")
    assert available_memory_bytes(meminfo, cgroup) == 3 * 2**30  # the container's limit leaves less
    (cgroup / "memory.max").write_text("max\n")
    assert available_memory_bytes(meminfo, cgroup) == 20000000 * 1024
    assert available_memory_bytes(tmp_path / "none", tmp_path / "none") is None


def test_without_a_cache_dir_the_fused_model_is_temporary(tiny: Path) -> None:
    engine = _engine(tiny)
    assert engine.optimization is not None and engine.optimization.changed
    built = engine.optimization.path
    assert built.is_file()
    engine.close()
    assert not built.exists()


@pytest.mark.slow
def test_reference_raw_and_optimized_fused_logits_agree_fp32(tmp_path: Path, shared_assets: Path) -> None:
    """Through the harness with real LoadGen: the reference SUT on the raw graph (batch 1, padded to 384),
    the optimized SUT on the fused graph (length-sorted batches cut to the longest row): the logits of the
    real tokens agree within float rounding, and the responses keep the standard layout."""
    model = shared_assets / "models" / "demo-minilm-l6-squad.fp32.onnx"
    if not model.is_file():
        pytest.skip(f"{model} is not present")
    features = write_features(tmp_path / "features.npz", count=64)
    with np.load(features) as z:
        seq_len = z["seq_len"].astype(int)
    runs = {
        "reference": {"optimize": "none"},
        "optimized": {"optimized_cache_dir": str(tmp_path / "optimized")},
    }
    logits: dict[str, dict[int, np.ndarray]] = {}
    for kind, options in runs.items():
        run_dir = tmp_path / kind
        make_spec(
            run_dir,
            features,
            sut=kind,
            modes=["accuracy"],
            test_query_count=24,
            batch_size=8,
            model_path=str(model),
            engine_options=options,
        )
        code, stderr, _ = run_harness(run_dir)
        assert code == 0, stderr
        entries = json.loads((run_dir / "accuracy" / "mlperf_log_accuracy.json").read_text())
        logits[kind] = {e["qsl_idx"]: logits_of(e) for e in entries}
    assert any((tmp_path / "optimized").glob(f"*/{MODEL_FILE}")), "the optimized run did not use the fused graph"
    for i in range(24):
        ref, opt = logits["reference"][i], logits["optimized"][i]
        assert ref.shape == (384, 2) and opt.shape == (seq_len[i], 2)
        np.testing.assert_allclose(opt, ref[: seq_len[i]], atol=2e-4, rtol=1e-4)
