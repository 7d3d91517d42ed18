"""int8 variants: the quantization itself (harness side, real onnxruntime, a tiny synthetic BERT), the gate
that hands out an int8 model only when its recorded accuracy check passed, and (slow) the real check:
fp32 and int8 demo models through the harness on the same features, the verdict written beside the model."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
from harness_support import MODEL

from orchestrator.assets.synthetic import BertShape, write_synthetic_bert
from orchestrator.errors import ModelError
from orchestrator.harness.engines.onnxruntime_int8 import RECORD_SUFFIX, quantize_int8
from orchestrator.workflows.accuracy_label import CHECK_FILE, check_file
from orchestrator.workflows.int8 import (
    BERT99_RATIO,
    INT8_FILE,
    AccuracyCheck,
    Int8Variant,
    approved_int8,
    check_at_batch,
    make_int8_variant,
    read_check,
    variant_dir,
)

TINY = BertShape(layers=2, hidden=64, heads=4, ffn=128)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_bert(tmp_path_factory.mktemp("tiny") / "tiny-bert.onnx", TINY, seed=5)


def test_quantize_recipes(tiny: Path, tmp_path: Path) -> None:
    import onnxruntime as ort

    out = tmp_path / "tiny.int8.onnx"
    record = quantize_int8(tiny, out)
    assert out.is_file() and out.stat().st_size < tiny.stat().st_size / 2
    # Every weight MatMul: per layer Q, K, V, attention out, FFN in, FFN out; and the QA head.
    assert record["int8_ops"]["MatMulInteger"] == 6 * TINY.layers + 1 and record["kept_fp32"] == []
    assert record["weights"] == "int8 per channel" and record["recipe"] == "all"
    assert (
        json.loads((tmp_path / ("tiny.int8.onnx" + RECORD_SUFFIX)).read_text())["int8_sha256"] == record["int8_sha256"]
    )
    careful = quantize_int8(tiny, tmp_path / "careful.onnx", recipe="ffn-out-fp32")
    assert len(careful["kept_fp32"]) == TINY.layers + 1  # each FFN output and the QA head, read from the graph
    assert careful["int8_ops"]["MatMulInteger"] == 5 * TINY.layers
    fused = quantize_int8(tiny, tmp_path / "fused.onnx", fuse=True, optimized_cache_dir=tmp_path / "optimized")
    assert fused["int8_ops"]["QAttention"] == TINY.layers
    # They run, and stay close to the fp32 model (random weights: a closeness check, not an accuracy one).
    ids = np.full((2, 16), 2000, np.int64)
    ids[:, 0] = 101
    feeds = {"input_ids": ids, "input_mask": np.ones_like(ids), "segment_ids": np.zeros_like(ids)}
    want = ort.InferenceSession(str(tiny), providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    for model in (out, tmp_path / "careful.onnx", tmp_path / "fused.onnx"):
        got = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"]).run(None, feeds)[0]
        assert np.corrcoef(want.ravel(), got.ravel())[0, 1] > 0.95, model.name
    with pytest.raises(ModelError, match="already quantized"):
        quantize_int8(MODEL, tmp_path / "again.onnx")
    with pytest.raises(ModelError, match="unknown quantization recipe"):
        quantize_int8(tiny, tmp_path / "x.onnx", recipe="fast")


def _check(int8: Path, passed: bool, sha: str) -> AccuracyCheck:
    return AccuracyCheck(
        fp32_f1=80.0,
        int8_f1=79.5 if passed else 78.0,
        fp32_exact_match=70.0,
        int8_exact_match=69.0,
        ratio=0.99375 if passed else 0.975,
        threshold=BERT99_RATIO,
        passed=passed,
        features=100,
        questions=98,
        fp32_model="fp32.onnx",
        int8_model=str(int8),
        int8_sha256=sha,
        fp32_run="a",
        int8_run="b",
    )


@pytest.mark.usefixtures("zen4_cpu")  # the class of CPU _check's records name
def test_the_gate_hands_out_only_a_checked_and_passed_int8(tiny: Path, tmp_path: Path) -> None:
    from orchestrator.assets.hashing import cached_sha256

    cache = tmp_path / "cache"
    directory = variant_dir(tiny, cache)
    assert approved_int8(tiny, cache) is None  # nothing made yet
    directory.mkdir(parents=True)
    int8 = directory / INT8_FILE
    int8.write_bytes(b"pretend int8 model")
    assert approved_int8(tiny, cache) is None  # made, never checked
    (directory / CHECK_FILE).write_text(json.dumps(asdict(_check(int8, False, cached_sha256(int8)))))
    assert approved_int8(tiny, cache) is None  # checked, failed
    (directory / CHECK_FILE).write_text(json.dumps(asdict(_check(int8, True, cached_sha256(int8)))))
    assert approved_int8(tiny, cache) == int8  # checked, passed
    assert read_check(directory).passed  # type: ignore[union-attr]
    (directory / CHECK_FILE).write_text(json.dumps(asdict(_check(int8, True, "0" * 64))))
    assert approved_int8(tiny, cache) is None  # the check was about another file
    assert variant_dir(tiny, cache, per_channel=False) != directory
    assert variant_dir(tiny, cache, recipe="ffn-out-fp32") != directory


@pytest.mark.usefixtures("zen4_cpu")  # the class of CPU _check's records name
def test_a_check_holds_for_its_batch_size_and_is_redone_at_another(
    tiny: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Dynamic int8 picks activation scales per batch: a verdict at batch 2 says nothing of batch 8. The runs
    are replaced by a stand-in here (the real ones: the slow test below)."""
    import orchestrator.workflows.int8 as quantize_module
    from orchestrator.assets.hashing import cached_sha256

    cache = tmp_path / "cache"
    directory = variant_dir(tiny, cache)
    directory.mkdir(parents=True)
    int8 = directory / INT8_FILE
    int8.write_bytes(b"pretend int8 model")
    runs: list[tuple[int, object]] = []

    def fake_check(
        fp32: Path, model: Path, *, batch_size: int, fp32_result: object = None, **kw: object
    ) -> AccuracyCheck:
        runs.append((batch_size, fp32_result))
        check = _check(model, batch_size != 8, cached_sha256(model))
        check.batch_size = batch_size
        return check

    monkeypatch.setattr(quantize_module, "check_accuracy", fake_check)
    monkeypatch.setattr(quantize_module, "quantize", lambda *a, **kw: pytest.fail("the int8 file exists"))
    variant = make_int8_variant(
        tiny, cache_dir=cache, output_dir=tmp_path / "runs", samples=100, batch_size=2, recipes=("all",)
    )
    assert variant.approved and variant.check is not None and variant.check.batch_size == 2 and runs == [(2, None)]
    assert read_check(directory, 2) == variant.check == read_check(directory)
    assert check_at_batch(variant, tiny, 2, cache_dir=cache, output_dir=tmp_path, samples=100) is variant.check
    at8 = check_at_batch(variant, tiny, 8, cache_dir=cache, output_dir=tmp_path, samples=100)
    assert not at8.passed and at8.batch_size == 8 and len(runs) == 2
    assert runs[1][1] is not None  # the fp32 side is the first check's, not run again
    assert (directory / check_file(batch_size=8)).is_file() and read_check(directory) == variant.check
    again = check_at_batch(variant, tiny, 8, cache_dir=cache, output_dir=tmp_path, samples=100)
    assert again == at8 and len(runs) == 2  # recorded, reused
    # Asked for the first check at another batch size, the variant's check runs again.
    make_int8_variant(tiny, cache_dir=cache, output_dir=tmp_path / "runs", samples=100, batch_size=4, recipes=("all",))
    assert [b for b, _ in runs] == [2, 8, 4] and read_check(directory).batch_size == 4  # type: ignore[union-attr]
    with pytest.raises(Exception, match="no accuracy check"):
        check_at_batch(Int8Variant(path=int8, check=None), tiny, 8, cache_dir=cache, output_dir=tmp_path)


