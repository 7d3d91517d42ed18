"""The whole run through the Python API and the CLI: real LoadGen, real ONNX Runtime, the embedded model.

These are the "done when" tests of the foundation: both modes for Offline and SingleStream, every ending
recorded in run.json, bad input ending in one sentence with nothing written into earlier runs.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_support import invoke
from harness_support import wait_for_harness_line
from typer.testing import CliRunner

from orchestrator.api import run_benchmark
from orchestrator.cli import app
from orchestrator.config import RunConfig
from orchestrator.errors import ConfigError, DatasetError, ModelError
from orchestrator.paths import EMBEDDED_MODEL
from orchestrator.runs import RunRecord

pytestmark = pytest.mark.slow


def _config(tmp_path: Path, cache: Path, **kw: object) -> RunConfig:
    return RunConfig(runner="local", output_dir=tmp_path / "runs", cache_dir=cache, **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("scenario", ["Offline", "SingleStream"])
def test_both_modes_real_loadgen(tmp_path: Path, session_cache: Path, scenario: str) -> None:
    result = run_benchmark(
        _config(tmp_path, session_cache, scenario=scenario, test_query_count=40), progress=False, stream=False
    )
    assert result.succeeded and result.test_mode
    rec = RunRecord.load(result.run_dir)
    assert rec.status == "succeeded" and rec.execution_provider == "CPUExecutionProvider"
    assert rec.versions["mlperf_loadgen"].startswith("6.0") or rec.versions["mlperf_loadgen"]
    assert rec.finished_at and rec.host["cpu_count"]
    # accuracy: the first 40 features are 40 single-window questions; the demo model is far above chance
    acc = result.accuracy
    assert acc.questions_scored == 40 and acc.partial
    assert 60.0 < acc.f1 <= 100.0
    assert (result.run_dir / "accuracy" / "accuracy.txt").read_text().startswith('{"exact_match": ')
    entries = json.loads((result.run_dir / "accuracy" / "mlperf_log_accuracy.json").read_text())
    assert sorted(e["qsl_idx"] for e in entries) == list(range(40))
    # performance: a short run is INVALID by MLPerf's rules and must say so
    perf = result.performance
    assert perf.scenario == scenario and perf.samples_issued == 40
    assert perf.result_valid is False
    assert perf.min_duration_ms == 600000  # never shortened through min_duration
    assert (result.run_dir / "performance" / "run_1" / "mlperf_log_summary.txt").is_file()


def test_reruns_make_new_directories(tmp_path: Path, session_cache: Path) -> None:
    cfg = _config(tmp_path, session_cache, mode="accuracy", test_query_count=8)
    first = run_benchmark(cfg, progress=False, stream=False)
    before = (first.run_dir / "run.json").read_text()
    second = run_benchmark(cfg, progress=False, stream=False)
    assert first.run_dir != second.run_dir
    assert (first.run_dir / "run.json").read_text() == before
    # the same samples give the same F1 twice
    assert first.accuracy.f1 == second.accuracy.f1


def test_cli_json_output(tmp_path: Path, session_cache: Path) -> None:
    res = CliRunner().invoke(
        app,
        [
            "run",
            "--runner",
            "local",
            "--mode",
            "accuracy",
            "--test-query-count",
            "8",
            "--output-dir",
            str(tmp_path),
            "--cache-dir",
            str(session_cache),
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    data = json.loads(res.stdout)
    assert data["status"] == "succeeded" and data["test_mode"] is True
    assert "TEST MODE" in data["label"]
    assert data["results"]["accuracy"]["questions_scored"] == 8


def test_cli_human_output_says_test_mode(tmp_path: Path, session_cache: Path) -> None:
    res = CliRunner().invoke(
        app,
        [
            "run",
            "--runner",
            "local",
            "--scenario",
            "singlestream",
            "--mode",
            "performance",
            "--test-query-count",
            "8",
            "--output-dir",
            str(tmp_path),
            "--cache-dir",
            str(session_cache),
            "--no-progress",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "TEST MODE" in res.stdout and "latency" in res.stdout and "INVALID" in res.stdout
    assert "engine: graph as given (already quantized" in res.stdout  # the embedded model is int8


def test_run_records_what_the_engine_ran_with(tmp_path: Path, session_cache: Path) -> None:
    """Two engine instances: run.json says so, with the fusions used and each worker's pinned CPUs."""
    import os

    result = run_benchmark(
        _config(
            tmp_path,
            session_cache,
            mode="performance",
            test_query_count=32,
            threads=2,
            engine_options={"instances": "2"},
        ),
        progress=False,
        stream=False,
    )
    assert result.succeeded
    settings = RunRecord.load(result.run_dir).engine_settings
    assert settings["instances"] == "2" and settings["threads_per_instance"] == "1"
    assert settings["io_binding"] == "yes" and settings["graph"].startswith("as given")
    if len(os.sched_getaffinity(0)) >= 2:
        cpus = [set(part.split(",")) for part in settings["worker_cpus"].split(" | ")]
        assert len(cpus) == 2 and not cpus[0] & cpus[1]
    # Unset, Offline asks for instances=auto (one single-threaded instance per core); SingleStream for one.
    offline = run_benchmark(
        _config(tmp_path, session_cache, mode="performance", test_query_count=16, threads=2),
        progress=False,
        stream=False,
    )
    assert RunRecord.load(offline.run_dir).engine_settings["instances"] == "2 (auto)"
    # ... with the target's batch size, written into the record as the batch size that ran
    assert RunRecord.load(offline.run_dir).config.batch_size == 2
    assert RunRecord.load(offline.run_dir).engine_settings["max_batch"] == "2"
    single = run_benchmark(
        _config(tmp_path, session_cache, mode="performance", test_query_count=64, threads=2, scenario="SingleStream"),
        progress=False,
        stream=False,
    )
    assert RunRecord.load(single.run_dir).engine_settings["instances"] == "1"
    assert RunRecord.load(single.run_dir).engine_settings["max_batch"] == "1"  # one sample per query


