"""`mlperf-bert compliance run --test TEST01 RUN_DIR`: the closed division's compliance test of one run.

A thin command: orchestrator.workflows.compliance runs and verifies; this prints the one-line verdict.
Exit code 0 when the test passes, 1 when it fails, 3 for a test-mode run (whose performance check is
MLPerf's "TEST FAIL: Invalid results", never a pass).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from orchestrator.commands.help_format import Command
from orchestrator.submission.rules import MLPERF_MODELS, TEST01
from orchestrator.workflows.compliance import TESTS, run_compliance

app = typer.Typer(
    help="Compliance tests of runs (TEST01: verify accuracy in performance mode), as MLPerf checks them.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
)

EXIT_FAILED = 1
EXIT_TEST_MODE = 3


@app.command(cls=Command)
def run(
    run_dir: Annotated[
        Path, typer.Argument(help="The run to verify (accuracy + performance, from `mlperf-bert run`).")
    ],
    test: Annotated[str, typer.Option(metavar="<test>", help=f"The compliance test: {' | '.join(TESTS)}.")] = TEST01,
    benchmark: Annotated[
        str,
        typer.Option(
            metavar="<model>", help=f"The accuracy target the fallback's margin follows: {' | '.join(MLPERF_MODELS)}."
        ),
    ] = "bert-99",
    progress: Annotated[bool, typer.Option(help="Show a progress bar on stderr.")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")] = False,
) -> None:
    """Run the performance pass of RUN_DIR again with MLPerf's audit.config and verify it (TEST01)."""
    result = run_compliance(run_dir, test=test, benchmark_model=benchmark, progress=progress, argv=sys.argv)
    if as_json:
        typer.echo(json.dumps(result.as_json(), indent=2))
    else:
        typer.echo(result.verdict_line())
        typer.echo(f"files: {result.test_dir}")
    if result.test_mode:
        raise typer.Exit(EXIT_TEST_MODE)
    if not result.passed:
        raise typer.Exit(EXIT_FAILED)
