"""generate -> check -> package: what `mlperf-bert submission generate` does, as one function."""

from __future__ import annotations

import logging
import os
import shlex
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.errors import SubmissionError
from orchestrator.runs import utc_now
from orchestrator.submission.checker import check_submission
from orchestrator.submission.findings import CheckReport
from orchestrator.submission.generate import GenerateOptions, Plan, load_runs, plan_submission, write_tree
from orchestrator.submission.package import (
    PREFIX,
    Step,
    attempt_paths,
    check_output_dir,
    choose_attempt,
    make_output_dir,
    remove_made,
    write_artifacts,
)
from orchestrator.submission.rules import DEMO_MODEL_LABEL, TEST_MODE_LABEL

log = logging.getLogger(__name__)

# What each SUT kind does (orchestrator/harness/sut.py), for the .md highlights.
SUT_OPTIMIZATIONS = {
    "optimized": "samples sorted by real length, batched, each batch cut to its longest row",
    "reference": "MLPerf reference behaviour: batch 1, every sample padded to 384",
}


@dataclass
class SubmissionResult:
    attempt: str
    tree: Path
    report: CheckReport
    artifacts: dict[str, Path] = field(default_factory=dict)

    @property
    def test_mode(self) -> bool:
        return self.report.verdict == "test-mode"


def _steps(plan: Plan, generate_cmd: str, started: str) -> list[Step]:
    steps = [
        Step(
            name=f"run {r.name} ({r.record.scenario}, {'+'.join(r.record.modes)})",
            command=shlex.join(r.record.command) if r.record.command else "(not recorded)",
            started_at=r.record.started_at,
            finished_at=r.record.finished_at,
        )
        for r in sorted(plan.runs, key=lambda r: (r.record.started_at or "", r.name))
    ]
    steps.append(
        Step(name="generate + check + package", command=generate_cmd, started_at=started, finished_at=utc_now())
    )
    return steps


def _highlights(plan: Plan, report: CheckReport) -> list[str]:
    out = []
    if plan.test_mode:
        out.append(f"{TEST_MODE_LABEL}: LoadGen min/max_query_count and target_qps shortened the runs.")
    for e in plan.entries:
        rec = e.performance.record
        cfg = rec.config
        label = f" ({DEMO_MODEL_LABEL})" if e.demo_model else ""
        sut = cfg.sut.value
        out.append(
            f"{e.scenario}: {rec.target} on {rec.execution_provider}, model {rec.model.name or rec.model.path} "
            f"({rec.model_meta.get('precision') or 'precision unspecified'}){label}, {sut} SUT "
            f"({SUT_OPTIMIZATIONS.get(sut, 'unspecified')}), batch size {rec.batch_size_ran or 'n/a'}, "
            f"threads {cfg.threads or 'default'}"
        )
    for row in report.results:
        value = "n/a" if row.result is None else f"{row.result:.3f}"
        acc = f", F1 {row.f1:.3f}" if row.f1 is not None else ""
        out.append(f"{row.scenario} result: {value} {row.units}{acc}")
    return out


def generate_submission(
    run_dirs: list[Path],
    output_dir: Path,
    options: GenerateOptions,
    *,
    attempt: str | None = None,
    package: bool = True,
    keep_invalid: bool = False,
    argv: list[str] | None = None,
) -> SubmissionResult:
    """Build attempt N's tree under output_dir, check it, and (unless package=False) write the artifacts.

    Raises SubmissionError when the inputs cannot make a submission or the tree breaks a rule; nothing of
    an earlier attempt is ever touched."""
    started = utc_now()
    runs = load_runs(run_dirs)
    check_output_dir(output_dir)
    plan = plan_submission(runs, options, root=output_dir)  # validates every system before any write
    attempt = choose_attempt(output_dir, attempt, plan.test_mode)
    made = make_output_dir(output_dir)  # taken away again (when still empty) if no attempt is made
    done = False
    try:
        result = _make_attempt(plan, output_dir, options, attempt, package, keep_invalid, argv, started)
        done = True
    finally:
        if not done:
            remove_made(made)
    return result


def _make_attempt(
    plan: Plan,
    output_dir: Path,
    options: GenerateOptions,
    attempt: str,
    package: bool,
    keep_invalid: bool,
    argv: list[str] | None,
    started: str,
) -> SubmissionResult:
    tree = attempt_paths(output_dir, attempt)["tree"]
    tmp = output_dir / f".tmp-{PREFIX}{attempt}-{os.getpid()}"
    try:
        write_tree(plan, tmp)
        try:
            tmp.rename(tree)
        except OSError as e:
            raise SubmissionError(
                f"cannot move the new tree to {tree} ({e.strerror}); another generate may be writing attempt "
                f"{attempt}, pass --attempt with a new number"
            ) from None
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    full_logs = [e.accuracy.dir / "accuracy" / "mlperf_log_accuracy.json" for e in plan.entries]
    report = check_submission(tree, options.version, full_logs)
    verdict_valid = report.verdict == "valid"
    for row in report.results:
        row.valid = verdict_valid
    if report.errors:
        if not keep_invalid:
            shutil.rmtree(tree)
        where = f"kept in {tree}" if keep_invalid else "removed (pass --keep-invalid to inspect it)"
        raise SubmissionError(
            f"the generated submission breaks {len(report.errors)} rule(s), so nothing was packaged and the tree was "
            f"{where}: " + "; ".join(str(f) for f in report.errors)
        )
    result = SubmissionResult(attempt=attempt, tree=tree, report=report)
    if package:
        cmd = shlex.join(argv if argv is not None else sys.argv)
        systems = {sid: s.description for sid, s in plan.systems.items()}
        demo = {e.model_dir: e.demo_model for e in plan.entries}
        weights = {e.model_dir: str(e.performance.record.model_meta.get("precision") or "") for e in plan.entries}
        packaged = False
        try:
            result.artifacts = write_artifacts(
                output_dir,
                attempt,
                tree,
                report,
                _steps(plan, cmd, started),
                systems,
                demo,
                _highlights(plan, report),
                weights,
            )
            packaged = True
        finally:
            if not packaged:  # no half-packaged attempt: its tree and whatever artifacts were written go
                _remove_attempt(output_dir, attempt)
    log.info("attempt %s: %s", attempt, report.summary_line())
    return result


def _remove_attempt(output_dir: Path, attempt: str) -> None:
    """Take away what this attempt wrote (choose_attempt made sure none of these paths was there before)."""
    for path in attempt_paths(output_dir, attempt).values():
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
