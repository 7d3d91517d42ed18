"""OpenVINO engine: its options, precision choice and ISA fallback (unit), the real engine in its managed
venv against onnxruntime on real features, and runs through the real harness (slow): parity with
onnxruntime, bf16 and int8 F1 within a point of fp32, and the bad inputs (one sentence, nothing written)."""

from __future__ import annotations

import json
import os
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from cli_support import invoke

from orchestrator.backends import TARGETS
from orchestrator.errors import ConfigError, PreflightError
from orchestrator.harness.cpu import (
    FAKE_FLAGS_ENV,
    INT8_DOT_PRODUCTS,
    Isa,
    cpu_flags,
    detect_isa,
    int8_kernels,
    parse_cpu_flags,
)
from orchestrator.harness.engines.openvino import (
    OpenVinoOptions,
    calibration_items,
    compiled_cache_dir,
    int8_float_precision,
    int8_recipe,
    resolve_precision,
)
from orchestrator.harness.engines.options import parse_engine_options
from orchestrator.paths import PACKAGE_DIR
from orchestrator.workflows.accuracy_label import UNCHECKED, accuracy_check_label

ZEN4 = "flags\t\t: fpu sse avx2 avx512f avx512_bf16 avx512_vnni\n"
SAPPHIRE = "flags\t\t: avx2 avx512f avx512_bf16 avx512_vnni amx_bf16 amx_int8 amx_tile\n"
OLD = "flags\t\t: fpu sse avx2\n"
TRAIN = "train-v1.1-reconstructed.json.gz"


# ---- unit ------------------------------------------------------------------------------------------
def test_registry_entry() -> None:
    t = TARGETS["openvino-cpu"]
    assert t.engine_class == "orchestrator.harness.engines.openvino:OpenVinoEngine"
    assert (t.execution_provider, t.local_env, t.cache_option) == ("CPU", "openvino-cpu", "cache_dir")
    assert t.int8_calibration and t.engine_precisions
    assert ("instances", "auto") in t.offline_options


def test_isa_from_cpuinfo() -> None:
    amx = Isa.from_flags(parse_cpu_flags(SAPPHIRE))
    assert amx.amx_bf16 and amx.amx_int8 and amx.bf16 and amx.int8
    zen4 = Isa.from_flags(parse_cpu_flags(ZEN4))
    assert zen4.bf16 and not zen4.amx_bf16 and zen4.describe() == "avx512_bf16 avx512_vnni avx512f avx2"
    old = Isa.from_flags(parse_cpu_flags(OLD))
    assert not old.bf16 and not old.int8 and old.describe() == "avx2"
    assert Isa.from_flags(None).describe() == "unknown"


def test_fake_flags_force_the_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(FAKE_FLAGS_ENV, "avx2,fma")
    assert cpu_flags() == {"avx2", "fma"}
    assert not detect_isa().bf16


def test_precision_choice_and_fallback() -> None:
    amx = Isa.from_flags(parse_cpu_flags(SAPPHIRE))
    old = Isa.from_flags(parse_cpu_flags(OLD))
    caps = ["FP32", "BF16", "INT8"]
    assert resolve_precision("auto", amx, caps)[0] == "bf16"
    ran, why = resolve_precision("auto", old, caps)
    assert ran == "fp32" and "falling back" in why  # one log line, never a crash
    assert resolve_precision("auto", amx, ["FP32", "INT8"])[0] == "fp32"  # OpenVINO itself says no bf16
    assert resolve_precision("int8", old, caps)[0] == "int8"  # int8 runs anywhere, only slower without VNNI
    with pytest.raises(PreflightError, match=r"precision=bf16 needs a CPU with native bf16.*precision=fp32"):
        resolve_precision("bf16", old, caps)


def test_int8_float_rest_follows_the_cpu() -> None:
    caps = ["FP32", "BF16", "INT8"]
    amx, old = Isa.from_flags(parse_cpu_flags(SAPPHIRE)), Isa.from_flags(parse_cpu_flags(OLD))
    assert int8_float_precision("auto", amx, caps) == "bf16"
    assert int8_float_precision("auto", old, caps) == "fp32"  # no native bf16: falls back, no error
    assert int8_float_precision("fp32", amx, caps) == "fp32"
    with pytest.raises(PreflightError, match=r"^int8_float=bf16 needs a CPU with native bf16.*drop the option"):
        int8_float_precision("bf16", old, caps)


