"""The check store of engine-made precisions (unit, fake records): its key from a run.json, the label a later
run gets from it, tune's verdict written from two accuracy runs, and submission's refusal naming the command."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from orchestrator.commands.tune_cmd import check_samples
from orchestrator.config import RunConfig
from orchestrator.errors import ConfigError, SubmissionError
from orchestrator.run_summary import format_result
from orchestrator.runs import FileRef, RunRecord
from orchestrator.submission.generate import load_runs
from orchestrator.workflows.accuracy_checks import (
    BERT99_RATIO,
    BERT999_RATIO,
    CHECKS_DIR,
    PrecisionCheck,
    check_key,
    find_check,
    ran_precision,
    read_check,
    write_check,
)
from orchestrator.workflows.accuracy_label import (
    UNCHECKED,
    accuracy_check_label,
    check_advice,
    check_command,
    unchecked_precision,
)
from orchestrator.workflows.benchmark import RunResult
from orchestrator.workflows.tuning import record_check


def make_record(tmp_path: Path, precision: str = "int8", **changes: Any) -> RunRecord:
    features = tmp_path / "calibration.npz"
    if not features.is_file():
        features.write_bytes(b"calibration features")
    config: dict[str, Any] = {
        "backend": "openvino",
        "model_path": str(tmp_path / "model.onnx"),
        "cache_dir": str(tmp_path / "cache"),
        "engine_options": {"precision": precision, "calibration_path": str(features)},
        "calibration_path": "/data/train-v1.1.json.gz",
    }
    data: dict[str, Any] = {
        "run_id": "r1",
        "status": "succeeded",
        "execution_mode": "test",
        "test_mode": True,
        "scenario": "Offline",
        "modes": ["accuracy"],
        "target": "openvino-cpu",
        "runner": "local",
        "config": config,
        "model": FileRef(name="custom:model.onnx", path=str(tmp_path / "model.onnx"), sha256="ab" * 32),
        "dataset": FileRef(path="/data/dev-v1.1.json"),
        "vocab": FileRef(path="/data/vocab.txt"),
        "model_meta": {"precision": None},
        "engine_settings": {"precision": precision, "max_batch": "8"},
        "versions": {"mlperf-bert": "0.1.0", "python": "3.11.7", "openvino": "2026.4.1", "nncf": "2.19.0"},
    }
    data.update(changes)
    return RunRecord(**data)


def a_check(record: RunRecord, *, passed: bool = True, features: int = 200) -> PrecisionCheck:
    key = check_key(record)
    assert key is not None
    return PrecisionCheck(
        key=key,
        passed=passed,
        precision=key["precision"],
        f1=80.0 if passed else 70.0,
        fp32_f1=80.2,
        exact_match=70.0,
        fp32_exact_match=70.1,
        ratio=0.9975 if passed else 0.87,
        threshold=BERT99_RATIO,
        threshold_name="bert-99",
        features=features,
        questions=190,
        batch_size=8,
        run="/runs/int8",
        fp32_run="/runs/fp32",
    )


def test_the_key_is_what_decides_the_numerics(tmp_path: Path) -> None:
    record = make_record(tmp_path)
    key = check_key(record)
    assert key is not None
    assert (key["target"], key["model_sha256"], key["precision"]) == ("openvino-cpu", "ab" * 32, "int8")
    assert key["engine"] == {"nncf": "2.19.0", "openvino": "2026.4.1"}  # the harness's own versions left out
    assert len(key["calibration_sha256"]) == 64 and key["batch_size"] is None  # static int8: any batch
    other_batch = make_record(tmp_path, engine_settings={"precision": "int8", "max_batch": "64"})
    assert check_key(other_batch) == key
    for changed in (
        make_record(tmp_path, model=FileRef(path="/m.onnx", sha256="cd" * 32)),
        make_record(tmp_path, versions={"openvino": "2027.0"}),
        make_record(tmp_path, "bf16"),
    ):
        assert check_key(changed) != key
    (tmp_path / "calibration.npz").write_bytes(b"other calibration features")
    assert check_key(make_record(tmp_path))["calibration_sha256"] != key["calibration_sha256"]  # type: ignore[index]
    bf16 = check_key(make_record(tmp_path, "bf16 (auto)"))
    assert bf16 is not None and bf16["precision"] == "bf16" and bf16["calibration_sha256"] is None
    assert check_key(make_record(tmp_path, model=FileRef(path="/m.onnx"))) is None  # no sha256: no key


def test_precision_words() -> None:
    assert ran_precision({"precision": "bf16 (auto)"}) == "bf16"
    assert ran_precision({"precision": "bfloat16 (accuracy unchecked)"}) == "bf16"  # pytorch's dtype names
    assert ran_precision({"precision": "fp16 (accuracy unchecked)"}) == "fp16"
    assert ran_precision({"precision": "as given"}) is None and ran_precision({}) is None


def test_actors_that_ran_different_precisions(tmp_path: Path) -> None:
    """Ray actors on unlike CPUs (bf16 on some nodes, fp32 on others): the bf16 check covers the run, as its
    fp32 batches are the reference's numerics; two reduced precisions at once match no check."""
    mixed = make_record(tmp_path, "bf16 (auto) (on amx1) | fp32 (auto) (on epyc)")
    assert ran_precision(mixed.engine_settings) == "bf16"
    assert check_key(mixed) == check_key(make_record(tmp_path, "bf16"))
    assert accuracy_check_label(mixed, Path(mixed.model.path)) == UNCHECKED
    write_check(a_check(make_record(tmp_path, "bf16")), tmp_path / "cache")
    assert str(accuracy_check_label(mixed, Path(mixed.model.path))).startswith("passed (")
    assert ran_precision({"precision": "fp32 (on a) | fp32 (on b)"}) == "fp32"
    two = make_record(tmp_path, "bf16 (on amx1) | int8 (on epyc)")
    assert check_key(two) is None and accuracy_check_label(two, Path(two.model.path)) == UNCHECKED


