"""The SCC artifacts of an attempt (tarball, _summary.json, .run, .tstamps, .md) and summary.csv."""

from __future__ import annotations

import csv
import importlib.util
import json
import sys
from pathlib import Path

import pytest

from orchestrator.errors import SubmissionError
from orchestrator.submission import GenerateOptions, generate_submission
from orchestrator.submission.package import check_output_dir, choose_attempt, existing_attempts


def _fixtures():
    name = "mlperf_bert_submission_fixtures"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            name, Path(__file__).parent / "fixtures" / "submission" / "loadgen_runs.py"
        )
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


lr = _fixtures()


@pytest.fixture(scope="session")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return lr.shared_runs(tmp_path_factory)


@pytest.fixture(scope="module")
def attempts(runs, tmp_path_factory) -> tuple[Path, list]:
    out = tmp_path_factory.mktemp("artifacts") / "subs"
    cmd = ["mlperf-bert", "submission", "generate", "--submitter", "Community"]
    first = generate_submission([runs["Offline"], runs["SingleStream"]], out, GenerateOptions(), argv=cmd)
    second = generate_submission([runs["Offline"]], out, GenerateOptions(), attempt="1", argv=cmd)
    return out, [first, second]


def test_all_five_artifacts_per_attempt_and_nothing_else(attempts):
    out, (first, _second) = attempts
    names = sorted(p.name for p in out.iterdir())
    expected = []
    for n in ("1", "short"):
        expected += [
            f"mlperf_submission_{n}",
            f"mlperf_submission_{n}.md",
            f"mlperf_submission_{n}.run",
            f"mlperf_submission_{n}.tar.gz",
            f"mlperf_submission_{n}.tstamps",
            f"mlperf_submission_{n}_summary.json",
        ]
    assert names == sorted(expected + ["summary.csv"])
    assert set(first.artifacts) == {".tar.gz", "_summary.json", ".run", ".tstamps", ".md", "summary.csv"}
    assert existing_attempts(out) == ["short", "1"]


def test_summary_json_one_record_per_result(attempts):
    out, _ = attempts
    data = json.loads((out / "mlperf_submission_short_summary.json").read_text())
    assert data["verdict"] == "test-mode" and "not a valid MLPerf result" in data["label"]
    recs = {r["scenario"]: r for r in data["results"]}
    assert sorted(recs) == ["Offline", "SingleStream"]
    off = recs["Offline"]
    for key in (
        "submitter",
        "system",
        "model",
        "scenario",
        "metric",
        "units",
        "accuracy",
        "division",
        "framework",
        "host_processor",
        "accelerator",
        "validity",
    ):
        assert off[key] not in (None, ""), key
    assert (off["submitter"], off["division"], off["model"], off["mlperf_model"]) == (
        "Community",
        "open",
        "demo-int8",
        "bert-99",
    )
    assert off["metric"] == "throughput" and off["units"] == "Samples/s" and off["result"] > 0
    assert recs["SingleStream"]["metric"] == "latency_ms" and recs["SingleStream"]["units"] == "Latency (ms)"
    assert off["accuracy"] == {"exact_match": 0.0, "f1": 0.0, "samples": 50}
    assert off["validity"] == "test-mode" and off["demo_model"] is True
    assert off["framework"] == "onnxruntime 1.20.1 (CPUExecutionProvider)"


def test_run_and_tstamps_list_every_command(attempts, runs):
    out, _ = attempts
    run_text = (out / "mlperf_submission_short.run").read_text()
    assert "mlperf-bert run --scenario Offline --test-query-count 100" in run_text
    assert "mlperf-bert run --scenario SingleStream --test-query-count 100" in run_text
    assert run_text.rstrip().endswith("mlperf-bert submission generate --submitter Community")
    stamps = [ln.split("\t") for ln in (out / "mlperf_submission_short.tstamps").read_text().splitlines()[1:]]
    assert len(stamps) == 3
    assert stamps[0][1:] == ["2025-01-01T00:00:00.000Z", "2025-01-01T00:00:05.000Z"]
    assert stamps[2][0] == "generate + check + package" and stamps[2][1] <= stamps[2][2]


def test_markdown_has_platform_highlights_and_labels(attempts):
    out, _ = attempts
    md = (out / "mlperf_submission_short.md").read_text()
    assert "TEST MODE" in md and "DEMO MODEL" in md
    assert "## Platform" in md and "Framework: onnxruntime 1.20.1 (CPUExecutionProvider)" in md
    assert "batch size 16" in md and "optimized SUT" in md
    # one truth: the batch that ran (run.json engine_settings max_batch), not the configured 16
    highlights = {line.split(":")[0]: line for line in md.splitlines() if line.startswith("- ")}
    assert "batch size 16," in highlights["- Offline"] and "batch size 1," in highlights["- SingleStream"]
    assert "| Offline |" in md and "| SingleStream |" in md and "test-mode" in md


def test_summary_csv_covers_every_attempt(attempts):
    out, _ = attempts
    with (out / "summary.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert [(r["Attempt"], r["Scenario"]) for r in rows] == [
        ("short", "Offline"),
        ("short", "SingleStream"),
        ("1", "Offline"),
    ]
    off = rows[0]
    assert off["Organization"] == "Community" and off["Division"] == "open" and off["MlperfModel"] == "bert-99"
    assert off["Units"] == "Samples/s" and float(off["Result"]) > 0 and off["Validity"] == "test-mode"
    assert off["total_accelerators"] == "0" and off["version"] == "v6.1" and off["weight_data_types"] == "int8"


def test_attempt_numbers(tmp_path):
    assert choose_attempt(tmp_path, None, test_mode=True) == "short"
    assert choose_attempt(tmp_path, None, test_mode=False) == "1"
    (tmp_path / "mlperf_submission_1").mkdir()
    (tmp_path / "mlperf_submission_3.tar.gz").write_text("")
    assert choose_attempt(tmp_path, None, test_mode=False) == "4"
    with pytest.raises(SubmissionError, match="attempt 3 already exists"):
        choose_attempt(tmp_path, "3", test_mode=False)
    with pytest.raises(SubmissionError, match="must be 'short' or a positive number"):
        choose_attempt(tmp_path, "../x", test_mode=False)
    check_output_dir(tmp_path)  # only attempts: accepted
    (tmp_path / "other").mkdir()
    with pytest.raises(SubmissionError, match=r"not submission attempts \(other\)"):
        check_output_dir(tmp_path)


def test_run_claiming_valid_with_short_logs_is_refused(runs, tmp_path):
    a = lr.clone_run(runs["Offline"], tmp_path / "r", test_mode=False, execution_mode="valid")
    with pytest.raises(SubmissionError, match='README.md does not say "TEST MODE"'):
        generate_submission([a], tmp_path / "out", GenerateOptions())
    assert not (tmp_path / "out" / "mlperf_submission_1").exists()  # the invalid tree is removed