def test_pad_to_gives_the_sut_lengths_in_steps() -> None:
    from orchestrator.harness.engines.openvino import OpenVinoEngine

    engine = OpenVinoEngine.__new__(OpenVinoEngine)  # only the options and shapes matter here
    engine._buckets = None
    engine.opts = parse_engine_options(OpenVinoOptions, {}, "openvino")
    assert engine.opts.pad_to == 16
    steps = engine.seq_buckets()
    assert steps is not None and steps[:2] == [16, 32] and steps[-1] == 384 and len(steps) == 24
    engine.opts = parse_engine_options(OpenVinoOptions, {"pad_to": "1"}, "openvino")
    assert engine.seq_buckets() is None  # every batch at its own length
    engine.opts = parse_engine_options(OpenVinoOptions, {"pad_to": "100"}, "openvino")
    assert engine.seq_buckets() == [100, 200, 300, 384]
    with pytest.raises(ConfigError, match="pad_to=512 is above 384"):
        parse_engine_options(OpenVinoOptions, {"pad_to": "512"}, "openvino")


def test_options() -> None:
    opts = parse_engine_options(OpenVinoOptions, {"precision": "BF16", "instances": "auto"}, "openvino")
    assert (opts.precision, opts.instances, opts.shapes) == ("bf16", "auto", "dynamic")
    with pytest.raises(ConfigError, match="precision='fp8' is not one of auto, fp32, fp16, bf16, int8"):
        parse_engine_options(OpenVinoOptions, {"precision": "fp8"}, "openvino")
    with pytest.raises(ConfigError, match="the openvino engine runs precision auto, fp32, bf16, int8, not 'fp16'"):
        parse_engine_options(OpenVinoOptions, {"precision": "fp16"}, "openvino")
    with pytest.raises(ConfigError, match="buckets='64,128'"):
        parse_engine_options(OpenVinoOptions, {"shapes": "buckets", "buckets": "64,128"}, "openvino")
    assert parse_engine_options(OpenVinoOptions, {}, "openvino").int8_attention == "int8"
    with pytest.raises(ConfigError, match="int8_attention='fp16' is not one of int8, float; pass one of them"):
        parse_engine_options(OpenVinoOptions, {"int8_attention": "fp16"}, "openvino")


def test_float_attention_is_another_recipe() -> None:
    # Another cache key and another numerics (a check of one never covers the other); the default's name is
    # the one existing caches and check records were written under.
    assert int8_recipe("int8") == "nncf-ptq-v1:transformer,mixed,smoothquant=0.95,fast_bias_correction"
    assert int8_recipe("float") == int8_recipe("int8") + ",attention-float"


def test_each_compile_configuration_has_its_own_compiled_cache(tmp_path: Path) -> None:
    """OpenVINO's blob key ignores the precision hint (a bf16 compile loaded the fp32 blob and crashed)."""
    fp32 = {"INFERENCE_PRECISION_HINT": "f32", "NUM_STREAMS": "2"}
    bf16 = {**fp32, "INFERENCE_PRECISION_HINT": "bf16"}
    a = compiled_cache_dir(tmp_path, fp32, "2026.4.1")
    assert a == compiled_cache_dir(tmp_path, dict(reversed(fp32.items())), "2026.4.1")  # stable, order-free
    assert a.parent == tmp_path / "compiled"
    assert len({a, compiled_cache_dir(tmp_path, bf16, "2026.4.1"), compiled_cache_dir(tmp_path, fp32, "2026.5.0")}) == 3


