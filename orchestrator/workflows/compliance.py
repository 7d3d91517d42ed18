"""`mlperf-bert compliance run --test TEST01 RUN_DIR`: the compliance test of one run, MLPerf's way.

The verified run (accuracy + performance, as `submission run` makes them) names everything: its run.json
holds the typed RunConfig, which runs again as a performance pass through the same runner and options,
with MLPerf's audit.config in a working directory of the compliance run's own. Then the verification
(orchestrator.submission.compliance) writes MLPerf's files into `<compliance run>/TEST01/`:

    TEST01/verify_accuracy.txt  verify_performance.txt
    TEST01/accuracy/mlperf_log_accuracy.json  accuracy.txt  [baseline_accuracy.txt  compliance_accuracy.txt]
    TEST01/performance/run_1/mlperf_log_summary.txt  mlperf_log_detail.txt

the layout the v6.1 checker reads under results/<system>/<model>/<scenario>/TEST01/ (the generator copies
it there). The fallback files are written when the responses differ (expected with dynamic int8, whose
scales depend on the batch, and the batches on the order LoadGen issues).
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.config import Mode
from orchestrator.errors import ConfigError, RunError
from orchestrator.runs import RunRecord
from orchestrator.submission.accuracy_files import parse_accuracy_line
from orchestrator.submission.compliance import (
    AccuracyVerdict,
    PerformanceVerdict,
    baseline_log,
    delta_percent,
    fallback_passes,
    load_audit_config,
    verify_accuracy,
    verify_performance,
)
from orchestrator.submission.rules import (
    ACCURACY_LOG,
    ACCURACY_TXT,
    BASELINE_ACCURACY_TXT,
    COMPLIANCE_ACCURACY_TXT,
    COMPLIANCE_DELTA_PERCENT,
    DETAIL_LOG,
    MLPERF_MODELS,
    SUMMARY_LOG,
    TEST01,
    VERIFY_ACCURACY_TXT,
    VERIFY_PERFORMANCE_TXT,
)
from orchestrator.workflows import benchmark

log = logging.getLogger(__name__)

TESTS = (TEST01,)
SCORING_DIR = "compliance_scoring"  # beside TEST01/: the baseline log and the scorer's working files


@dataclass
class ComplianceResult:
    test: str
    scenario: str
    verified_run: Path
    run_dir: Path  # the compliance run
    test_dir: Path  # <run_dir>/TEST01: MLPerf's files
    test_mode: bool
    accuracy: AccuracyVerdict
    performance: PerformanceVerdict
    fallback: dict[str, Any] | None = None  # baseline/compliance F1, delta %, margin, passed
    notes: list[str] = field(default_factory=list)

    @property
    def accuracy_passed(self) -> bool:
        return self.accuracy.passed or bool(self.fallback and self.fallback["passed"])

    @property
    def passed(self) -> bool:
        return self.accuracy_passed and self.performance.passed

    def verdict_line(self) -> str:
        acc = "TEST PASS" if self.accuracy.passed else "TEST FAIL"
        parts = [
            f"{self.test} {self.scenario}: accuracy {acc} "
            f"({self.accuracy.perf_qsl_idx_match} responses compared, {self.accuracy.perf_data_mismatch} differ)"
        ]
        if self.fallback is not None:
            fb = self.fallback
            parts.append(
                f"fallback F1 {fb['baseline_f1']:.3f} vs {fb['compliance_f1']:.3f}, delta {fb['delta_percent']:.3f}% "
                f"{'<=' if fb['passed'] else 'exceeds'} {fb['margin_percent']:g}% "
                f"{'PASS' if fb['passed'] else 'FAIL'}"
            )
        parts.append(f"performance {self.performance.summary}")
        line = "; ".join(parts) + f" => {'PASS' if self.passed else 'FAIL'}"
        return f"TEST MODE: {line}" if self.test_mode else line

    def as_json(self) -> dict[str, Any]:
        return {
            "test": self.test,
            "scenario": self.scenario,
            "verified_run": str(self.verified_run),
            "run_dir": str(self.run_dir),
            "test_mode": self.test_mode,
            "passed": self.passed,
            "accuracy_passed": self.accuracy.passed,
            "accuracy_counts": self.accuracy.__dict__,
            "fallback": self.fallback,
            "performance_passed": self.performance.passed,
            "performance": self.performance.summary,
            "verdict": self.verdict_line(),
        }


def load_verified_run(run_dir: Path) -> RunRecord:
    record = RunRecord.load(run_dir)
    if record.compliance_test:
        raise ConfigError(f"{run_dir} is itself a {record.compliance_test} compliance run; pass the run it verifies")
    if record.status != "succeeded":
        raise ConfigError(f"run {run_dir} has status {record.status!r}; only a succeeded run can be verified")
    if sorted(record.modes) != ["accuracy", "performance"]:
        raise ConfigError(
            f"run {run_dir} ran only {', '.join(record.modes)}; TEST01 compares with both its accuracy and its "
            "performance logs, so verify a run made with --mode both (as `submission run` makes)"
        )
    return record


def run_compliance(
    run_dir: Path,
    *,
    test: str = TEST01,
    benchmark_model: str = "bert-99",
    progress: bool = True,
    stream: bool = True,
    argv: list[str] | None = None,
    run_benchmark: Callable[..., Any] | None = None,
) -> ComplianceResult:
    """Run `test` for the run in run_dir and verify it; the compliance run lands beside the verified one."""
    if test not in TESTS:
        raise ConfigError(f"--test {test!r} is not a compliance test bert needs; choose {', '.join(TESTS)}")
    if benchmark_model not in MLPERF_MODELS:
        raise ConfigError(f"--benchmark {benchmark_model!r} is not one of {', '.join(MLPERF_MODELS)}")
    run_dir = run_dir.resolve()
    record = load_verified_run(run_dir)
    audit = load_audit_config(test)
    config = record.config.model_copy(update={"mode": Mode.performance})
    if run_benchmark is None:
        run_benchmark = benchmark.run_benchmark  # looked up now, so that a test can stand in for it
    log.info("%s for %s (%s): the performance pass again with %s", test, run_dir.name, record.scenario, audit.path)
    result = run_benchmark(
        config,
        progress=progress,
        stream=stream,
        argv=argv,
        audit=benchmark.AuditRequest(test=test, audit_config=audit.text, verified_run=run_dir),
    )
    crun = Path(result.run_dir)
    outcome = verify_run(run_dir, record, crun, test=test, benchmark_model=benchmark_model)
    crec = RunRecord.load(crun)
    crec.results["compliance"] = outcome.as_json()
    crec.save(crun)
    log.info("%s", outcome.verdict_line())
    return outcome


def verify_run(
    verified: Path, record: RunRecord, crun: Path, *, test: str = TEST01, benchmark_model: str = "bert-99"
) -> ComplianceResult:
    """Verify the compliance run crun against the verified run and write MLPerf's files into crun/<test>/."""
    test_mode = record.test_mode
    ref_acc_log = verified / "accuracy" / ACCURACY_LOG
    comp_dir = crun / "performance" / "run_1"
    comp_log = comp_dir / ACCURACY_LOG
    test_dir = crun / test
    if test_dir.exists():
        shutil.rmtree(test_dir)
    acc_out = test_dir / "accuracy"
    perf_out = test_dir / "performance" / "run_1"
    acc_out.mkdir(parents=True)
    perf_out.mkdir(parents=True)

    accuracy = verify_accuracy(ref_acc_log, comp_log)
    (test_dir / VERIFY_ACCURACY_TXT).write_text(accuracy.text(test_mode))
    performance = verify_performance(verified / "performance" / "run_1" / DETAIL_LOG, comp_dir / DETAIL_LOG)
    (test_dir / VERIFY_PERFORMANCE_TXT).write_text(performance.text(test_mode))
    for name in (SUMMARY_LOG, DETAIL_LOG):
        shutil.copyfile(comp_dir / name, perf_out / name)
    shutil.copyfile(comp_log, acc_out / ACCURACY_LOG)

    scoring = crun / SCORING_DIR
    if scoring.exists():
        shutil.rmtree(scoring)
    notes: list[str] = []
    compliance_score = _score(record, comp_log, scoring / "compliance", notes)
    # accuracy.txt: the accuracy script's result on the compliance log and its hash (the truncation tool
    # and the checker read the hash to tie a truncated log to the full one).
    if compliance_score is not None:
        shutil.copyfile(scoring / "compliance" / ACCURACY_TXT, acc_out / ACCURACY_TXT)
    fallback = None
    if not accuracy.passed:
        base_dir = scoring / "baseline"
        base_dir.mkdir(parents=True)
        (base_dir / ACCURACY_LOG).write_bytes(baseline_log(ref_acc_log, comp_log))
        baseline_score = _score(record, base_dir / ACCURACY_LOG, base_dir, notes)
        if baseline_score is not None and compliance_score is not None:
            shutil.copyfile(base_dir / ACCURACY_TXT, acc_out / BASELINE_ACCURACY_TXT)
            shutil.copyfile(scoring / "compliance" / ACCURACY_TXT, acc_out / COMPLIANCE_ACCURACY_TXT)
            fallback = {
                "baseline_f1": baseline_score,
                "compliance_f1": compliance_score,
                "delta_percent": delta_percent(baseline_score, compliance_score),
                "margin_percent": COMPLIANCE_DELTA_PERCENT[benchmark_model],
                "passed": fallback_passes(benchmark_model, baseline_score, compliance_score),
            }
    return ComplianceResult(
        test=test,
        scenario=record.scenario,
        verified_run=verified,
        run_dir=crun,
        test_dir=test_dir,
        test_mode=test_mode,
        accuracy=accuracy,
        performance=performance,
        fallback=fallback,
        notes=notes,
    )


def _score(record: RunRecord, log_path: Path, work_dir: Path, notes: list[str]) -> float | None:
    """Score one accuracy log with the project's accuracy script (which reproduces MLPerf's); its F1, or
    None (with a note) when no question of it can be scored."""
    from orchestrator.accuracy import score_run  # numpy: only once there is a log to score

    work_dir.mkdir(parents=True, exist_ok=True)
    if log_path.parent != work_dir:
        shutil.copyfile(log_path, work_dir / ACCURACY_LOG)
    if record.features is None:
        raise ConfigError(f"run {record.run_id} records no features file; rerun it with this version")
    try:
        score_run(
            work_dir,
            Path(record.features.path),
            Path(record.dataset.path),
            Path(record.vocab.path),
            record.model_meta.get("reference_f1"),
        )
    except RunError as exc:
        notes.append(f"{work_dir.name}: {exc}")
        log.warning("%s cannot be scored: %s", log_path, exc)
        return None
    scores = parse_accuracy_line((work_dir / ACCURACY_TXT).read_text().splitlines())
    return scores[1] if scores else None
