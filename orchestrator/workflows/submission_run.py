"""`mlperf-bert submission run`: accuracy + performance for each scenario, then generate, check, package.

The equivalent of the SCC tutorial's `generate-run-cmds _submission`, without its checker patches: a
test-mode flow gives a submission labelled test-mode everywhere.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from orchestrator.assets import resolve_model
from orchestrator.config import (
    CONFIG_FLAG,
    ExecutionMode,
    Mode,
    RunConfig,
    RunOverrides,
    Scenario,
    resolve_config,
    run_flags,
)
from orchestrator.errors import ConfigError
from orchestrator.html_report import write_report
from orchestrator.paths import default_cache_dir
from orchestrator.submission.generate import GenerateOptions, check_model
from orchestrator.submission.package import PREFIX, choose_attempt, probe_output_dir
from orchestrator.submission.rules import SINGLESTREAM_MIN_QUERIES
from orchestrator.submission.submit import SubmissionResult, generate_submission
from orchestrator.workflows import benchmark, compliance

log = logging.getLogger(__name__)

REPORT_SUFFIX = "_report.html"  # beside the attempt's other artifacts (submission/package.py accepts it)
DEFAULT_SCENARIOS = (Scenario.Offline, Scenario.SingleStream)  # what an edge (bert) submission needs


def run_command(step: RunOverrides, config_file: Path | None) -> list[str]:
    """The `mlperf-bert run` command line that makes the same run as this step of the flow."""
    argv = ["mlperf-bert", "run", *run_flags(step)]
    if config_file is not None:
        argv += [CONFIG_FLAG, str(config_file)]
    return argv


def scenario_steps(
    overrides: RunOverrides, config_file: Path | None, scenarios: list[Scenario]
) -> list[tuple[RunOverrides, RunConfig]]:
    """One step per scenario, accuracy then performance: what was asked of it, and its resolved config."""
    if not scenarios:
        scenarios = list(DEFAULT_SCENARIOS)
    if len(set(scenarios)) != len(scenarios):
        raise ConfigError(f"scenario given twice in {', '.join(s.value for s in scenarios)}; pass each --scenario once")
    steps = [replace(overrides, scenario=s, mode=Mode.both) for s in scenarios]
    configs = [resolve_config(step, config_file) for step in steps]
    for cfg in configs:
        if (
            cfg.execution_mode is ExecutionMode.test
            and cfg.scenario is Scenario.SingleStream
            and cfg.test_query_count < SINGLESTREAM_MIN_QUERIES
        ):
            raise ConfigError(
                f"--test-query-count {cfg.test_query_count} is too few for SingleStream: LoadGen's early-stopping "
                f"estimate, which the checker requires, needs at least {SINGLESTREAM_MIN_QUERIES} queries; "
                f"pass --test-query-count {SINGLESTREAM_MIN_QUERIES} or more"
            )
    return list(zip(steps, configs, strict=True))


def _run_model(cfg: RunConfig) -> tuple[str, str, bool]:
    """The name, path and demo flag the run record of cfg's model will hold, found as the run finds its model
    (benchmark.resolve_inputs; a file is hashed once per process, so the run does not hash it again)."""
    if cfg.model_path is None and cfg.model.startswith(benchmark.ZOO_PREFIX):
        return cfg.model, cfg.model, False  # a SparseZoo stub: a custom model, fetched when the run starts
    model = resolve_model(cfg.model, cfg.model_path, (cfg.cache_dir or default_cache_dir()).expanduser())
    return model.name, str(model.path), model.demo


def check_before_runs(
    configs: list[RunConfig], submission_dir: Path, options: GenerateOptions, attempt: str | None
) -> None:
    """Refuse now what generate_submission would refuse about the submission options once every scenario has
    run: the --submission-dir (a folder that can be created, holding only attempts), the --attempt (its form,
    and not one already there), and the model for --division and --model-name. (--submitter and the
    --system-config YAML are options.validate()'s.) Leaves nothing behind."""
    probe_output_dir(submission_dir)
    test_mode = any(cfg.execution_mode is ExecutionMode.test for cfg in configs)
    choose_attempt(submission_dir, attempt, test_mode)
    if options.division != "open" or options.model_name:
        for name, path, demo in sorted({_run_model(cfg) for cfg in configs}):
            check_model(name, path, demo, options)


def run_and_submit(
    overrides: RunOverrides,
    config_file: Path | None,
    scenarios: list[Scenario],
    submission_dir: Path,
    options: GenerateOptions,
    *,
    attempt: str | None = None,
    argv: list[str] | None = None,
    run_benchmark: Callable[..., Any] | None = None,
    progress: bool = True,
) -> SubmissionResult:
    """Run every scenario (accuracy then performance, one run directory each), then generate the submission
    into submission_dir."""
    options.validate()
    steps = scenario_steps(overrides, config_file, scenarios)
    check_before_runs([cfg for _, cfg in steps], submission_dir, options, attempt)
    if run_benchmark is None:
        run_benchmark = benchmark.run_benchmark  # looked up now, so that a test can stand in for it
    run_dirs: list[Path] = []
    for step, cfg in steps:
        log.info("submission run: %s (accuracy + performance)", cfg.scenario.value)
        result = run_benchmark(cfg, progress=progress, argv=run_command(step, config_file))
        run_dirs.append(Path(result.run_dir))
        if options.division == "closed":  # the closed division also needs TEST01 for each scenario
            outcome = compliance.run_compliance(
                Path(result.run_dir), benchmark_model=options.benchmark, progress=progress, run_benchmark=run_benchmark
            )
            log.info("%s", outcome.verdict_line())
            run_dirs.append(outcome.run_dir)
    result = generate_submission(run_dirs, submission_dir, options, attempt=attempt, argv=argv)
    page = submission_dir / f"{PREFIX}{result.attempt}{REPORT_SUFFIX}"
    result.artifacts[REPORT_SUFFIX] = write_report(
        [*run_dirs, submission_dir], page, title=f"MLPerf BERT submission, attempt {result.attempt}"
    ).path
    return result