# ---- bad input: one sentence, non-zero exit, nothing written into earlier runs ----------------------


def _cli(args: list[str]) -> tuple[int, str]:
    res = invoke(["run", "--runner", "local", "--mode", "accuracy", "--no-progress", *args])
    return res.exit_code, res.stderr or res.output


@pytest.fixture()
def earlier_run(tmp_path: Path, session_cache: Path) -> Path:
    result = run_benchmark(
        _config(tmp_path, session_cache, mode="accuracy", test_query_count=4), progress=False, stream=False
    )
    return result.run_dir


def _snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _bad_inputs(tmp_path: Path) -> dict[str, tuple[list[str], str]]:
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"\x08\x07not a model" * 100)
    bad_json = tmp_path / "bad.json"
    bad_json.write_text('{"data": [ {"title": "x", "paragraphs": ')
    unanswered = tmp_path / "questions.json"  # a question list, no dev set: nothing to score against
    unanswered.write_text(
        json.dumps(
            {"data": [{"title": "x", "paragraphs": [{"context": "abc", "qas": [{"id": "q1", "question": "q"}]}]}]}
        )
    )
    other_vocab = tmp_path / "vocab.txt"
    other_vocab.write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nthe\na" + "\n")
    return {
        "missing model": (["--model-path", str(tmp_path / "nope.onnx")], "does not exist"),
        "corrupt model": (["--model-path", str(corrupt)], "model"),
        "unknown model name": (["--model", "bert-1000"], "unknown model"),
        "malformed squad": (["--dataset", str(bad_json)], "JSON"),
        "questions without answers": (["--dataset", str(unanswered), "--test-query-count", "1"], "have no answers"),
        "vocab mismatch": (["--vocab", str(other_vocab)], "vocab"),
        "unknown scenario": (["--scenario", "Batch"], "scenario"),
        "count too large": (["--test-query-count", "20000"], "larger than the dataset"),
        # The engine's own parser, run on the host before any run directory (it used to fail the run).
        "misspelt engine option": (["--engine-option", "optimise=none"], "unknown onnxruntime engine option"),
        "bad engine option value": (["--engine-option", "instances=many"], "instances='many' is not auto or"),
        "unknown engine precision": (["--engine-option", "precision=bf16"], "runs precision auto, fp32, fp16"),
        # What the engine would refuse for its device as it starts, checked on the host first.
        "fp16 on the CPU": (["--engine-option", "precision=fp16"], "precision=fp16 runs on a GPU provider"),
        "an engine cache that is a file": (
            ["--engine-option", f"optimized_cache_dir={corrupt}"],
            "is a file, not a folder",
        ),
        "cuda graphs on the CPU": (
            ["--backend", "pytorch", "--model-path", str(tmp_path), "--engine-option", "cuda_graphs=1"],
            "cuda_graphs=1 needs the CUDA device",
        ),
        "an ONNX file for pytorch": (
            ["--backend", "pytorch", "--model-path", str(EMBEDDED_MODEL)],
            "runs a Hugging Face checkpoint, but",
        ),
    }


def test_bad_input_is_one_sentence_and_leaves_earlier_runs(
    tmp_path: Path, session_cache: Path, earlier_run: Path
) -> None:
    runs = earlier_run.parent
    before = _snapshot(runs)
    for label, (args, needle) in _bad_inputs(tmp_path).items():
        code, out = _cli([*args, "--output-dir", str(runs), "--cache-dir", str(session_cache)])
        assert code != 0, label
        lines = [ln for ln in out.strip().splitlines() if ln.strip()]
        assert needle.lower() in out.lower(), (label, out)
        assert len(lines) <= 2, (label, out)  # typer usage errors print a short box; ours print one line
        assert _snapshot(runs) == before, label