def test_label_from_the_store(tmp_path: Path) -> None:
    record = make_record(tmp_path)
    assert accuracy_check_label(record, Path(record.model.path)) == UNCHECKED  # no record yet
    path = write_check(a_check(record, passed=False), tmp_path / "cache")
    assert path.parent == tmp_path / "cache" / CHECKS_DIR and not list(path.parent.glob(".*"))
    assert accuracy_check_label(record, Path(record.model.path)) == UNCHECKED  # a failed check
    write_check(a_check(record), tmp_path / "cache")
    assert accuracy_check_label(record, Path(record.model.path)) == f"passed ({path})"
    assert find_check(record) == (path, read_check(path))
    bf16 = make_record(tmp_path, "bf16")
    assert accuracy_check_label(bf16, Path(bf16.model.path)) == UNCHECKED  # int8's verdict is not bf16's
    fp32 = make_record(tmp_path, "fp32")
    assert accuracy_check_label(fp32, Path(fp32.model.path)) is None


def test_a_shorter_check_does_not_replace_a_longer_one(tmp_path: Path) -> None:
    record = make_record(tmp_path)
    path = write_check(a_check(record, passed=False, features=10833), tmp_path / "cache")
    write_check(a_check(record, passed=True, features=200), tmp_path / "cache")
    check = read_check(path)
    assert check is not None and not check.passed and check.features == 10833


def _int8_run(
    tmp_path: Path,
    target: str = "onnxruntime-cpu",
    settings: dict[str, str] | None = None,
    *,
    reference_f1: float | None = None,
    sha256: str = "ab" * 32,
) -> RunRecord:
    """A run of an int8 file (model_meta says int8) on a VNNI CPU at batch 8 (onnxruntime: the model as given)."""
    record = make_record(
        tmp_path,
        target=target,
        model_meta={"precision": "int8", "reference_f1": reference_f1},
        engine_settings={"precision": "as given", "isa": "avx512_vnni avx512f avx2", "max_batch": "8"}
        | (settings or {}),
        model=FileRef(name="custom:model.int8.onnx", path=str(tmp_path / "model.int8.onnx"), sha256=sha256),
    )
    record.config = record.config.model_copy(update={"backend": target.rsplit("-", 1)[0], "engine_options": {}})
    return record


def _beside(tmp_path: Path, name: str = "accuracy_check.json", **fields: Any) -> Path:
    path = tmp_path / name
    path.write_text(json.dumps({"passed": True, "batch_size": 8, "int8_sha256": "ab" * 32, **fields}))
    return path