@pytest.mark.slow
def test_real_accuracy_check_is_recorded(tmp_path: Path, shared_assets: Path) -> None:
    fp32 = shared_assets / "models" / "demo-minilm-l6-squad.fp32.onnx"
    if not fp32.is_file():
        pytest.skip(f"{fp32} is not present")
    cache = tmp_path / "cache"
    variant = make_int8_variant(fp32, cache_dir=cache, output_dir=tmp_path / "runs", samples=48, batch_size=16)
    check = variant.check
    assert check is not None and variant.path.is_file()
    recorded = read_check(variant.path.parent)
    assert recorded == check and check.recipe in ("all", "ffn-out-fp32")
    assert check.features == 48 and check.questions > 40
    assert check.passed == (check.int8_f1 >= BERT99_RATIO * check.fp32_f1)
    assert check.fp32_f1 > 50  # a real model answering
    for run in (check.fp32_run, check.int8_run):
        record = json.loads((Path(run) / "run.json").read_text())
        assert record["status"] == "succeeded" and record["config"]["test_query_count"] == 48
    # The gate agrees with the recorded verdict.
    assert (approved_int8(fp32, cache) == variant.path) == check.passed
    # At another batch size the int8 model runs again (the fp32 figures are the first check's).
    assert check.batch_size == 16
    at2 = check_at_batch(variant, fp32, 2, cache_dir=cache, output_dir=tmp_path / "runs", samples=48)
    assert at2.batch_size == 2 and at2.fp32_f1 == check.fp32_f1 and at2.int8_run != check.int8_run
    assert json.loads((Path(at2.int8_run) / "run.json").read_text())["config"]["batch_size"] == 2
    assert at2.passed == (at2.int8_f1 >= BERT99_RATIO * at2.fp32_f1)


def test_bad_fp32_models_are_one_sentence_and_leave_no_cache_entry(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    with pytest.raises(ModelError, match="does not exist; pass an existing ONNX file"):
        make_int8_variant(tmp_path / "nope.onnx", cache_dir=cache, output_dir=tmp_path / "runs")
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"not a model")
    with pytest.raises(ModelError, match="quantizing corrupt.onnx failed .*check that it is an fp32 ONNX model"):
        make_int8_variant(corrupt, cache_dir=cache, output_dir=tmp_path / "runs")
    assert not (cache / "quantized").exists()  # no empty or partial variant, nor the folder made for it
    # The quantizer's own sentence comes through as it is, without the child's log prefix (time, level, logger).
    with pytest.raises(ModelError) as caught:
        make_int8_variant(MODEL, cache_dir=cache, output_dir=tmp_path / "runs")
    assert str(caught.value).startswith(f"{MODEL.name} is already quantized (") and "ERROR" not in str(caught.value)
    assert not (cache / "quantized").exists()
