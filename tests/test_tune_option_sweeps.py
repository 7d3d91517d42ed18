"""`tune --sweep-option KEY=V1,V2`: engine options swept beside precision, threads, instances and batch size.

Unit tests replace the trials (run_trial, run_benchmark) with stand-ins; the slow test sweeps a real option of
onnxruntime through the CLI with the real harness and LoadGen.
"""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from cli_support import invoke

from orchestrator.commands.tune_cmd import parse_option_sweeps
from orchestrator.config import RunConfig
from orchestrator.errors import ConfigError
from orchestrator.workflows import tuning as tune_module
from orchestrator.workflows.tuning import (
    Trial,
    TuneRequest,
    markdown_table,
    option_combinations,
    precision_check,
    series_label,
    tune,
)

# Stand-in rates: the bf16 rest and a longer pad are faster (as measured on AMX for int8_float).
RATE = {("fp32", "16"): 10.0, ("fp32", "32"): 11.0, ("bf16", "16"): 12.0, ("bf16", "32"): 13.0}


@pytest.mark.usefixtures("zen4_cpu")
def test_every_combination_is_a_setting_and_the_best_keeps_its_options(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[tuple[str | None, dict[str, str], int]] = []

    def fake_trial(base: RunConfig, **kw: Any) -> Trial:
        options = kw["options"]
        asked.append((kw.get("precision"), options, kw["batch_size"]))
        rate = RATE[(options["int8_float"], options["pad_to"])] + kw["batch_size"] / 100
        return Trial(
            batch_size=kw["batch_size"],
            threads=None,
            instances=None,
            run_dir=f"/runs/{len(asked)}",
            samples_per_second=rate,
            precision=kw.get("precision"),
            options=dict(options),
        )

    monkeypatch.setattr(tune_module, "run_trial", fake_trial)
    monkeypatch.setattr(tune_module, "preflight_trials", lambda request, combos: None)  # stand-in trials need no runner
    base = RunConfig(
        backend="openvino",
        output_dir=tmp_path,
        engine_options={"calibration_rows": "64"},
        calibration_path=tmp_path / "train.json",
    )
    request = TuneRequest(
        base=base,
        batch_sizes=[4, 8],
        precisions=["int8"],
        option_sweeps={"int8_float": ["fp32", "bf16"], "pad_to": ["16", "32"]},
        plot=False,
        find_performance=True,
    )
    monkeypatch.setattr(tune_module, "_constraints_met", lambda trial: True)
    result = tune(request)
    assert [(p, o["int8_float"], o["pad_to"], b) for p, o, b in asked[:8]] == [
        ("int8", f, pad, b) for f in ("fp32", "bf16") for pad in ("16", "32") for b in (4, 8)
    ]
    best = result.best
    assert best is not None and best.options == {"int8_float": "bf16", "pad_to": "32"} and best.batch_size == 8
    assert asked[-1] == ("int8", {"int8_float": "bf16", "pad_to": "32"}, 8)  # the find-performance run
    written = RunConfig(**yaml.safe_load(Path(result.files["config"]).read_text()))
    assert written.engine_options == {
        "calibration_rows": "64",
        "int8_float": "bf16",
        "pad_to": "32",
        "precision": "int8",
    }
    summary = json.loads((result.directory / "tune.json").read_text())
    assert summary["option_sweeps"] == {"int8_float": ["fp32", "bf16"], "pad_to": ["16", "32"]}
    assert summary["best"]["options"] == {"int8_float": "bf16", "pad_to": "32"}
    table = markdown_table(result.trials, best)
    assert table.splitlines()[0].startswith("| precision | engine options | batch size |")
    assert "| int8 | int8_float=bf16, pad_to=32 | 8 |" in table
    assert len({series_label(t) for t in result.trials}) == 4  # one plotted line per combination


@pytest.mark.parametrize(
    ("sweeps", "message"),
    [
        ({"precision": ["fp32", "bf16"]}, "precision has its own sweep flag; pass --precisions"),
        ({"instances": ["1", "2"]}, "instances has its own sweep flag; pass --instances"),
        ({"int8_flaot": ["bf16"]}, "unknown openvino engine option 'int8_flaot'; the valid ones are"),
        ({"pad_to": ["32", "999"]}, "openvino engine option pad_to=999 is above 384"),
    ],
)
def test_a_bad_sweep_is_one_sentence_before_any_trial(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sweeps: dict[str, list[str]], message: str
) -> None:
    monkeypatch.setattr(tune_module, "run_trial", lambda *a, **k: pytest.fail("no trial may run"))
    with pytest.raises(ConfigError, match=message):
        tune(TuneRequest(base=RunConfig(backend="openvino", output_dir=tmp_path), option_sweeps=sweeps, plot=False))
    assert not list(tmp_path.iterdir())  # no tune directory


def test_option_combinations_keep_the_order_given_and_drop_repeats() -> None:
    base = RunConfig(backend="openvino")
    combos = option_combinations(base, {"pad_to": ["32", "16", "32"], "shapes": ["dynamic", "buckets"]})
    assert combos == [
        {"pad_to": "32", "shapes": "dynamic"},
        {"pad_to": "32", "shapes": "buckets"},
        {"pad_to": "16", "shapes": "dynamic"},
        {"pad_to": "16", "shapes": "buckets"},
    ]
    assert option_combinations(base, {}) == [{}]


def test_the_flag_parses_and_refuses_in_one_sentence() -> None:
    assert parse_option_sweeps(["int8_float=fp32, bf16", "pad_to=32"]) == {
        "int8_float": ["fp32", "bf16"],
        "pad_to": ["32"],
    }
    assert parse_option_sweeps(None) == {}
    for bad, message in (("pad_to", "is not KEY=V1,V2"), ("=1,2", "is not KEY=V1,V2"), ("pad_to=", "is not KEY")):
        with pytest.raises(ConfigError, match=message):
            parse_option_sweeps([bad])
    with pytest.raises(ConfigError, match="given twice"):
        parse_option_sweeps(["pad_to=16", "pad_to=32"])
    result = invoke(["tune", "--sweep-option", "pad_to", "--backend", "openvino"])
    assert result.exit_code == 2 and result.stderr.count("\n") == 1 and "is not KEY=V1,V2" in result.stderr


def test_the_accuracy_check_runs_both_precisions_with_the_trials_options(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from test_accuracy_checks import make_record

    seen: list[dict[str, str]] = []

    def fake_run(config: RunConfig, **kw: Any) -> Any:
        seen.append(dict(config.engine_options))
        precision = config.engine_options["precision"]
        accuracy = SimpleNamespace(f1=80.0, exact_match=70.0, questions_scored=48, features_answered=50)
        record = make_record(tmp_path, precision, engine_settings={"precision": precision})
        return SimpleNamespace(accuracy=accuracy, record=record, run_dir=tmp_path / precision)

    monkeypatch.setattr(tune_module, "run_benchmark", fake_run)
    vet = precision_check(RunConfig(backend="openvino", cache_dir=tmp_path / "cache"), samples=50, output_dir=tmp_path)
    trial = Trial(batch_size=4, threads=None, instances=None, run_dir="/r", samples_per_second=9.0, precision="int8")
    for rest in ("fp32", "bf16"):
        trial.options = {"int8_float": rest}
        assert vet(trial) is None
    # int8_float does nothing at fp32 (the engine would refuse it there): one fp32 run serves both rests.
    assert seen == [
        {"int8_float": "fp32", "precision": "int8"},
        {"precision": "fp32"},
        {"int8_float": "bf16", "precision": "int8"},
    ]


def test_an_int8_option_swept_beside_other_precisions_runs_once_where_it_does_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--precisions fp32,int8 --sweep-option int8_attention=int8,float`: two int8 settings, one fp32 setting
    without the option (not two identical fp32 trials labelled with an attention that did not run)."""
    asked: list[tuple[str | None, dict[str, str]]] = []

    def fake_trial(base: RunConfig, **kw: Any) -> Trial:
        asked.append((kw.get("precision"), dict(kw["options"])))
        return Trial(
            batch_size=kw["batch_size"],
            threads=None,
            instances=None,
            run_dir=f"/runs/{len(asked)}",
            samples_per_second=10.0 + len(asked),
            precision=kw.get("precision"),
            options=dict(kw["options"]),
        )

    monkeypatch.setattr(tune_module, "run_trial", fake_trial)
    monkeypatch.setattr(tune_module, "preflight_trials", lambda request, combos: None)  # stand-in trials need no runner
    base = RunConfig(backend="openvino", output_dir=tmp_path, calibration_path=tmp_path / "train.json")
    request = TuneRequest(
        base=base,
        batch_sizes=[4],
        precisions=["fp32", "int8"],
        option_sweeps={"int8_attention": ["int8", "float"], "pad_to": ["16"]},
        plot=False,
    )
    result = tune(request)
    assert asked == [
        ("fp32", {"pad_to": "16"}),
        ("int8", {"int8_attention": "int8", "pad_to": "16"}),
        ("int8", {"int8_attention": "float", "pad_to": "16"}),
    ]
    assert [t.options for t in result.trials] == [o for _, o in asked]


@pytest.mark.usefixtures("zen4_cpu")
@pytest.mark.parametrize(
    ("precisions", "sweeps", "options", "message"),
    [
        (
            ["fp32", "bf16"],
            {"int8_attention": ["int8", "float"]},
            {},
            "openvino engine option int8_attention=int8 does nothing here: it applies only to precision=int8, "
            "and this run's is fp32; drop it, or pass precision=int8 (in every setting of this sweep)",
        ),
        (
            [None],
            {},
            {"shapes": "buckets", "pad_to": "32"},
            "openvino engine option pad_to=32 does nothing here: shapes=buckets pads each batch to its bucket; "
            "drop it, or pass shapes=dynamic",
        ),
    ],
)
def test_an_option_no_setting_uses_is_refused_before_the_tune_folder(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    precisions: list[str | None],
    sweeps: dict[str, list[str]],
    options: dict[str, str],
    message: str,
) -> None:
    monkeypatch.setattr(tune_module, "run_trial", lambda *a, **k: pytest.fail("no trial may run"))
    base = RunConfig(backend="openvino", output_dir=tmp_path, engine_options=options)
    request = TuneRequest(base=base, precisions=precisions, option_sweeps=sweeps, plot=False)
    with pytest.raises(ConfigError) as caught:
        tune(request)
    assert str(caught.value) == message
    assert not list(tmp_path.iterdir())


def test_an_option_the_reference_sut_ignores_is_refused_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reference SUT adds optimize=none: fusions swept there would be N trials that all fail, and the
    engine's own advice ("drop optimize=none") names an option the user never passed."""
    monkeypatch.setattr(tune_module, "run_trial", lambda *a, **k: pytest.fail("no trial may run"))
    base = RunConfig(output_dir=tmp_path, sut="reference")
    sweeps = {"fusions": ["onnxruntime", "transformers"]}
    request = TuneRequest(base=base, batch_sizes=[1], option_sweeps=sweeps, plot=False)
    with pytest.raises(ConfigError) as caught:
        tune(request)
    assert str(caught.value) == (
        "engine option fusions=onnxruntime does nothing here: the reference SUT runs onnxruntime-cpu with "
        "optimize=none; drop it, or use --sut optimized (in every setting of this sweep)"
    )
    assert not list(tmp_path.iterdir())


@pytest.mark.slow
def test_a_real_sweep_of_an_engine_option(tmp_path: Path) -> None:
    """onnxruntime's `optimize` swept through the CLI: two real trials per batch size, each run with its value."""
    result = invoke(
        [
            "tune",
            "--batch-sizes",
            "2",
            "--samples",
            "24",
            "--sweep-option",
            "optimize=auto,none",
            "--runner",
            "local",
            "--output-dir",
            str(tmp_path),
            "--cache-dir",
            str(tmp_path / "cache"),
            "--no-plot",
            "--json",
        ]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output[result.output.index("{") :])
    assert [t["options"] for t in summary["trials"]] == [{"optimize": "auto"}, {"optimize": "none"}]
    for t in summary["trials"]:
        assert t["error"] is None and t["samples_per_second"] > 0
        record = json.loads((Path(t["run_dir"]) / "run.json").read_text())
        assert (
            record["status"] == "succeeded"
            and record["config"]["engine_options"]["optimize"] == t["options"]["optimize"]
        )
    assert summary["best"]["options"] in [t["options"] for t in summary["trials"]]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--batch-sizes", "100000"], "invalid batch_size 100000: input should be less than or equal to 4096"),
        (["--threads", "0"], "--threads needs whole numbers >= 1"),
        (["--backend", "openvino", "--precisions", "fp32,int4"], "precision='int4' is not one of auto, fp32"),
        (["--backend", "openvino", "--precisions", "fp32,int8"], "precision=int8 quantizes the model from calibration"),
        (["--precision-check-samples", "some"], "--precision-check-samples 'some' is neither"),
    ],
)
def test_a_setting_no_trial_could_run_is_refused_before_the_tune_folder(
    tmp_path: Path, argv: list[str], message: str
) -> None:
    result = invoke(["tune", *argv, "--output-dir", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    assert result.stderr.count("\n") == 1 and message in result.stderr, result.stderr
    assert not (tmp_path / "out").exists()


def test_a_tune_folder_that_cannot_be_made_is_one_sentence(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    result = invoke(["tune", "--batch-sizes", "2", "--output-dir", str(blocker)])
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert (
        result.exit_code == 2 and len(errors) == 1 and errors[0].startswith("error: cannot make the tune folder under")
    )


def test_tune_int8_checks_its_settings_before_it_quantizes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`tune --int8` quantizes and scores the full dev set before its trials: a sweep no trial could run is
    one sentence first, not minutes later."""
    from orchestrator.workflows import int8 as int8_checks

    monkeypatch.setattr(int8_checks, "make_int8_variant", lambda *a, **k: pytest.fail("no quantization may run"))
    fp32 = tmp_path / "model.fp32.onnx"
    fp32.write_bytes(b"not read")
    for argv, sentence in (
        (
            ["--engine-option", "optimize=none", "--sweep-option", "fusions=onnxruntime,transformers"],
            "error: onnxruntime engine option fusions=onnxruntime does nothing here: it configures the fusions",
        ),
        (["--sweep-option", "int8_flaot=bf16"], "error: unknown onnxruntime engine option 'int8_flaot'"),
    ):
        result = invoke(["tune", "--int8", "--model-path", str(fp32), *argv, "--output-dir", str(tmp_path / "out")])
        assert result.exit_code == 2 and result.stderr.startswith(sentence), result.output
        assert result.stderr.count("\n") == 1 and not (tmp_path / "out").exists()


def test_each_precision_is_prepared_like_its_first_trial_before_the_tune_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """preflight_trials hands prepare_run (what run_benchmark checks before its run directory) each precision's
    first trial: its precision, its swept options at that precision, the smallest batch size."""
    prepared: list[RunConfig] = []
    monkeypatch.setattr(tune_module, "prepare_run", lambda config, **kw: prepared.append(config))
    base = RunConfig(backend="openvino", output_dir=tmp_path)
    request = TuneRequest(
        base=base, batch_sizes=[8, 2], precisions=["fp32", "int8"], instances=[2, 1], samples=16, plot=False
    )
    tune_module.preflight_trials(request, [{"int8_attention": "float"}, {"int8_attention": "int8"}])
    assert [c.engine_options for c in prepared] == [
        {"instances": "2", "precision": "fp32"},  # int8_attention does nothing at fp32: not asked
        {"instances": "2", "precision": "int8", "int8_attention": "float"},
    ]
    assert {c.batch_size for c in prepared} == {2} and all(c.test_query_count == 16 for c in prepared)


def test_a_sweep_whose_runner_cannot_start_is_one_sentence_before_the_tune_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shared_assets: Path
) -> None:
    """A GPU target on a machine without its GPU: `run` refuses it in one sentence, and so does tune, instead
    of a tune folder of failed trials (and --int8 before it quantizes). No GPU is made to vanish on a machine
    that has one: nvidia-smi is hidden from the host check, which runs before the inputs are built."""
    from orchestrator.runners import host_checks
    from orchestrator.workflows import int8 as int8_checks

    which = host_checks.shutil.which
    monkeypatch.setattr(host_checks.shutil, "which", lambda name, **kw: None if name == "nvidia-smi" else which(name))
    monkeypatch.setattr(int8_checks, "make_int8_variant", lambda *a, **k: pytest.fail("no quantization may run"))
    monkeypatch.setattr(tune_module, "run_trial", lambda *a, **k: pytest.fail("no trial may run"))
    models = shared_assets / "models"
    for argv in (
        ["--backend", "pytorch", "--device", "cuda", "--model-path", models / "demo-minilm-l6-squad-hf"],
        ["--backend", "onnxruntime", "--device", "cuda", "--model-path", models / "demo-minilm-l6-squad.fp32.onnx"],
        ["--int8", "--device", "cuda", "--model-path", models / "demo-minilm-l6-squad.fp32.onnx"],
    ):
        result = invoke(["tune", *argv, "--batch-sizes", "1,2", "--runner", "local", "--output-dir", tmp_path / "out"])
        errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert result.exit_code == 2 and len(errors) == 1, result.output
        assert "needs an NVIDIA GPU but none is visible here" in errors[0]
        assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("empty", ["threads", "instances", "precisions"])
def test_an_api_request_with_an_empty_setting_list_is_one_sentence(tmp_path: Path, empty: str) -> None:
    request = TuneRequest(base=RunConfig(output_dir=tmp_path), batch_sizes=[1], **{empty: []})
    with pytest.raises(ConfigError, match=f"^{empty} names no setting"):
        tune_module.check_request(request)
