"""`mlperf-bert submission run`: accuracy + performance for each scenario, then generate, check, package.

The equivalent of the SCC tutorial's `generate-run-cmds _submission`, without its checker patches: a
test-mode flow gives a submission labelled test-mode everywhere.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from orchestrator.config import ExecutionMode, RunConfig, Scenario, resolve_config
from orchestrator.errors import ConfigError
from orchestrator.submission.generate import GenerateOptions
from orchestrator.submission.rules import SINGLESTREAM_MIN_QUERIES
from orchestrator.submission.submit import SubmissionResult, generate_submission

log = logging.getLogger(__name__)

# RunConfig field -> `mlperf-bert run` flag, for the commands recorded in run.json and the .run artifact.
FLAG_OF = {"dataset_path": "--dataset", "vocab_path": "--vocab"}
DEFAULT_SCENARIOS = (Scenario.Offline, Scenario.SingleStream)  # what an edge (bert) submission needs


def run_command(cli: dict[str, Any], config_file: Path | None, scenario: str) -> list[str]:
    """The `mlperf-bert run` command line that makes the same run as this step of the flow."""
    argv = ["mlperf-bert", "run", "--scenario", scenario, "--mode", "both"]
    if config_file is not None:
        argv += ["--config", str(config_file)]
    for key, value in cli.items():
        if value is None or key in ("scenario", "mode"):
            continue
        value = getattr(value, "value", value)
        argv += [FLAG_OF.get(key, "--" + key.replace("_", "-")), str(value)]
    return argv


def scenario_configs(cli: dict[str, Any], config_file: Path | None, scenarios: list[str]) -> list[RunConfig]:
    if not scenarios:
        scenarios = list(DEFAULT_SCENARIOS)
    if len({s.lower() for s in scenarios}) != len(scenarios):
        raise ConfigError(f"scenario given twice in {', '.join(scenarios)}; pass each --scenario once")
    configs = [resolve_config({**cli, "scenario": s, "mode": "both"}, config_file) for s in scenarios]
    for cfg in configs:
        if (cfg.execution_mode is ExecutionMode.test and cfg.scenario is Scenario.SingleStream
                and cfg.test_query_count < SINGLESTREAM_MIN_QUERIES):
            raise ConfigError(
                f"--test-query-count {cfg.test_query_count} is too few for SingleStream: LoadGen's early-stopping "
                f"estimate, which the checker requires, needs at least {SINGLESTREAM_MIN_QUERIES} queries; "
                f"pass --test-query-count {SINGLESTREAM_MIN_QUERIES} or more"
            )
    return configs


def run_and_submit(
    cli: dict[str, Any],
    config_file: Path | None,
    scenarios: list[str],
    output_dir: Path,
    options: GenerateOptions,
    *,
    attempt: str | None = None,
    argv: list[str] | None = None,
    run_benchmark: Callable[..., Any] | None = None,
    progress: bool = True,
) -> SubmissionResult:
    """Run every scenario (accuracy then performance, one run directory each), then generate the submission."""
    options.validate()
    configs = scenario_configs(cli, config_file, scenarios)
    if run_benchmark is None:
        from orchestrator.workflows import benchmark

        run_benchmark = benchmark.run_benchmark
    run_dirs: list[Path] = []
    for cfg in configs:
        scenario = cfg.scenario.value
        log.info("submission run: %s (accuracy + performance)", scenario)
        result = run_benchmark(cfg, progress=progress, argv=run_command(cli, config_file, scenario))
        run_dirs.append(Path(result.run_dir))
    return generate_submission(run_dirs, output_dir, options, attempt=attempt, argv=argv)
