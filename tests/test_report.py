"""`mlperf-bert report`: the page of runs, sweeps and submissions.

Fast: malformed inputs are named and skipped, unknown statuses shown as given, the SUT's latency log, the
plots (y from zero, the chosen point, test mode in the title). Slow: real runs made here with the real
harness and the embedded demo model (succeeded, Server with its latencies, failed, interrupted), their
figures on the page, and the page opened in a real headless Chromium: no console error, a non-blank
screenshot of the expected size, no request beyond the file itself. Without Chromium the browser test
skips, except under MLPERF_BERT_REQUIRE_BROWSER=1 (CI, after .ci/run installs it), where it fails.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from browser_support import find_chromium, visit
from cli_support import invoke
from harness_support import wait_for_harness_line

from orchestrator import plots
from orchestrator.harness.latencies import LATENCIES_FILE, SAMPLES_FILE, LatencyLog
from orchestrator.html_report import write_report
from orchestrator.html_report.sources import collect
from orchestrator.submission.package import ENTRY_RE

REQUIRE_BROWSER = os.environ.get("MLPERF_BERT_REQUIRE_BROWSER") == "1"


def _record(run_id: str, **extra: object) -> dict:
    rec = {
        "run_id": run_id,
        "status": "succeeded",
        "execution_mode": "test",
        "test_mode": True,
        "scenario": "Offline",
        "modes": ["performance"],
        "target": "onnxruntime-cpu",
        "runner": "local",
        "config": {"sut": "optimized"},
        "model": {"name": "demo-int8", "path": "x.onnx"},
        "model_meta": {"precision": "int8", "demo": True, "reference_f1": 80.4},
        "engine_settings": {"instances": "2 (auto)"},
        "results": {"performance": {"samples_per_second": 123.456, "latency_percentiles_ms": {"90": 7.5}}},
    }
    rec.update(extra)
    return rec


def _write_run(root: Path, name: str, record: object) -> Path:
    run_dir = root / name
    run_dir.mkdir(parents=True)
    (run_dir / "run.json").write_text(record if isinstance(record, str) else json.dumps(record))
    return run_dir


def test_malformed_inputs_are_named_and_skipped_never_raised(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    _write_run(runs, "good", _record("good"))
    _write_run(runs, "not-json", "{oops")
    _write_run(runs, "a-list", "[]")
    _write_run(runs, "no-target", {k: v for k, v in _record("x").items() if k != "target"})
    _write_run(runs, "strange", _record("strange", status="abandoned", results={"performance": "nonsense"}))
    (runs / "half").mkdir()
    (runs / "half" / "harness.json").write_text("{}")
    (tmp_path / "a-file.txt").write_text("x")
    inputs = [runs, tmp_path / "missing", tmp_path / "a-file.txt", tmp_path / "empty"]
    (tmp_path / "empty").mkdir()
    sources = collect(inputs)
    assert [r.name for r in sources.runs] == ["good"]
    reasons = {s.path.name: s.reason for s in sources.skipped}
    assert "not valid JSON" in reasons["not-json"] and "not an object" in reasons["a-list"]
    assert "no target" in reasons["no-target"] and "results.performance" in reasons["strange"]
    assert "no run.json" in reasons["half"] and reasons["missing"] == "does not exist"
    assert "is a file" in reasons["a-file.txt"] and "holds no run" in reasons["empty"]
    summary = write_report(inputs, tmp_path / "out" / "report.html")
    page = summary.path.read_text()
    assert summary.runs == 1 and len(summary.skipped) == 8
    for name in ("not-json", "a-list", "no-target", "strange", "half", "missing"):
        assert name in page
    assert "123.46" in page and "TEST MODE" in page and "2 (auto)" in page


def test_an_unknown_status_is_shown_as_given(tmp_path: Path) -> None:
    _write_run(tmp_path, "gone", _record("gone", status="abandoned"))
    _write_run(tmp_path, "future", _record("future", status="paused-by-scheduler"))
    sources = collect([tmp_path])
    assert {r.name: r.status for r in sources.runs} == {"gone": "abandoned", "future": "paused-by-scheduler"}
    page = write_report([tmp_path], tmp_path / "r.html").path.read_text()
    assert '<span class="st-abandoned">abandoned</span>' in page
    assert '<span class="st-other">paused-by-scheduler</span>' in page


def test_the_page_replaces_only_its_own_earlier_page(tmp_path: Path) -> None:
    """-o onto a run's run.json (or any file it did not write) is refused and the file kept; its own page is
    replaced."""
    run_dir = _write_run(tmp_path / "runs", "good", _record("good"))
    before = (run_dir / "run.json").read_bytes()
    result = invoke(["report", str(tmp_path / "runs"), "-o", str(run_dir / "run.json")])
    assert result.exit_code == 2 and result.stderr.count("\n") == 1
    assert "exists and is not a page this command wrote" in result.stderr
    assert (run_dir / "run.json").read_bytes() == before
    page = tmp_path / "report.html"
    write_report([tmp_path / "runs"], page)
    first = page.read_text()
    write_report([tmp_path / "runs"], page)  # again: its own page, replaced
    assert page.read_text().count("good") == first.count("good")


def test_a_report_of_nothing_that_exists_is_refused(tmp_path: Path) -> None:
    """No page for inputs that are all missing (a typo); one missing among others is named on the page."""
    result = invoke(["report", str(tmp_path / "nosuch"), "-o", str(tmp_path / "r.html")])
    assert result.exit_code == 2 and "nosuch does not exist; pass run, runs, tune" in result.stderr
    assert not (tmp_path / "r.html").exists()


def test_a_failed_runs_error_is_escaped(tmp_path: Path) -> None:
    error = "engine option fusions='<b>bogus</b>' & more"
    _write_run(tmp_path, "bad", _record("bad", status="failed", error=error, results={}))
    page = write_report([tmp_path], tmp_path / "r.html").path.read_text()
    assert "fusions=&#x27;&lt;b&gt;bogus&lt;/b&gt;&#x27; &amp; more" in page
    assert "<b>bogus</b>" not in page


def test_the_cli_writes_the_page_and_refuses_a_folder_as_output(tmp_path: Path) -> None:
    run_dir = _write_run(tmp_path / "runs", "r1", _record("r1"))
    result = invoke(["report", str(run_dir), "-o", str(tmp_path / "page.html")])
    assert result.exit_code == 0, result.output
    assert "1 run(s)" in result.output and (tmp_path / "page.html").is_file()
    result = invoke(["report", str(run_dir), "-o", str(tmp_path)])
    assert result.exit_code == 2 and "is a folder" in result.output
    assert ENTRY_RE.match("mlperf_submission_short_report.html")  # submission run writes it beside its attempt


def test_latency_log_grows_and_marks_what_never_completed() -> None:
    log = LatencyLog(2)
    first = log.reserve(3, now=10.0, samples=[7, 3, 9])
    second = log.reserve(2, now=11.0)
    assert (first, second, log.count) == (0, 3, 5)
    assert log.samples().tolist() == [7, 3, 9, -1, -1]  # the QSL index per slot, -1 where none was given
    log.complete(np.array([0, 2]), now=10.5)
    log.complete(np.array([3]), now=11.25)
    ms = log.latencies_ms()
    assert ms.dtype == np.float32 and ms.shape == (5,)
    assert ms[0] == pytest.approx(500.0) and ms[3] == pytest.approx(250.0)
    assert np.isnan(ms[1]) and np.isnan(ms[4])


def test_sweep_plot_starts_at_zero_and_marks_the_chosen_point() -> None:
    points = {"threads auto, instances 2 (auto)": [plots.SweepPoint(1, 90.0), plots.SweepPoint(4, 100.0)]}
    svg = plots.sweep_chart(
        points,
        title="demo\nTEST MODE, 64 samples per trial",
        chosen=("threads auto, instances 2 (auto)", points["threads auto, instances 2 (auto)"][1]),
        fmt="svg",
    )
    assert svg is not None
    text = svg.decode()
    assert "chosen: batch 4, 100.0 samples/s" in text and "64 samples per trial" in text
    assert "instances 2 (auto)" in text and "TEST MODE" in text
    assert ">0<" in text or "> 0<" in text  # the y-axis is labelled from 0, not from ~90
    assert "http" not in plots.inline_svg(svg).replace("http://www.w3.org/", "")  # only the SVG namespaces


# ---- real runs ---------------------------------------------------------------------------------------------
def _model_with_an_unknown_op(path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    names = ("input_ids", "input_mask", "segment_ids")
    inputs = [helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", "seq"]) for n in names]
    outputs = [
        helper.make_tensor_value_info(n, TensorProto.FLOAT, ["batch", "seq"])
        for n in ("output_start_logits", "output_end_logits")
    ]
    node = helper.make_node(
        "NoSuchOp", list(names), ["output_start_logits", "output_end_logits"], domain="test.unknown"
    )
    graph = helper.make_graph([node], "broken", inputs, outputs)
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("test.unknown", 1)]
    onnx.save(helper.make_model(graph, opset_imports=opsets), path)


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "orchestrator.cli", *args]  # not -q: the harness's INFO line is waited for


@pytest.fixture(scope="module")
def real_runs(tmp_path_factory: pytest.TempPathFactory, session_cache: Path) -> Path:
    """Four runs made with the real harness and the demo model: succeeded (Offline, Server), failed, interrupted."""
    root = tmp_path_factory.mktemp("report-runs")
    runs = root / "runs"
    common = ["run", "--runner", "local", "--output-dir", str(runs), "--cache-dir", str(session_cache)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path.cwd()), os.environ.get("PYTHONPATH", "")])}
    # The interrupted one first, so that the harness line waited for can only be its own (with progress bars:
    # the runner writes harness.log through a buffer, which they fill).
    long = subprocess.Popen(
        _cli(*common, "--mode", "accuracy", "--test-query-count", "10833"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    wait_for_harness_line(runs, "QSL samples", timeout=120)
    time.sleep(0.5)
    long.send_signal(signal.SIGINT)
    long.communicate(timeout=60)
    assert long.returncode == 130
    ok = subprocess.run(_cli(*common, "--test-query-count", "24"), capture_output=True, text=True, env=env)
    assert ok.returncode == 0, ok.stderr
    assert "mlperf-bert report" in ok.stdout  # `run` says where a report can be made
    server = [
        *common,
        "--scenario",
        "Server",
        "--mode",
        "performance",
        "--test-query-count",
        "24",
        "--target-qps",
        "20",
    ]
    done = subprocess.run(_cli(*server), capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    # A model with the MLPerf interface that the engine cannot load (an operator it does not know): the host
    # checks only the interface, so the run is made and fails as the engine starts.
    broken = root / "unknown-op.onnx"
    _model_with_an_unknown_op(broken)
    bad = [*common, "--mode", "performance", "--test-query-count", "8", "--model-path", str(broken)]
    failed = subprocess.run(_cli(*bad), capture_output=True, text=True, env=env)
    assert failed.returncode != 0
    return runs


def _statuses(runs: Path) -> dict[str, str]:
    return {p.name: json.loads((p / "run.json").read_text())["status"] for p in runs.iterdir()}


@pytest.mark.slow
def test_the_report_of_real_runs_holds_their_figures(real_runs: Path, tmp_path: Path) -> None:
    assert sorted(_statuses(real_runs).values()) == ["failed", "interrupted", "succeeded", "succeeded"]
    summary = write_report([real_runs], tmp_path / "report.html")
    page = summary.path.read_text()
    assert summary.runs == 4 and not summary.skipped
    for run_dir in real_runs.iterdir():
        rec = json.loads((run_dir / "run.json").read_text())
        assert run_dir.name in page
        assert f">{rec['status']}<" in page
        perf = rec["results"].get("performance")
        if perf:
            assert f"{perf['samples_per_second']:,.2f}" in page
            assert f"{perf['latency_percentiles_ms']['90']:,.2f}" in page
            latencies = np.load(run_dir / "performance" / "run_1" / LATENCIES_FILE)
            assert latencies.shape == (perf["samples_issued"],) and not np.isnan(latencies).any()
            samples = np.load(run_dir / "performance" / "run_1" / SAMPLES_FILE)  # which QSL sample each was
            assert samples.shape == latencies.shape and samples.min() >= 0 and samples.max() < 10833
            # the SUT's own times sit just under LoadGen's (which also counts its own scheduling)
            assert np.percentile(latencies, 90) <= perf["latency_percentiles_ms"]["90"] * 1.05 + 5
        acc = rec["results"].get("accuracy")
        if acc:
            assert f"{acc['f1']:,.2f}" in page and f"{acc['ratio'] * 100:.1f}% of 80.4" in page
    assert "bound 130 ms" in page  # the Server run's latency chart draws the bound
    assert "issue-to-complete" in page and page.count("TEST MODE") >= 8
    assert "NoSuchOp" in page  # the failed run's error
    assert ">interrupted<" in page


@pytest.fixture
def chromium() -> str:
    """The browser, asked for before the runs are made: a skip then costs nothing."""
    path = find_chromium()
    if path is None:
        reason = "chromium is not installed (apt-get install -y chromium)"
        if REQUIRE_BROWSER:
            pytest.fail(f"{reason} (MLPERF_BERT_REQUIRE_BROWSER=1)")
        pytest.skip(reason)
    return path


@pytest.mark.slow
def test_the_page_renders_in_a_real_browser_and_fetches_nothing(chromium: str, real_runs: Path, tmp_path: Path) -> None:
    image = pytest.importorskip("PIL.Image", reason="Pillow (matplotlib's, the plot extra) reads the screenshot")
    page = write_report([real_runs], tmp_path / "report.html").path
    seen = visit(page, width=1280, height=900, chromium=chromium)
    assert seen.console_errors == []
    assert seen.requests == [page.resolve().as_uri()]  # the file itself, nothing else
    assert seen.title == "MLPerf BERT report"
    with image.open(io.BytesIO(seen.screenshot)) as shot:
        assert shot.size == (1280, 900)
        colours = shot.convert("RGB").getcolors(maxcolors=1 << 16)
    assert colours is None or len(colours) > 50  # text, badges, tables: not a blank page
    with image.open(io.BytesIO(seen.full_page)) as full:
        assert full.size[1] > 1500  # the whole page: tables and several charts
    (tmp_path / "screenshot.png").write_bytes(seen.full_page)
