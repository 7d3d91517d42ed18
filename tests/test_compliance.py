"""TEST01 compliance: the verification as MLPerf's scripts do it (unit), and on real LoadGen logs with the
embedded demo model (slow): verdict or fallback within the margin, the official performance FAIL in test
mode, tampered responses failing, and each broken compliance rule caught by the project's checker."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from orchestrator.harness.run import AUDIT_DIR, write_audit_config
from orchestrator.harness.spec import HarnessSpec
from orchestrator.submission.compliance import (
    baseline_log,
    fallback_passes,
    load_audit_config,
    read_log_entries,
    verify_accuracy,
    verify_performance,
)
from orchestrator.submission.rules import CLOSED_MINIMUMS, SINGLESTREAM_MIN_QUERIES


def _log(path: Path, entries: list[tuple[int, str]]) -> Path:
    lines = [f'{{ "seq_id" : {i}, "qsl_idx" : {q}, "data" : "{d}" }}' for i, (q, d) in enumerate(entries)]
    path.write_text("[\n" + ",\n".join(lines) + "\n]\n")
    return path


def _detail(path: Path, scenario: str, validity: str, value: float) -> Path:
    key = {"Offline": "result_samples_per_second", "SingleStream": "early_stopping_latency_ss"}[scenario]
    recs = [("effective_scenario", scenario), ("result_validity", validity), (key, value)]
    path.write_text("".join(f':::MLLOG {{"key": "{k}", "value": {json.dumps(v)}}}\n' for k, v in recs))
    return path


def test_audit_config_is_mlperfs_bert_file() -> None:
    audit = load_audit_config("TEST01")
    assert audit.settings == {
        "mode": "2",
        "accuracy_log_rng_seed": "720381539243781796",
        "accuracy_log_sampling_target": "4096",
    }
    assert "mlcommons/inference compliance/TEST01/bert/audit.config" in audit.text


def test_identical_responses_pass_and_one_changed_byte_fails(tmp_path: Path) -> None:
    acc = _log(tmp_path / "acc.json", [(0, "00aa"), (1, "11bb"), (2, "22cc")])
    same = _log(tmp_path / "same.json", [(2, "22CC"), (0, "00aa"), (0, "00aa")])
    assert verify_accuracy(acc, same).passed
    # The official script compares only the first byte by default; every byte counts here.
    tampered = _log(tmp_path / "t.json", [(2, "22cd"), (0, "00aa")])
    verdict = verify_accuracy(acc, tampered)
    assert not verdict.passed and verdict.perf_data_mismatch == 1
    assert verdict.text(test_mode=False).rstrip().endswith("TEST FAIL")
    assert not verify_accuracy(acc, _log(tmp_path / "none.json", [(7, "00")])).passed  # nothing matched


def test_baseline_holds_the_accuracy_runs_entries_for_the_logged_indices(tmp_path: Path) -> None:
    acc = _log(tmp_path / "acc.json", [(0, "00"), (1, "11"), (2, "22")])
    comp = _log(tmp_path / "c.json", [(2, "99"), (0, "98")])
    (tmp_path / "b.json").write_bytes(baseline_log(acc, comp))
    assert [(e["qsl_idx"], e["data"]) for e in read_log_entries(tmp_path / "b.json")] == [(0, "00"), (2, "22")]


def test_fallback_margin_follows_the_benchmark() -> None:
    assert fallback_passes("bert-99", 89.5, 90.0)  # 0.56%
    assert not fallback_passes("bert-99.9", 89.5, 90.0)
    assert fallback_passes("bert-99.9", 89.95, 90.0)
    assert not fallback_passes("bert-99", 0.0, 90.0)


def test_verify_performance_as_mlperfs_script(tmp_path: Path) -> None:
    ref = _detail(tmp_path / "r.txt", "Offline", "VALID", 100.0)
    assert verify_performance(ref, _detail(tmp_path / "a.txt", "Offline", "VALID", 91.0)).passed
    assert verify_performance(ref, _detail(tmp_path / "b.txt", "Offline", "VALID", 89.0)).summary == (
        "TEST FAIL: Test score invalid"
    )
    short = verify_performance(ref, _detail(tmp_path / "c.txt", "Offline", "INVALID", 100.0))
    assert not short.passed and short.summary.startswith("TEST FAIL: Invalid results in")
    # SingleStream results of 0.2 ms or less get 20%.
    ss = _detail(tmp_path / "s.txt", "SingleStream", "VALID", 150_000)
    assert verify_performance(ss, _detail(tmp_path / "s2.txt", "SingleStream", "VALID", 175_000)).passed


def test_closed_minimums_come_from_one_table_per_round() -> None:
    for mins in CLOSED_MINIMUMS.values():
        assert mins.min_duration_ms == 600_000 and mins.offline_samples_per_query == 10_833
        assert mins.min_queries["SingleStream"] == 1024  # the checker's table, not read with early stopping
    assert SINGLESTREAM_MIN_QUERIES == 64


def _spec(tmp_path: Path, **kw: object) -> HarnessSpec:
    base = dict(
        target="onnxruntime-cpu",
        engine_class="m:C",
        execution_provider="CPUExecutionProvider",
        model_path="m.onnx",
        features_path="f.npz",
        run_dir=str(tmp_path),
        scenario="Offline",
        modes=["performance"],
    )
    return HarnessSpec.model_validate(base | kw)


def test_audit_config_only_for_a_compliance_pass_in_its_own_directory(tmp_path: Path) -> None:
    assert write_audit_config(_spec(tmp_path), tmp_path) == ""  # a normal pass reads no audit.config at all
    text = load_audit_config().text
    path = Path(write_audit_config(_spec(tmp_path, compliance_test="TEST01", audit_config=text), tmp_path))
    assert path == tmp_path.resolve() / AUDIT_DIR / "audit.config" and path.read_text() == text


# --- real LoadGen, the embedded demo model -----------------------------------------------------------
def _both_run(tmp_path: Path, cache: Path, scenario: str) -> Path:
    from orchestrator.api import run_benchmark
    from orchestrator.config import RunConfig

    cfg = RunConfig(
        runner="local", output_dir=tmp_path / "runs", cache_dir=cache, scenario=scenario, test_query_count=64
    )  # type: ignore[arg-type]
    return Path(run_benchmark(cfg, progress=False, stream=False).run_dir)


@pytest.fixture(scope="module")
def offline_pair(tmp_path_factory: pytest.TempPathFactory, session_cache: Path) -> tuple[Path, Path]:
    from orchestrator.workflows.compliance import run_compliance

    tmp = tmp_path_factory.mktemp("test01")
    run_dir = _both_run(tmp, session_cache, "Offline")
    result = run_compliance(run_dir, progress=False, stream=False)
    return run_dir, result.run_dir


@pytest.mark.slow
def test_test01_on_real_logs(offline_pair: tuple[Path, Path]) -> None:
    from orchestrator.runs import RunRecord

    run_dir, crun = offline_pair
    rec = RunRecord.load(crun)
    out = rec.results["compliance"]
    assert rec.compliance_test == "TEST01" and rec.verified_run == str(run_dir) and out["test_mode"]
    assert out["accuracy_passed"] or (out["fallback"] and out["fallback"]["passed"])
    # Test mode: MLPerf's verify_performance.py says the runs are invalid, never a pass.
    assert not out["performance_passed"] and out["performance"].startswith("TEST FAIL: Invalid results")
    assert out["verdict"].startswith("TEST MODE:") and out["verdict"].endswith("=> FAIL")
    test_dir = crun / "TEST01"
    assert {p.name for p in (test_dir / "performance" / "run_1").iterdir()} == {
        "mlperf_log_summary.txt",
        "mlperf_log_detail.txt",
    }
    detail = (crun / "performance" / "run_1" / "mlperf_log_detail.txt").read_text()
    assert (
        "Found Audit Config file" in detail
        and '"effective_accuracy_log_rng_seed", "value": 720381539243781796' in detail
    )
    # The audit.config sits only in the compliance run's own working directory.
    assert (crun / "audit" / "audit.config").is_file() and not list(run_dir.rglob("audit.config"))
    assert "Found Audit Config" not in (run_dir / "performance" / "run_1" / "mlperf_log_detail.txt").read_text()


@pytest.mark.slow
def test_tampered_responses_fail_and_the_fallback_decides(offline_pair: tuple[Path, Path], tmp_path: Path) -> None:
    from orchestrator.runs import RunRecord
    from orchestrator.workflows.compliance import verify_run

    run_dir, crun = offline_pair
    copy = tmp_path / crun.name
    shutil.copytree(crun, copy)
    log_path = copy / "performance" / "run_1" / "mlperf_log_accuracy.json"
    entries = json.loads(log_path.read_text())
    entries[0]["data"] = ("00" if entries[0]["data"][:2] != "00" else "11") + entries[0]["data"][2:]
    log_path.write_text(json.dumps(entries))
    result = verify_run(run_dir, RunRecord.load(run_dir), copy)
    assert not result.accuracy.passed and result.accuracy.perf_data_mismatch == 1
    assert "TEST FAIL" in (copy / "TEST01" / "verify_accuracy.txt").read_text()
    assert result.fallback is not None and result.fallback["margin_percent"] == 1.0
    assert {p.name for p in (copy / "TEST01" / "accuracy").iterdir()} == {
        "mlperf_log_accuracy.json",
        "accuracy.txt",
        "baseline_accuracy.txt",
        "compliance_accuracy.txt",
    }
    # Garbage for every response: the fallback's F1 delta is far outside the margin.
    for e in entries:
        e["data"] = "0000803f" * (len(e["data"]) // 8)
    log_path.write_text(json.dumps(entries))
    bad = verify_run(run_dir, RunRecord.load(run_dir), copy)
    assert bad.fallback is None or not bad.fallback["passed"]
    assert not bad.passed


def _closed_tree(tmp_path: Path, run_dir: Path, crun: Path) -> Path:
    """An open tree of the demo model, renamed into the closed layout, so the closed rules apply to it."""
    from orchestrator.submission.generate import GenerateOptions, load_runs, plan_submission, write_tree

    root = tmp_path / "sub"
    plan = plan_submission(load_runs([run_dir, crun]), GenerateOptions(division="open"), root)
    write_tree(plan, root)
    sub = root / "open" / plan.layout.submitter
    (sub / "model_mapping.json").unlink()
    for sj in (sub / "systems").glob("*.json"):
        data = json.loads(sj.read_text())
        data["division"] = "closed"
        sj.write_text(json.dumps(data))
    for model_dir in (sub / "results").glob("*/*"):
        model_dir.rename(model_dir.parent / "bert-99")
    (root / "closed").mkdir()
    (root / "open" / plan.layout.submitter).rename(root / "closed" / plan.layout.submitter)
    (root / "open").rmdir()
    return root


def _test01_findings(root: Path) -> set[str]:
    from orchestrator.submission.checker import check_submission

    return {str(f) for f in check_submission(root).findings if "TEST01" in f.path}


@pytest.mark.slow
def test_each_broken_compliance_rule_is_caught(offline_pair: tuple[Path, Path], tmp_path: Path) -> None:
    run_dir, crun = offline_pair
    root = _closed_tree(tmp_path, run_dir, crun)
    test01 = next(root.glob("closed/*/results/*/bert-99/Offline/TEST01"))
    base = _test01_findings(root)
    # What a test-mode run gives: the official performance FAIL and the short run; nothing else.
    assert any("the TEST01 performance check did not pass (TEST FAIL: Invalid results" in f for f in base)
    assert not any("missing" in f or "audit.config" in f for f in base), base

    def broken(change: object) -> set[str]:
        saved = tmp_path / "saved"
        shutil.copytree(test01, saved)
        try:
            change(test01)  # type: ignore[operator]
            return _test01_findings(root) - base
        finally:
            shutil.rmtree(test01, ignore_errors=True)
            saved.rename(test01)

    def fail_accuracy(d: Path) -> None:
        (d / "verify_accuracy.txt").write_text("TEST FAIL\n")

    def far_fallback(d: Path) -> None:
        fail_accuracy(d)
        (d / "accuracy" / "baseline_accuracy.txt").write_text('{"exact_match": 50.0, "f1": 60.0}\n')
        (d / "accuracy" / "compliance_accuracy.txt").write_text('{"exact_match": 80.0, "f1": 85.0}\n')

    def other_seed(d: Path) -> None:
        p = d / "performance" / "run_1" / "mlperf_log_detail.txt"
        p.write_text(p.read_text().replace("720381539243781796", "1"))

    assert any("verify_accuracy.txt: is missing" in f for f in broken(lambda d: (d / "verify_accuracy.txt").unlink()))
    assert any(
        "verify_performance.txt: is missing" in f for f in broken(lambda d: (d / "verify_performance.txt").unlink())
    )
    assert any("baseline_accuracy.txt: is missing" in f for f in broken(fail_accuracy))
    assert any("more than the 1% bert-99 allows" in f for f in broken(far_fallback))
    assert any("accuracy_log_rng_seed is 1" in f for f in broken(other_seed))
    assert any(
        "mlperf_log_detail.txt: is missing" in f
        for f in broken(lambda d: (d / "performance" / "run_1" / "mlperf_log_detail.txt").unlink())
    )
    assert any("needs the TEST01 compliance run" in f for f in broken(lambda d: shutil.rmtree(d)))
