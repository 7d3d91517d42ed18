"""`mlperf-bert report`: one self-contained HTML page of runs, tune sweeps and submissions.

Thin: hands the folders to orchestrator.html_report and prints where the page is. Mounted by
orchestrator/cli.py as the `report` command.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from orchestrator.html_report import REPORT_FILE, write_report


def command(
    inputs: Annotated[
        list[Path],
        typer.Argument(
            help="Run directories, folders of runs (--output-dir), tune-* folders or submission folders.",
            show_default=False,
        ),
    ],
    output: Annotated[Path, typer.Option("--output", "-o", metavar="<file>", help="The HTML file to write.")] = Path(
        REPORT_FILE
    ),
    title: Annotated[str | None, typer.Option(metavar="<text>", help="The page's title.")] = None,
) -> None:
    """Write one self-contained HTML page (tables and inline charts, nothing fetched) of runs, sweeps and submissions."""
    summary = write_report(list(inputs), output, title=title)
    typer.echo(
        f"report: {summary.path} ({summary.runs} run(s), {summary.tunes} tune sweep(s), "
        f"{summary.submissions} submission folder(s)"
        + (f", {len(summary.skipped)} input(s) skipped: see the page" if summary.skipped else "")
        + ")"
    )