def test_int8_model_record_beside_the_model_still_counts(tmp_path: Path) -> None:
    model = tmp_path / "model.int8.onnx"
    record = _int8_run(tmp_path)
    assert accuracy_check_label(record, model) == UNCHECKED
    beside = _beside(tmp_path)  # written before records named their target: onnxruntime-cpu's
    assert accuracy_check_label(record, model) == f"passed ({beside})"
    catalogue = _int8_run(tmp_path, reference_f1=80.4)
    assert accuracy_check_label(catalogue, tmp_path / "elsewhere" / "m.onnx") is None
    # The catalogue's measurement (the model card's) was onnxruntime's: OpenVINO running the file is unmeasured.
    elsewhere = _int8_run(tmp_path, "openvino-cpu", {"precision": "fp32"}, reference_f1=80.4)
    assert accuracy_check_label(elsewhere, tmp_path / "elsewhere" / "m.onnx") == UNCHECKED


def test_an_int8_files_check_holds_for_the_engine_that_ran_it(tmp_path: Path) -> None:
    """onnxruntime's verdict on an int8 file says nothing of openvino running it (other kernels, bf16 for
    the rest on AMX): an openvino run needs a check openvino made, at its precision and options."""
    model = tmp_path / "model.int8.onnx"
    _beside(tmp_path)
    on_openvino = _int8_run(tmp_path, "openvino-cpu", {"precision": "fp32"})
    assert accuracy_check_label(on_openvino, model) == UNCHECKED
    own = _beside(
        tmp_path, "accuracy_check.openvino-cpu.json", target="openvino-cpu", engine_precision="fp32", engine_options={}
    )
    assert accuracy_check_label(on_openvino, model) == f"passed ({own})"
    at_bf16 = _int8_run(tmp_path, "openvino-cpu", {"precision": "bf16 (auto)"})
    assert accuracy_check_label(at_bf16, model) == UNCHECKED  # its float rest ran in bf16, the check's in fp32
    other_options = _int8_run(tmp_path, "openvino-cpu", {"precision": "fp32"})
    other_options.config = other_options.config.model_copy(
        update={"engine_options": {"pad_to": "32", "instances": "2", "cache_dir": "/c"}}
    )
    assert accuracy_check_label(other_options, model) == UNCHECKED
    other_options.config = other_options.config.model_copy(  # where and how often: not numerics
        update={"engine_options": {"instances": "2", "cache_dir": "/c"}}
    )
    assert accuracy_check_label(other_options, model) == f"passed ({own})"
    assert "--int8 --backend openvino --model-path" in check_command(at_bf16)


def test_a_dynamic_int8_check_holds_at_its_batch_size_and_a_static_one_at_any(tmp_path: Path) -> None:
    model = tmp_path / "model.int8.onnx"
    first = _beside(tmp_path, batch_size=32)
    at_8 = _int8_run(tmp_path)
    assert accuracy_check_label(at_8, model) == UNCHECKED  # dynamic scales per batch: 32's verdict is not 8's
    assert check_command(at_8).endswith("--batch-sizes 8")
    batch8 = _beside(tmp_path, "accuracy_check.batch8.json")
    assert accuracy_check_label(at_8, model) == f"passed ({batch8})"
    batch8.unlink()
    _beside(tmp_path, batch_size=32, recipe="static-qdq")
    assert accuracy_check_label(at_8, model) == f"passed ({first})"
    _beside(tmp_path, batch_size=8, int8_sha256="cd" * 32)  # made for another file
    assert accuracy_check_label(at_8, model) == UNCHECKED


def _result(record: RunRecord, f1: float, run_dir: str, features: int = 200) -> Any:
    report = SimpleNamespace(f1=f1, exact_match=f1 - 10, questions_scored=190, features_answered=features)
    return SimpleNamespace(record=record, accuracy=report, run_dir=Path(run_dir))


