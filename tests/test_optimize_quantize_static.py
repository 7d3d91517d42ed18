"""Static (QDQ) int8 recipes: the quantization itself (harness side, real onnxruntime, a tiny synthetic BERT,
calibrated on a few made-up feature rows), the cache key (the calibration set's sha256 and the recipe), the
order `tune --int8 --calibration` tries recipes in, and (slow) the demo model quantized from the shared train
features and run through the harness, its F1 within 1 point of fp32's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from orchestrator.assets.synthetic import BertShape, write_synthetic_bert
from orchestrator.errors import ModelError
from orchestrator.harness.cpu import INT8_DOT_PRODUCTS
from orchestrator.harness.engines.onnxruntime_int8 import FeatureReader, activation_matmuls, quantize_int8
from orchestrator.workflows import int8
from orchestrator.workflows.int8 import AccuracyCheck, make_int8_variant, variant_dir

TINY = BertShape(layers=2, hidden=64, heads=4, ffn=128)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_bert(tmp_path_factory.mktemp("tiny") / "tiny-bert.onnx", TINY, seed=5)


def _calibration(path: Path, rows: int = 20, seed: int = 0) -> Path:
    """A calibration .npz as orchestrator/workflows/calibration.py writes it: [rows, 384], zero-padded."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(8, 40, rows)
    ids = np.zeros((rows, 384), np.int32)
    mask = np.zeros((rows, 384), np.int8)
    for r, n in enumerate(lengths):
        ids[r, :n] = rng.integers(1000, 3000, n)
        ids[r, 0] = 101
        mask[r, :n] = 1
    np.savez(path, input_ids=ids, input_mask=mask, segment_ids=np.zeros_like(mask))
    return path


def test_the_reader_feeds_trimmed_int64_batches(tmp_path: Path) -> None:
    npz = _calibration(tmp_path / "cal.npz", rows=20)
    reader = FeatureReader(npz, ["input_ids", "input_mask", "segment_ids"], batch=8)
    feeds = list(iter(reader.get_next, None))
    assert len(feeds) == len(reader) == 3 and sum(f["input_ids"].shape[0] for f in feeds) == 20
    for feed in feeds:
        assert {v.dtype for v in feed.values()} == {np.dtype(np.int64)}
        width = feed["input_ids"].shape[1]
        assert width < 384 and feed["input_mask"][:, -1].any()  # trimmed to the batch's longest row, no further
    reader.rewind()
    assert reader.get_next() is not None
    # The percentile calibrator's reader: a bounded set, one shape for all (its collector stacks them).
    short = FeatureReader(npz, ["input_ids", "input_mask", "segment_ids"], same_width=True, rows=5, max_length=30)
    shapes = {f["input_ids"].shape for f in iter(short.get_next, None)}
    assert len(short) == 5 and len(shapes) == 1 and next(iter(shapes))[1] <= 30


def test_static_recipes_quantize_and_stay_close(tiny: Path, tmp_path: Path) -> None:
    import onnx
    import onnxruntime as ort

    npz = _calibration(tmp_path / "cal.npz")
    assert len(activation_matmuls(onnx.load(str(tiny)))) == 2 * TINY.layers  # scores and context, per layer
    ids = np.full((2, 16), 2000, np.int64)
    ids[:, 0] = 101
    feeds = {"input_ids": ids, "input_mask": np.ones_like(ids), "segment_ids": np.zeros_like(ids)}
    want = ort.InferenceSession(str(tiny), providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    quantized = {}
    for recipe in int8.STATIC_RECIPES:
        out = tmp_path / f"{recipe}.onnx"
        record = quantize_int8(tiny, out, recipe=recipe, calibration=npz)
        assert record["method"] == "static" and record["recipe"] == recipe
        assert record["calibration_sha256"] and record["weights"] == "int8 per channel"
        model = onnx.load(str(out))
        quantized[recipe] = sum(
            1
            for n in model.graph.node
            if n.op_type == "MatMul" and any(i.endswith("_DequantizeLinear_Output") for i in n.input)
        )
        got = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, feeds)[0]
        assert np.corrcoef(want.ravel(), got.ravel())[0, 1] > 0.95, recipe
    # Weight MatMuls only (6 a layer and the QA head), or the attention ones as well.
    assert quantized == {"static-qdq": 6 * TINY.layers + 1, "static-qdq-attention": 8 * TINY.layers + 1}
    with pytest.raises(ModelError, match="calibrates activation ranges"):
        quantize_int8(tiny, tmp_path / "x.onnx", recipe="static-qdq")