def test_wrong_interface_model_is_refused_before_a_run(tmp_path: Path, session_cache: Path) -> None:
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("ids", TensorProto.INT64, ["b", "s"])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["b", "s"])
    graph = helper.make_graph([helper.make_node("Cast", ["ids"], ["logits"], to=TensorProto.FLOAT)], "g", [x], [y])
    path = tmp_path / "wrong.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    with pytest.raises(ModelError, match="input_ids"):
        run_benchmark(_config(tmp_path, session_cache, model_path=path), progress=False, stream=False)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_api_errors_are_typed(tmp_path: Path, session_cache: Path) -> None:
    with pytest.raises(ConfigError):
        run_benchmark(_config(tmp_path, session_cache, test_query_count=99999), progress=False, stream=False)
    bad = tmp_path / "bad.json"
    bad.write_text("[]")
    with pytest.raises(DatasetError):
        run_benchmark(_config(tmp_path, session_cache, dataset_path=bad), progress=False, stream=False)


@pytest.mark.parametrize(("signame", "code"), [("SIGINT", 130), ("SIGTERM", 143), ("SIGHUP", 129)])
def test_a_signal_to_the_cli_marks_the_run_interrupted_and_leaves_nothing_running(
    tmp_path: Path, session_cache: Path, signame: str, code: int
) -> None:
    import signal
    import subprocess
    import sys
    import time

    from orchestrator.run_status import is_alive

    cmd = [
        sys.executable,
        "-m",
        "orchestrator.cli",
        "run",
        "--runner",
        "local",
        "--test-query-count",
        "10833",
        "--mode",
        "accuracy",
        "--output-dir",
        str(tmp_path / "runs"),
        "--cache-dir",
        str(session_cache),
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    # Wait until the harness has started its LoadGen test (not merely its log file: on a loaded machine the
    # harness can still be importing then), then signal the CLI alone, as `kill -INT`, Slurm's time limit
    # (SIGTERM) or a closed terminal's shell (SIGHUP) would.
    wait_for_harness_line(tmp_path / "runs", "QSL samples", timeout=120)
    time.sleep(0.5)
    proc.send_signal(getattr(signal, signame))
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    (run_dir,) = list((tmp_path / "runs").iterdir())
    rec = RunRecord.load(run_dir)
    assert rec.status == "interrupted" and rec.finished_at
    assert rec.error == ("interrupted by the user (Ctrl-C)" if signame == "SIGINT" else f"interrupted by {signame}")
    assert json.loads((run_dir / "harness_result.json").read_text())["status"] == "interrupted"
    assert (run_dir / "harness.log").stat().st_size > 0
    assert b"run interrupted" in err
    assert rec.process is not None and rec.process.cli_pid == proc.pid and rec.process.harness_pid
    assert not is_alive(rec.process.harness_pid, rec.process.harness_started)  # nothing keeps running


def test_no_stop_grace_kills_the_harness_at_once_and_still_marks_the_run(tmp_path: Path, session_cache: Path) -> None:
    """--stop-grace-s 0 (a batch system that kills soon after its SIGTERM): the harness is killed without
    waiting for it to record itself; the CLI still marks run.json interrupted and leaves nothing running."""
    import signal
    import subprocess
    import sys

    from orchestrator.run_status import is_alive

    runs = tmp_path / "runs"
    cmd = [sys.executable, "-m", "orchestrator.cli", "run", "--runner", "local", "--test-query-count", "10833"]
    cmd += ["--mode", "accuracy", "--stop-grace-s", "0", "--output-dir", str(runs), "--cache-dir", str(session_cache)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_for_harness_line(runs, "QSL samples", timeout=120)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    (run_dir,) = list(runs.iterdir())
    rec = RunRecord.load(run_dir)
    assert rec.status == "interrupted" and rec.error == "interrupted by SIGTERM"
    assert b"did not stop within 0 s; killing it" in err
    assert rec.process is not None and rec.process.harness_pid
    assert not is_alive(rec.process.harness_pid, rec.process.harness_started)


STUB = "zoo:nlp/question_answering/bert-base/pytorch/huggingface/squad/base-none"


def test_zoo_stub_offline_fails_with_what_to_do(tmp_path: Path) -> None:
    # The stub reaches DeepSparse (its own venv, the default cache), which cannot download it here.
    cfg = RunConfig(
        runner="local",
        backend="deepsparse",
        model=STUB,
        mode="accuracy",
        test_query_count=4,
        output_dir=tmp_path / "runs",
    )
    try:
        run_benchmark(cfg, progress=False, stream=False)
    except ModelError as e:
        assert "SparseZoo" in str(e) and "pass the local ONNX file" in str(e)
    else:  # a machine with internet really downloads and runs it
        return
    (run_dir,) = list((tmp_path / "runs").iterdir())
    assert RunRecord.load(run_dir).status == "failed"


@pytest.mark.parametrize(
    "values, message",
    [
        ({"model": STUB}, "only --backend deepsparse"),
        ({"model": STUB, "backend": "deepsparse", "runner": "docker"}, "use --runner local"),
    ],
)
def test_zoo_stub_misuse_is_refused_before_a_run(tmp_path: Path, values: dict, message: str) -> None:
    cfg = RunConfig(output_dir=tmp_path / "runs", mode="accuracy", **values)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=message):
        run_benchmark(cfg, progress=False, stream=False)
    assert not (tmp_path / "runs").exists()