@pytest.mark.parametrize(
    ("precision", "f1", "threshold", "passed"),
    [("int8", 79.5, BERT99_RATIO, True), ("bf16", 79.5, BERT999_RATIO, False), ("bf16", 80.0, BERT999_RATIO, True)],
)
def test_tunes_verdict_and_threshold(tmp_path: Path, precision: str, f1: float, threshold: float, passed: bool) -> None:
    reduced = make_record(tmp_path, precision)
    fp32 = make_record(tmp_path, "fp32")
    check = record_check(_result(reduced, f1, "/runs/r"), _result(fp32, 80.0, "/runs/f"))
    assert check is not None
    assert (check.threshold, check.passed, check.features, check.batch_size) == (threshold, passed, 200, 8)
    assert check.threshold_name == ("bert-99.9" if precision == "bf16" else "bert-99")
    assert (check.run, check.fp32_run) == ("/runs/r", "/runs/f") and check.key == check_key(reduced)
    assert check.calibration_set == ("/data/train-v1.1.json.gz" if precision == "int8" else None)


def test_check_samples_option() -> None:
    assert check_samples("all") is None and check_samples("300") == 300
    with pytest.raises(ConfigError, match="--precision-check-samples 'some' is neither a whole number"):
        check_samples("some")


def test_submission_refuses_an_unchecked_engine_precision(tmp_path: Path) -> None:
    record = make_record(tmp_path, accuracy_check=UNCHECKED)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    record.save(run_dir)
    with pytest.raises(SubmissionError) as err:
        load_runs([run_dir])
    message = str(err.value)
    assert "ran int8 with no passing accuracy check" in message and message.count(". ") == 0
    assert check_command(record) in message
    assert check_command(record) == (
        f"mlperf-bert tune --backend openvino --model-path {tmp_path / 'model.onnx'} --precisions int8 "
        "--calibration /data/train-v1.1.json.gz --batch-sizes 8 --precision-check-samples all"
    )


def test_the_check_command_repeats_the_runs_numerics_options(tmp_path: Path) -> None:
    """A check run without int8_attention=float would record the default recipe's verdict, which never
    labels this run; the cache folder and the calibration features' option are not repeated."""
    record = make_record(tmp_path, accuracy_check=UNCHECKED)
    record.config.engine_options.update(
        {"int8_attention": "float", "int8_float": "bf16", "instances": "2", "cache_dir": "/c"}
    )
    command = check_command(record)
    assert command.endswith(
        "--calibration /data/train-v1.1.json.gz --engine-option int8_attention=float --engine-option "
        "int8_float=bf16 --batch-sizes 8 --precision-check-samples all"
    )
    assert "instances" not in command and "cache_dir" not in command and "calibration_path" not in command


def test_the_summary_says_which_record_passed_it_or_how_to_check_it(tmp_path: Path) -> None:
    passed = make_record(tmp_path, accuracy_check="passed (/cache/accuracy_checks/x.json)")
    assert "  accuracy check: passed (/cache/accuracy_checks/x.json)" in format_result(RunResult(tmp_path, passed))
    unchecked = make_record(tmp_path, accuracy_check=UNCHECKED)
    text = format_result(RunResult(tmp_path, unchecked))
    assert "ACCURACY UNCHECKED: this int8 run" in text and check_command(unchecked) in text


def test_the_engines_numerics_are_part_of_the_key(tmp_path: Path) -> None:
    """openvino's NNCF recipe, calibration rows and seed (engine_settings `numerics`): another recipe under the
    same versions is other numerics, so an old verdict must not cover it."""
    recipe = {"precision": "int8", "numerics": "nncf-ptq-v1; calibration rows 300, seed 0"}
    key = check_key(make_record(tmp_path, engine_settings=recipe))
    other = check_key(make_record(tmp_path, engine_settings={**recipe, "numerics": "nncf-ptq-v2; rows 300, seed 0"}))
    assert key is not None and other is not None and key["numerics"] == recipe["numerics"] and key != other


def test_fp16_on_onnxruntime_cuda_needs_its_own_passing_record(tmp_path: Path) -> None:
    """issue 17's gate: precision=fp16 (made by the transformers optimizer on the GPU) is accepted only with a
    recorded passing check of the same numerics; the GPU's engine versions are part of the key."""
    fp16 = make_record(
        tmp_path,
        "fp16",
        target="onnxruntime-cuda",
        engine_settings={"precision": "fp16", "io_binding": "device"},
        versions={"mlperf-bert": "0.1.0", "onnxruntime": "1.31.1"},
    )
    assert accuracy_check_label(fp16, Path(fp16.model.path)) == UNCHECKED
    key = check_key(fp16)
    assert key is not None and key["target"] == "onnxruntime-cuda" and key["precision"] == "fp16"
    path = write_check(a_check(fp16), tmp_path / "cache")
    assert accuracy_check_label(fp16, Path(fp16.model.path)) == f"passed ({path})"
    newer = make_record(
        tmp_path,
        "fp16",
        target="onnxruntime-cuda",
        engine_settings={"precision": "fp16"},
        versions={"onnxruntime": "1.32.0"},
    )
    assert accuracy_check_label(newer, Path(newer.model.path)) == UNCHECKED  # another onnxruntime: check again


