"""`mlperf-bert submission generate | check | run`: the Typer sub-app, and the whole flow on the embedded model."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from cli_support import invoke

from orchestrator.commands.submission_cmd import EXIT_TEST_MODE
from orchestrator.config import ExecutionMode, Mode, Scenario


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


def submission(*args: str | Path):
    """`mlperf-bert submission ARGS...`, through the CLI's one error edge."""
    return invoke(["submission", *map(str, args)])


@pytest.fixture(scope="session")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return lr.shared_runs(tmp_path_factory)


@pytest.fixture(scope="module")
def generated(runs, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "subs"
    res = submission(
        "generate",
        str(runs["Offline"]),
        str(runs["SingleStream"]),
        "--submission-dir",
        str(out),
        "--submitter",
        "TeamX",
    )
    assert res.exit_code == 0, res.output
    assert "TEST MODE" in res.output and "mlperf_submission_short.tar.gz" in res.output
    assert f"  {out / 'summary.csv'}" in res.stdout.splitlines()  # every file written is listed
    assert res.stderr.count("not detected") <= 1  # once per system, not once per run of it
    return out


def test_generate_refuses_a_second_short_attempt(generated, runs):
    res = submission("generate", str(runs["Offline"]), str(runs["SingleStream"]), "--submission-dir", str(generated))
    assert res.exit_code == 1
    last = res.stderr.splitlines()[-1]
    assert last.startswith("error: ") and "attempt short already exists" in last and "--submission-dir" in last


def test_check_exit_codes(generated, tmp_path):
    tree = generated / "mlperf_submission_short"
    res = submission("check", str(tree))
    assert res.exit_code == EXIT_TEST_MODE, res.output
    assert "NOT a valid MLPerf result" in res.output
    assert "pass --allow-test-mode" in res.stderr.splitlines()[-1]  # why exit 3, and what accepts it
    assert submission("check", str(tree), "--allow-test-mode").exit_code == 0
    # the tarball is checked the same way
    res = submission("check", str(generated / "mlperf_submission_short.tar.gz"), "--allow-test-mode")
    assert res.exit_code == 0 and "TEST MODE" in res.output
    broken = tmp_path / "broken"
    shutil.copytree(tree, broken)
    (next(broken.glob("open/TeamX/results/*/demo-int8/Offline")) / "user.conf").unlink()
    res = submission("check", str(broken), "--allow-test-mode")
    assert res.exit_code == 1
    assert "ERROR open/TeamX/results/" in res.output and "Offline/user.conf: user.conf is missing" in res.output
    assert "INVALID: 1 problem(s)" in res.output


def test_check_json(generated):
    res = submission("check", str(generated / "mlperf_submission_short"), "--json", "--allow-test-mode")
    data = json.loads(res.output)
    assert data["verdict"] == "test-mode" and data["version"] == "v6.1"
    assert {r["scenario"] for r in data["results"]} == {"Offline", "SingleStream"}
    assert all(f["kind"] in ("test-mode", "note") for f in data["findings"])


def test_check_refuses_a_tarball_with_a_link(tmp_path):
    import tarfile

    archive = tmp_path / "x.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo("open/evil")
        info.type = tarfile.SYMTYPE
        info.linkname = "/etc/passwd"
        tar.addfile(info)
    res = submission("check", str(archive))
    assert res.exit_code == 2 and "not a plain file or folder" in res.output


def test_run_runs_each_scenario_then_generates(runs, tmp_path, monkeypatch):
    """Unit test of the flow with the expensive call replaced (the real one is test_run_end_to_end)."""
    calls = []

    def fake_run_benchmark(cfg, *, progress=True, argv=None, **_):
        calls.append((cfg, argv))
        return SimpleNamespace(run_dir=runs[cfg.scenario.value])

    import orchestrator.workflows.benchmark

    monkeypatch.setattr(orchestrator.workflows.benchmark, "run_benchmark", fake_run_benchmark)
    out = tmp_path / "subs"
    res = submission(
        "run",
        "--test-query-count",
        "100",
        "--batch-size",
        "8",
        "--output-dir",
        str(tmp_path / "r"),
        "--submission-dir",
        str(out),
    )
    assert res.exit_code == 0, res.output
    assert [c.scenario for c, _ in calls] == [Scenario.Offline, Scenario.SingleStream]
    for cfg, argv in calls:
        assert cfg.mode is Mode.both and cfg.test_query_count == 100 and cfg.batch_size == 8
        assert cfg.execution_mode is ExecutionMode.test and cfg.output_dir == tmp_path / "r"
        assert argv == [
            "mlperf-bert",
            "run",
            "--scenario",
            cfg.scenario.value,
            "--mode",
            "both",
            "--test-query-count",
            "100",
            "--batch-size",
            "8",
            "--output-dir",
            str(tmp_path / "r"),
        ]
    assert (out / "mlperf_submission_short.tar.gz").is_file()


def test_run_refuses_too_few_singlestream_queries(tmp_path, monkeypatch):
    import orchestrator.workflows.benchmark

    monkeypatch.setattr(orchestrator.workflows.benchmark, "run_benchmark", lambda *a, **k: pytest.fail("must not run"))
    res = submission("run", "--test-query-count", "20", "--submission-dir", str(tmp_path / "subs"))
    assert res.exit_code == 2 and "needs at least 64 queries" in res.output


@pytest.mark.slow
def test_run_end_to_end_on_the_embedded_model(tmp_path, session_cache):
    """The README flow for real: the embedded demo model, local runner, short runs, then the checker."""
    out = tmp_path / "subs"
    res = submission(
        "run",
        "--test-query-count",
        "64",
        "--runner",
        "local",
        "--output-dir",
        str(tmp_path / "runs"),
        "--cache-dir",
        str(session_cache),
        "--submission-dir",
        str(out),
        "--json",
    )
    assert res.exit_code == 0, res.output
    data = json.loads(res.output[res.output.index("{") :])
    assert data["verdict"] == "test-mode" and data["attempt"] == "short"
    summary = json.loads((out / "mlperf_submission_short_summary.json").read_text())
    recs = {r["scenario"]: r for r in summary["results"]}
    assert sorted(recs) == ["Offline", "SingleStream"]
    assert recs["Offline"]["accuracy"]["samples"] == 64
    assert 50 < recs["Offline"]["accuracy"]["f1"] <= 100  # the demo model answers most questions
    check = submission("check", str(out / "mlperf_submission_short"))
    assert check.exit_code == EXIT_TEST_MODE, check.output
    # The attempt's page is written beside its artifacts (issue 18): the checker's verdict and each result.
    page = (out / "mlperf_submission_short_report.html").read_text()
    assert "TEST MODE" in page and "Offline" in page and "SingleStream" in page


def test_check_verifies_hashes_with_run_dirs(generated, runs):
    tree = generated / "mlperf_submission_short"
    args = [
        "check",
        str(tree),
        "--allow-test-mode",
        "--run-dir",
        str(runs["Offline"]),
        "--run-dir",
        str(runs["SingleStream"]),
    ]
    res = submission(*args)
    assert res.exit_code == 0, res.output
    assert "could not be verified" not in res.output