def test_calibration_items_are_a_fixed_trimmed_subset(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    mask = np.zeros((50, 384), np.int8)
    for r in range(50):
        mask[r, : rng.integers(10, 384)] = 1
    ids = (rng.integers(1000, 2000, (50, 384)) * mask).astype(np.int32)
    np.savez(tmp_path / "c.npz", input_ids=ids, input_mask=mask, segment_ids=np.zeros_like(mask))
    a = calibration_items(tmp_path / "c.npz", 20, 0)
    b = calibration_items(tmp_path / "c.npz", 20, 0)
    assert len(a) == 20 and all(np.array_equal(x["input_ids"], y["input_ids"]) for x, y in zip(a, b, strict=True))
    assert all(x["input_ids"].dtype == np.int64 and x["input_mask"].all() for x in a)  # cut to the real length
    with pytest.raises(ConfigError, match="cannot be read"):
        calibration_items(tmp_path / "missing.npz", 20, 0)


def test_accuracy_label(tmp_path: Path) -> None:
    """The label's cases, run.json's fields only (the check store itself: tests/test_accuracy_checks.py)."""
    from test_accuracy_checks import make_record

    def label(settings: dict[str, str], meta: dict[str, object]) -> str | None:
        record = make_record(tmp_path, engine_settings=settings, model_meta=meta)
        return accuracy_check_label(record, tmp_path / "model.onnx")

    assert label({"precision": "fp32"}, {"precision": "fp32"}) is None
    assert label({"precision": "bf16 (auto)"}, {"precision": "fp32"}) == UNCHECKED
    # catalogue-measured, but in onnxruntime (the embedded demo-int8's model card): not OpenVINO's numbers
    assert label({}, {"precision": "int8", "reference_f1": 80.4}) == UNCHECKED
    assert label({}, {"precision": "int8"}) == UNCHECKED  # e.g. a random-weight speed model
    (tmp_path / "accuracy_check.json").write_text(json.dumps({"passed": True}))  # onnxruntime-cpu's verdict
    vnni = {"isa": "avx512_vnni avx512f avx2"}  # the class of CPU a record without int8_kernels was made on
    # An int8 file in OpenVINO needs OpenVINO's own check (tune --int8 --backend openvino; its record's cases:
    # tests/test_accuracy_checks.py), whatever onnxruntime scored with it.
    assert label(vnni, {"precision": "int8"}) == UNCHECKED
    assert label({"isa": "avx2"}, {"precision": "int8"}) == UNCHECKED


# ---- the real engine (its managed venv) ------------------------------------------------------------
PROBE = r"""
import json, sys
import numpy as np
from orchestrator.harness.engines.openvino import OpenVinoEngine
args = json.loads(sys.argv[1])
data = dict(np.load(args["inputs"]))
engine = OpenVinoEngine(args["model"], device="cpu", batch_size=8, threads=2, execution_provider="CPU",
                        options=args["options"])
out = {}
for key in sorted({k.rsplit("_", 1)[0] for k in data}):
    start, end = engine.infer(data[key + "_ids"], data[key + "_mask"], data[key + "_seg"], instance=0)
    out[key + "_start"], out[key + "_end"] = np.array(start), np.array(end)
np.savez(args["outputs"], **out)
print("REPORT " + json.dumps({"provider": engine.execution_provider, "settings": engine.settings(),
                              "versions": engine.versions()}))
"""


def real_batches() -> dict[str, np.ndarray]:
    """Real dev features, as the optimized SUT hands them over: length-sorted groups cut to their longest row."""
    from harness_support import REFERENCE_FEATURES

    with np.load(REFERENCE_FEATURES) as z:
        ids, mask, seg = (z[k].astype(np.int64) for k in ("input_ids", "input_mask", "segment_ids"))
    out: dict[str, np.ndarray] = {}
    for i, (start, rows) in enumerate([(0, 1), (1, 4), (5, 8), (13, 3)]):
        length = int(mask[start : start + rows].sum(1).max())
        for name, a in (("ids", ids), ("mask", mask), ("seg", seg)):
            out[f"b{i}_{name}"] = a[start : start + rows, :length]
    return out


def run_probe(python: Path, model: Path, options: dict[str, str], tmp_path: Path) -> tuple[dict, dict]:  # type: ignore[type-arg]
    inputs = real_batches()
    np.savez(tmp_path / "in.npz", **inputs)
    args = {"model": str(model), "inputs": str(tmp_path / "in.npz"), "outputs": str(tmp_path / "out.npz")}
    env = {k: v for k, v in os.environ.items() if k != FAKE_FLAGS_ENV}
    env["PYTHONPATH"] = str(PACKAGE_DIR.parent)
    proc = subprocess.run(
        [str(python), "-c", PROBE, json.dumps({**args, "options": options})],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    report = json.loads(next(line for line in proc.stdout.splitlines() if line.startswith("REPORT "))[7:])
    return report, {**inputs, **dict(np.load(tmp_path / "out.npz"))}


@pytest.mark.slow
@pytest.mark.parametrize("shapes", ["dynamic", "buckets"])
def test_fp32_logits_equal_onnxruntime(openvino_python: Path, fp32_model: Path, tmp_path: Path, shapes: str) -> None:
    import onnxruntime as ort

    options = {"precision": "fp32", "shapes": shapes, "cache_dir": str(tmp_path / "cache")}
    report, arrays = run_probe(openvino_python, fp32_model, options, tmp_path)
    assert report["provider"] == "CPU" and report["settings"]["precision"] == "fp32"
    assert report["versions"]["openvino"].startswith("2026.4.1")
    assert any((tmp_path / "cache" / "compiled").rglob("*.blob"))  # the compiled model is cached
    session = ort.InferenceSession(str(fp32_model), providers=["CPUExecutionProvider"])
    for i in range(4):
        ids, mask, seg = (arrays[f"b{i}_{k}"] for k in ("ids", "mask", "seg"))
        ref_start, ref_end = session.run(None, {"input_ids": ids, "input_mask": mask, "segment_ids": seg})
        start, end = arrays[f"b{i}_start"], arrays[f"b{i}_end"]
        assert start.shape == ids.shape and start.dtype == np.float32
        real = mask.astype(bool)
        np.testing.assert_allclose(start[real], ref_start[real], atol=2e-3, rtol=0)
        np.testing.assert_allclose(end[real], ref_end[real], atol=2e-3, rtol=0)


@pytest.mark.slow
def test_bf16_after_fp32_in_one_cache(openvino_python: Path, fp32_model: Path, tmp_path: Path) -> None:
    """An fp32 compile then a bf16 compile of the same model with the same cache_dir: both run (with one
    shared CACHE_DIR the bf16 engine loaded the fp32 blob and died of SIGSEGV on a Xeon with AMX)."""
    if not detect_isa().bf16:
        pytest.skip("this CPU has no native bf16")
    cache = str(tmp_path / "cache")
    (tmp_path / "cache" / "compiled").mkdir(parents=True)
    (tmp_path / "cache" / "compiled" / "123.blob").write_bytes(b"a blob of the old shared layout")
    for precision in ("fp32", "bf16", "fp32"):  # the last one loads its own cached blob
        (tmp_path / precision).mkdir(exist_ok=True)
        report, _ = run_probe(
            openvino_python, fp32_model, {"precision": precision, "cache_dir": cache}, tmp_path / precision
        )
        assert report["settings"]["precision"] == precision
    assert len(list((tmp_path / "cache" / "compiled").iterdir())) == 2  # two directories; the old blob is gone


@pytest.mark.slow
def test_a_model_openvino_cannot_read(openvino_python: Path, tmp_path: Path) -> None:
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"\x08\x07this is not a protobuf model" * 10)
    env = dict(os.environ, PYTHONPATH=str(PACKAGE_DIR.parent))
    code = (
        "from orchestrator.harness.engines.openvino import OpenVinoEngine\n"
        "from orchestrator.errors import ModelError\n"
        "try:\n"
        f"    OpenVinoEngine({str(bad)!r}, device='cpu', batch_size=1, threads=1, execution_provider='CPU',"
        f" options={{'cache_dir': {str(tmp_path / 'cache')!r}}})\n"
        "except ModelError as e:\n"
        "    print('ERROR', e)\n"
    )
    proc = subprocess.run([str(openvino_python), "-c", code], capture_output=True, text=True, env=env, check=False)
    line = next(x for x in proc.stdout.splitlines() if x.startswith("ERROR "))
    assert "OpenVINO cannot read broken.onnx as a model" in line and line.count(". ") <= 1
    assert not any((tmp_path / "cache").rglob("*.xml"))


# ---- through the real harness (local runner) --------------------------------------------------------
QUESTIONS = 200


def quantized_activation_matmuls(xml: Path) -> int:
    """How many MatMuls of an OpenVINO IR without a weight input (attention's) take a FakeQuantize'd input,
    looking through layout ops: the IR itself, read on the host as XML."""
    root = ET.parse(xml).getroot()
    types = {layer.get("id"): layer.get("type") for layer in root.iter("layer")}
    sources: dict[str | None, dict[int, str | None]] = {}
    for edge in root.iter("edge"):
        sources.setdefault(edge.get("to-layer"), {})[int(edge.get("to-port") or 0)] = edge.get("from-layer")

    def origin(layer: str | None) -> str | None:
        while types[layer] in ("Transpose", "Reshape", "Squeeze", "Unsqueeze"):
            layer = sources[layer][0]
        return types[layer]

    count = 0
    for layer, kind in types.items():
        if kind != "MatMul":
            continue
        inputs = [origin(sources[layer][port]) for port in (0, 1)]
        weightless = not any(t in ("Constant", "Multiply", "Convert") for t in inputs)  # a weight is dequantized
        count += weightless and "FakeQuantize" in inputs
    return count


def harness_run(tmp_path: Path, model: Path, name: str, *extra: str, cache: Path) -> dict:  # type: ignore[type-arg]
    result = invoke(
        [
            "run",
            "--runner",
            "local",
            "--model-path",
            model,
            "--mode",
            "accuracy",
            "--test-query-count",
            str(QUESTIONS),
            "--output-dir",
            tmp_path / name,
            "--cache-dir",
            cache,
            "--no-progress",
            "--json",
            *extra,
        ]
    )
    assert result.exit_code == 0, result.output[-3000:]
    return dict(json.loads(result.stdout))


@pytest.fixture(scope="module")
def fp32_f1(fp32_model: Path, session_cache: Path, tmp_path_factory: pytest.TempPathFactory) -> float:
    tmp = tmp_path_factory.mktemp("ort")
    record = harness_run(tmp, fp32_model, "ort", "--backend", "onnxruntime", cache=session_cache)
    return float(record["results"]["accuracy"]["f1"])


@pytest.mark.slow
def test_parity_with_onnxruntime_through_the_harness(
    openvino_python: Path, fp32_model: Path, fp32_f1: float, session_cache: Path, tmp_path: Path
) -> None:
    record = harness_run(
        tmp_path, fp32_model, "ov", "--backend", "openvino", "--engine-option", "precision=fp32", cache=session_cache
    )
    assert record["execution_provider"] == "CPU" and record["engine_settings"]["precision"] == "fp32"
    assert record["engine_settings"]["isa"] == detect_isa().describe()
    assert record["accuracy_check"] is None
    assert abs(float(record["results"]["accuracy"]["f1"]) - fp32_f1) < 0.05


@pytest.mark.slow
def test_bf16_f1_within_a_point(
    openvino_python: Path, fp32_model: Path, fp32_f1: float, session_cache: Path, tmp_path: Path
) -> None:
    if not detect_isa().bf16:
        pytest.skip("this CPU has no native bf16")
    record = harness_run(
        tmp_path, fp32_model, "bf16", "--backend", "openvino", "--engine-option", "precision=bf16", cache=session_cache
    )
    assert record["engine_settings"]["precision"] == "bf16"
    assert record["accuracy_check"] == UNCHECKED and record["accuracy_label"] == UNCHECKED
    assert abs(float(record["results"]["accuracy"]["f1"]) - fp32_f1) <= 1.0


@pytest.mark.slow
def test_int8_f1_within_a_point(
    openvino_python: Path, fp32_model: Path, fp32_f1: float, shared_assets: Path, session_cache: Path, tmp_path: Path
) -> None:
    train = shared_assets / "squad" / TRAIN
    if not train.is_file():
        pytest.skip(f"{train} is absent (the reconstructed SQuAD train set)")
    args = ("--backend", "openvino", "--engine-option", "precision=int8", "--calibration", train)
    record = harness_run(tmp_path, fp32_model, "int8", *args, cache=session_cache)
    settings = record["engine_settings"]
    assert settings["precision"] == "int8" and "300 calibration rows" in settings["int8"]
    assert record["accuracy_check"] == UNCHECKED
    (log,) = (tmp_path / "int8").glob("*/harness.log")  # one line where int8 gains nothing (no VNNI or AMX)
    assert ("without int8 dot products" in log.read_text()) == (int8_kernels(settings["isa"]) != INT8_DOT_PRODUCTS)
    int8_dir = session_cache / "engines" / "openvino-cpu" / "int8"
    finished = [p for p in int8_dir.iterdir() if not p.name.startswith(".")]
    assert len(finished) == 1 and (finished[0] / "model.xml").is_file()
    assert settings["int8_model"] == str(finished[0] / "model.xml")  # what benchmarks/profile_openvino.py takes
    assert settings["int8_attention"] == "int8" and quantized_activation_matmuls(finished[0] / "model.xml") > 0
    assert not [p for p in int8_dir.iterdir() if p.name.startswith(".")]  # no staging left behind
    again = harness_run(tmp_path, fp32_model, "int8-again", *args, cache=session_cache)
    assert "cached yes" in again["engine_settings"]["int8"]
    assert again["results"]["accuracy"]["f1"] == record["results"]["accuracy"]["f1"]
    f1 = float(record["results"]["accuracy"]["f1"])
    if int8_kernels(settings["isa"]) != INT8_DOT_PRODUCTS:  # the target is judged on VNNI/AMX
        pytest.skip(f"F1 {f1:.3f} against fp32's {fp32_f1:.3f} on a CPU with {int8_kernels(settings['isa'])}")
    assert abs(f1 - fp32_f1) <= 1.0


@pytest.mark.slow
def test_int8_with_float_attention(
    openvino_python: Path, fp32_model: Path, fp32_f1: float, shared_assets: Path, tmp_path: Path
) -> None:
    """int8_attention=float: the attention MatMuls keep no FakeQuantize, in their own cached IR, named in
    the numerics; F1 within a point of fp32."""
    train = shared_assets / "squad" / TRAIN
    if not train.is_file():
        pytest.skip(f"{train} is absent (the reconstructed SQuAD train set)")
    options = ("--engine-option", "precision=int8", "--engine-option", "int8_attention=float")
    record = harness_run(
        tmp_path,
        fp32_model,
        "int8-float-attention",
        "--backend",
        "openvino",
        *options,
        "--calibration",
        train,
        cache=tmp_path / "cache",
    )
    settings = record["engine_settings"]
    assert settings["int8_attention"] == "float" and settings["numerics"].startswith(int8_recipe("float") + ";")
    assert "12 attention MatMuls left in float" in settings["int8"]
    xml = Path(settings["int8_model"])
    assert xml.is_file() and quantized_activation_matmuls(xml) == 0
    f1 = float(record["results"]["accuracy"]["f1"])
    if int8_kernels(settings["isa"]) != INT8_DOT_PRODUCTS:
        # The accuracy targets are judged on CPUs with int8 dot products (VNNI/AMX); elsewhere the check
        # store labels what it scores (an AVX2-only EPYC, 2026-12-07: 81.996 against fp32's 84.765).
        pytest.skip(f"F1 {f1:.3f} against fp32's {fp32_f1:.3f} on a CPU with {int8_kernels(settings['isa'])}")
    assert abs(f1 - fp32_f1) <= 1.0


@pytest.mark.slow
def test_int8_with_a_bf16_rest_passes_bert99_on_the_full_dev_set(
    openvino_python: Path, fp32_model: Path, shared_assets: Path, session_cache: Path, tmp_path: Path
) -> None:
    """int8_float=bf16 (the faster numerics on AMX) against openvino fp32, all 10,833 dev features: bert-99."""
    train = shared_assets / "squad" / TRAIN
    if not train.is_file():
        pytest.skip(f"{train} is absent (the reconstructed SQuAD train set)")
    if not detect_isa().bf16:
        pytest.skip("this CPU has no native bf16")
    full = ("--test-query-count", "10833")
    fp32 = harness_run(tmp_path, fp32_model, "fp32", "--backend", "openvino", *full, cache=session_cache)
    int8 = ("--engine-option", "precision=int8", "--engine-option", "int8_float=bf16", "--calibration", train)
    record = harness_run(tmp_path, fp32_model, "int8-bf16", "--backend", "openvino", *int8, *full, cache=session_cache)
    assert record["engine_settings"]["int8_float"] == "bf16"
    assert "float rest bf16" in record["engine_settings"]["numerics"]
    f1, reference = (float(r["results"]["accuracy"]["f1"]) for r in (record, fp32))
    assert f1 >= 0.99 * reference, (f1, reference)


@pytest.mark.slow
def test_tune_records_a_passing_check_that_a_later_run_is_labelled_by(
    openvino_python: Path, fp32_model: Path, shared_assets: Path, session_cache: Path, tmp_path: Path
) -> None:
    """tune --precisions int8 checks NNCF int8 against fp32 (real accuracy runs, QUESTIONS features), records
    the verdict in the cache's check store, and a later int8 run of the same model and calibration finds it:
    passed. (int8, not bf16: bf16 must hold bert-99.9, which the demo misses on some subsets.)"""
    train = shared_assets / "squad" / TRAIN
    if not train.is_file():
        pytest.skip(f"{train} is absent (the reconstructed SQuAD train set)")
    cache = tmp_path / "cache"  # its own check store (a passing record would relabel the other tests' runs),
    cache.mkdir()
    for part in ("features", "calibration", "engines"):  # the session's features and int8 model otherwise
        (session_cache / part).mkdir(exist_ok=True)
        (cache / part).symlink_to(session_cache / part)
    int8 = ("--backend", "openvino", "--engine-option", "precision=int8", "--calibration", train)
    result = invoke(
        [
            "tune",
            *int8[:2],
            "--runner",
            "local",
            "--model-path",
            fp32_model,
            "--precisions",
            "int8",
            *int8[4:],
            "--batch-sizes",
            "8",
            "--samples",
            "32",
            "--precision-check-samples",
            str(QUESTIONS),
            "--no-plot",
            "--output-dir",
            tmp_path / "tune",
            "--cache-dir",
            cache,
        ]
    )
    (path,) = (cache / "accuracy_checks").glob("openvino-cpu-int8-*.json")
    check = json.loads(path.read_text())
    assert (check["threshold"], check["threshold_name"]) == (0.99, "bert-99")
    assert check["features"] == QUESTIONS and check["batch_size"] == 8
    assert check["key"]["calibration_sha256"] and check["calibration_set"] == str(train)
    assert Path(check["run"]).is_dir() and Path(check["fp32_run"]).is_dir()
    # tune takes a trial only where its check passed (an AVX2-only EPYC, 2026-12-07: ratio 0.9882 on these
    # questions, so no trial: exit 1), and the check names the CPU's int8 kernels where they are not dot products
    assert result.exit_code == (0 if check["passed"] else 1), result.output[-3000:]
    record = harness_run(tmp_path, fp32_model, "int8", *int8, "--batch-size", "4", cache=cache)
    kernels = int8_kernels(record["engine_settings"]["isa"])
    assert check["key"].get("int8_kernels", INT8_DOT_PRODUCTS) == kernels
    assert record["engine_settings"]["precision"] == "int8"
    if check["passed"]:
        assert record["accuracy_check"] == f"passed ({path})" and "accuracy_label" not in record
    else:
        assert record["accuracy_check"] == UNCHECKED
    # The target, judged where int8 has dot products (VNNI/AMX): the check passes there.
    assert check["passed"] or kernels != INT8_DOT_PRODUCTS, check


def test_int8_without_calibration_is_refused_before_a_run(tmp_path: Path) -> None:
    result = invoke(
        ["run", "--backend", "openvino", "--runner", "local", "--engine-option", "precision=int8"]
        + ["--output-dir", tmp_path / "runs", "--cache-dir", tmp_path / "cache"]
    )
    assert result.exit_code != 0
    assert "precision=int8 quantizes the model from calibration data; pass --calibration PATH" in result.output
    assert not (tmp_path / "runs").exists() and not (tmp_path / "cache" / "engines").exists()


def test_an_int8_option_without_int8_is_refused_before_a_run(tmp_path: Path) -> None:
    """int8_attention=float at precision=bf16 would quietly run the bf16 model and record the option."""
    result = invoke(
        ["run", "--backend", "openvino", "--runner", "local", "--engine-option", "precision=bf16"]
        + ["--engine-option", "int8_attention=float"]
        + ["--output-dir", tmp_path / "runs", "--cache-dir", tmp_path / "cache"]
    )
    assert result.exit_code == 2 and result.stderr.count("\n") == 1, result.output
    assert result.stderr == (
        "error: openvino engine option int8_attention=float does nothing here: it applies only to precision=int8, "
        "and this run's is bf16; drop it, or pass precision=int8\n"
    )
    assert not (tmp_path / "runs").exists() and not (tmp_path / "cache" / "engines").exists()


def test_bf16_on_a_cpu_without_bf16_is_refused_before_a_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(FAKE_FLAGS_ENV, "avx2 fma")
    result = invoke(
        ["run", "--backend", "openvino", "--runner", "local", "--engine-option", "precision=bf16"]
        + ["--output-dir", tmp_path / "runs", "--cache-dir", tmp_path / "cache"]
    )
    assert result.exit_code != 0
    assert (
        "precision=bf16 needs a CPU with native bf16 (amx_bf16 or avx512_bf16), which this one lacks" in result.output
    )
    assert not (tmp_path / "runs").exists() and not (tmp_path / "cache" / "engines").exists()


@pytest.mark.slow
def test_auto_falls_back_to_fp32_without_bf16(
    openvino_python: Path,
    fp32_model: Path,
    fp32_f1: float,
    session_cache: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(FAKE_FLAGS_ENV, "avx2 fma")  # the harness subprocess inherits it
    record = harness_run(tmp_path, fp32_model, "auto", "--backend", "openvino", cache=session_cache)
    assert record["engine_settings"]["precision"] == "fp32 (auto)" and record["engine_settings"]["isa"] == "avx2"
    assert abs(float(record["results"]["accuracy"]["f1"]) - fp32_f1) < 0.05


def _stand_in_train() -> dict:
    """A small train-like set: two dev articles whose paragraphs are made other paragraphs (a sentence added at
    the end keeps every answer_start), so the dev check does not take them for the dev set."""
    from orchestrator.paths import EMBEDDED_DATASET

    squad = json.loads(EMBEDDED_DATASET.read_text())
    squad["data"] = squad["data"][:2]
    for article in squad["data"]:
        article["title"] += " (stand-in)"
        for paragraph in article["paragraphs"]:
            paragraph["context"] += " This paragraph stands in for a training paragraph."
    return squad


def test_a_calibration_set_with_dev_paragraphs_is_refused(tmp_path: Path) -> None:
    """MLPerf calibrates on train, never dev: the dev set itself, or a set with one dev article mixed in, is
    refused with one sentence before any feature is built; a clean set's verdict is kept."""
    from orchestrator.paths import EMBEDDED_DATASET, EMBEDDED_VOCAB
    from orchestrator.workflows.calibration import calibration_features

    cache = tmp_path / "cache"
    with pytest.raises(ConfigError, match="shares 2067 paragraphs with the dev set dev-v1.1.json; MLPerf calibrates"):
        calibration_features(EMBEDDED_DATASET, EMBEDDED_VOCAB, cache)
    assert not (cache / "calibration").exists()  # a refused set leaves no folder behind
    mixed = _stand_in_train()
    mixed["data"].append(json.loads(EMBEDDED_DATASET.read_text())["data"][5])
    mixed_path = tmp_path / "mixed.json"
    mixed_path.write_text(json.dumps(mixed))
    with pytest.raises(ConfigError, match=r"mixed.json shares \d+ paragraphs with the dev set"):
        calibration_features(mixed_path, EMBEDDED_VOCAB, cache)
    other_dev = tmp_path / "my-dev.json"  # the run's own dev set, when it is not the embedded one
    other_dev.write_text(json.dumps(_stand_in_train()))
    clean = tmp_path / "train.json"
    clean.write_text(json.dumps(_stand_in_train()))
    with pytest.raises(ConfigError, match="with the dev set my-dev.json"):
        calibration_features(clean, EMBEDDED_VOCAB, cache, dev=other_dev)
    assert not list((cache / "calibration").glob("*.npz")) and not (cache / "features").exists()
    calibration_features(clean, EMBEDDED_VOCAB, cache, rows=8)
    assert len(list((cache / "calibration").glob("not-dev-*.ok"))) == 1
    result = invoke(
        [
            "run",
            "--backend",
            "openvino",
            "--engine-option",
            "precision=int8",
            "--calibration",
            str(EMBEDDED_DATASET),
            "--dry-run",
            "--cache-dir",
            str(cache),
            "--output-dir",
            str(tmp_path / "runs"),
        ]
    )
    assert result.exit_code == 2 and result.stderr.splitlines()[-1].startswith("error: the calibration set")
    assert not (tmp_path / "runs").exists()


def test_calibration_features_from_a_gzipped_train_json(tmp_path: Path) -> None:
    """--calibration's .json.gz: built once into the cache, a fixed seeded subset, nothing half-written."""
    import gzip

    from orchestrator.paths import EMBEDDED_VOCAB
    from orchestrator.workflows.calibration import calibration_features

    train = tmp_path / "train.json.gz"
    train.write_bytes(gzip.compress(json.dumps(_stand_in_train()).encode()))
    cache = tmp_path / "cache"
    first = calibration_features(train, EMBEDDED_VOCAB, cache, rows=40, seed=0)
    again = calibration_features(train, EMBEDDED_VOCAB, cache, rows=40, seed=0)
    assert first == again and first.parent == cache / "calibration"
    with np.load(first) as z:
        assert sorted(z.files) == ["input_ids", "input_mask", "segment_ids"] and z["input_ids"].shape == (40, 384)
    assert not [p for p in (cache / "calibration").iterdir() if p.name.startswith(".")]
    with pytest.raises(ConfigError, match="the calibration set .* does not exist"):
        calibration_features(tmp_path / "nope.json", EMBEDDED_VOCAB, cache)