def test_a_check_of_the_same_bytes_in_the_cache_labels_the_run(tmp_path: Path) -> None:
    """tune --int8 checks the file it makes in the cache; a run of another copy of the same bytes (the
    embedded demo-int8 is the `all` recipe of its fp32 parent, byte for byte) is labelled by that record."""
    model = tmp_path / "elsewhere" / "model.int8.onnx"
    run = _int8_run(tmp_path, "openvino-cpu", {"precision": "fp32"}, reference_f1=80.4)
    assert accuracy_check_label(run, model) == UNCHECKED
    variant = tmp_path / "cache" / "quantized" / "model-0123"
    variant.mkdir(parents=True)
    record = _beside(variant, "accuracy_check.openvino-cpu.json", target="openvino-cpu", engine_precision="fp32")
    assert accuracy_check_label(run, model) == f"passed ({record})"
    _beside(variant, "accuracy_check.openvino-cpu.json", target="openvino-cpu", int8_sha256="cd" * 32)
    assert accuracy_check_label(run, model) == UNCHECKED  # another file's verdict


def test_the_advice_for_an_unchecked_model_file_names_what_it_is(tmp_path: Path) -> None:
    int8 = _int8_run(tmp_path, "openvino-cpu", {"precision": "fp32"})
    assert unchecked_precision(int8) == "int8"  # the file's, not the engine's fp32
    assert check_advice(int8) == f"check it with `{check_command(int8)}`"
    on_ray = _int8_run(tmp_path)
    on_ray.runner = "ray"
    on_ray.config = on_ray.config.model_copy(update={"ray_address": "10.0.0.5:6379"})
    assert "--runner ray --ray-address 10.0.0.5:6379 --model-path" in check_command(on_ray)  # where it ran
    fp16 = _int8_run(tmp_path)
    fp16.model_meta = {"precision": "fp16"}
    assert unchecked_precision(fp16) == "fp16"
    assert check_advice(fp16).startswith("no command checks a model file stored in fp16;")
    text = format_result(RunResult(tmp_path, fp16.model_copy(update={"accuracy_check": UNCHECKED})))
    assert "ACCURACY UNCHECKED: this fp16 run has no passing accuracy check; not for a submission (no command" in text


def test_the_fp32_side_of_an_int8_check_runs_at_fp32(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An engine left at `auto` runs the fp32 model in bf16 on a bf16 CPU (openvino), or fp16 (TensorRT): the
    bert-99 ratio is against fp32's F1, so that run is asked for fp32; the int8 run keeps the trials' options."""
    import orchestrator.workflows.int8 as int8_module

    seen: list[RunConfig] = []

    def fake_run(config: RunConfig, **_: object) -> Any:
        seen.append(config)
        record = _int8_run(tmp_path, "openvino-cpu", {"precision": "fp32"})
        report = SimpleNamespace(f1=80.0, exact_match=70.0, questions_scored=48, features_answered=50)
        return SimpleNamespace(accuracy=report, run_dir=tmp_path / str(len(seen)), record=record)

    monkeypatch.setattr(int8_module, "run_benchmark", fake_run)
    model = tmp_path / "model.int8.onnx"
    model.write_bytes(b"int8")
    template = RunConfig(backend="openvino", engine_options={"pad_to": "32"}, scenario="Server", target_qps=5)
    check = int8_module.check_accuracy(
        tmp_path / "fp32.onnx", model, samples=50, output_dir=tmp_path, cache_dir=tmp_path, template=template
    )
    assert [c.engine_options for c in seen] == [{"pad_to": "32", "precision": "fp32"}, {"pad_to": "32"}]
    assert all(c.backend == "openvino" and c.scenario.value == "Offline" and c.mode.value == "accuracy" for c in seen)
    assert check.target == "openvino-cpu" and check.engine_precision == "fp32" and check.passed