def test_the_key_covers_the_calibration_set_and_the_recipe(tiny: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    a, b = _calibration(tmp_path / "a.npz", seed=1), _calibration(tmp_path / "b.npz", seed=2)
    static = variant_dir(tiny, cache, recipe="static-qdq", calibration=a)
    assert static == variant_dir(tiny, cache, recipe="static-qdq", calibration=a)
    assert static != variant_dir(tiny, cache, recipe="static-qdq", calibration=b)
    assert static != variant_dir(tiny, cache, recipe="static-qdq-attention", calibration=a)
    assert static != variant_dir(tiny, cache, recipe="static-qdq", calibration=a, per_channel=False)
    # Dynamic recipes use no calibration data: their key (and cached, checked variants) does not change.
    assert variant_dir(tiny, cache, recipe="all", calibration=a) == variant_dir(tiny, cache, recipe="all")
    with pytest.raises(ModelError, match="pass --calibration"):
        variant_dir(tiny, cache, recipe="static-qdq")


@pytest.mark.usefixtures("zen4_cpu")  # the class of CPU fake_check's records name
def test_with_calibration_the_static_recipe_is_tried_after_dynamic_all(
    tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`tune --int8 --calibration`: `all` first (the fastest), then static-qdq (0.95x its speed, 99.99% of fp32's
    F1 on the demo model) instead of ffn-out-fp32; without calibration the dynamic recipes only."""
    from orchestrator.assets.hashing import cached_sha256

    npz = _calibration(tmp_path / "cal.npz")
    made: list[tuple[str, Path | None]] = []

    def fake_quantize(model: Path, destination: Path, *, recipe: str, calibration: Path | None, **kw: object) -> dict:
        made.append((recipe, calibration))
        destination.write_bytes(recipe.encode())
        return {}

    def fake_check(fp32: Path, model: Path, *, recipe: str, batch_size: int, **kw: object) -> AccuracyCheck:
        passed = recipe == "static-qdq"  # dynamic `all` misses bert-99, the static one holds it
        return AccuracyCheck(
            80.0, 79.5 if passed else 78.0, 70.0, 69.0, 0.99375 if passed else 0.975, 0.99, passed, 100, 98,
            str(fp32), str(model), cached_sha256(model), "a", "b", recipe, batch_size,
        )  # fmt: skip

    monkeypatch.setattr(int8, "quantize", fake_quantize)
    monkeypatch.setattr(int8, "check_accuracy", fake_check)
    cache = tmp_path / "cache"
    variant = make_int8_variant(tiny, cache_dir=cache, output_dir=tmp_path / "runs", samples=100, calibration=npz)
    assert made == [("all", npz), ("static-qdq", npz)]
    assert variant.approved and variant.check is not None and variant.check.recipe == "static-qdq"
    assert int8.read_check(variant.path.parent) == variant.check  # its accuracy_check.json like the others
    assert int8.approved_int8(tiny, cache, calibration=npz) == variant.path
    assert int8.approved_int8(tiny, cache) is None  # without the calibration set: the dynamic ones only
    made.clear()
    make_int8_variant(tiny, cache_dir=tmp_path / "cache2", output_dir=tmp_path / "runs", samples=100)
    assert [r for r, _ in made] == list(int8.RECIPES)
    with pytest.raises(ModelError, match="pass --calibration"):
        make_int8_variant(tiny, cache_dir=cache, output_dir=tmp_path / "runs", samples=100, recipes=("static-qdq",))


def test_the_tune_command_hands_its_calibration_set_to_the_int8_check(tmp_path: Path) -> None:
    from orchestrator.config import RunConfig

    assert int8.calibration_for(RunConfig(), tmp_path) is None
    with pytest.raises(Exception, match="does not exist"):
        int8.calibration_for(RunConfig(calibration_path=tmp_path / "missing.json.gz"), tmp_path)


@pytest.mark.slow
def test_static_qdq_demo_runs_through_the_harness_within_a_point_of_fp32(tmp_path: Path, shared_assets: Path) -> None:
    from orchestrator.paths import EMBEDDED_VOCAB
    from orchestrator.workflows.calibration import calibration_features

    fp32 = shared_assets / "models" / "demo-minilm-l6-squad.fp32.onnx"
    train = shared_assets / "squad" / "train-v1.1-reconstructed.json.gz"
    if not fp32.is_file() or not train.is_file():
        pytest.skip(f"{fp32} or {train} is not present")
    cache = tmp_path / "cache"
    features = calibration_features(train, EMBEDDED_VOCAB, cache)
    variant = make_int8_variant(
        fp32,
        cache_dir=cache,
        output_dir=tmp_path / "runs",
        samples=100,
        calibration=features,
        recipes=("static-qdq",),
    )
    check = variant.check
    assert check is not None and check.recipe == "static-qdq" and check.features == 100
    assert check.int8_kernels == int8.host_int8_kernels()  # the class of CPU the verdict holds for
    record = (variant.path.parent / (int8.INT8_FILE + ".quantize.json")).read_text()
    assert '"method": "static"' in record and features.name in record
    if check.int8_kernels != INT8_DOT_PRODUCTS:
        # Judged on CPUs with int8 dot products (VNNI/AMX); an AVX2-only EPYC (2026-12-07) lost 2.44 points here
        # (84.133 against 86.575), which the check records and the int8 gate then refuses.
        pytest.skip(f"{check.summary()} on a CPU with {check.int8_kernels}")
    assert check.fp32_f1 > 50 and abs(check.int8_f1 - check.fp32_f1) <= 1.0, check.summary()
