"""`mlperf-bert runs ...`: the runs in an output directory and how each ended (orchestrator.run_status)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from orchestrator.commands.help_format import Command
from orchestrator.commands.text_table import format_table
from orchestrator.config import RunConfig
from orchestrator.run_status import RunRow, find_run, list_runs, run_row
from orchestrator.runs import RunRecord

app = typer.Typer(
    help="List the runs in an output directory and show one: how it ended (an abandoned run too), its results.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
)

_DEFAULT_OUTPUT_DIR: Path = RunConfig.model_fields["output_dir"].default

RunsDirOption = Annotated[
    Path | None,
    typer.Option(
        "--output-dir", help=f"Where the runs are (what `run --output-dir` was) (default: ./{_DEFAULT_OUTPUT_DIR})."
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")]


def _number(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def _table(rows: list[RunRow]) -> str:
    header = ("RUN", "STATUS", "TARGET", "SCENARIO", "MODE", "TEST/VALID", "SAMPLES/S", "F1")
    body = [
        (
            r.run_id,
            r.status,
            r.target,
            r.scenario,
            r.mode,
            r.execution_mode,
            _number(r.samples_per_second, ".1f"),
            _number(r.f1, ".2f"),
        )
        for r in rows
    ]
    return format_table([header, *body])


@app.command("list", cls=Command)
def list_(output_dir: RunsDirOption = None, as_json: JsonOption = False) -> None:
    """Every run with its status (succeeded, failed, interrupted, running, abandoned), target, scenario,
    mode, test or valid, samples/s and F1; oldest first."""
    rows = list_runs(output_dir or _DEFAULT_OUTPUT_DIR)
    if as_json:
        typer.echo(json.dumps([r.as_json() for r in rows], indent=2))
    elif rows:
        typer.echo(_table(rows))
    else:
        typer.echo(f"no runs in {output_dir or _DEFAULT_OUTPUT_DIR}", err=True)


@app.command(cls=Command)
def show(
    run: Annotated[str, typer.Argument(help="A run directory, or a run's name in --output-dir.")],
    output_dir: RunsDirOption = None,
    as_json: JsonOption = False,
) -> None:
    """One run: its status and why, what ran, its results, and the process that ran it."""
    run_dir = find_run(run, output_dir or _DEFAULT_OUTPUT_DIR)
    record = RunRecord.load(run_dir)
    row = run_row(run_dir, record)
    if as_json:
        typer.echo(json.dumps({**row.as_json(), "record": record.model_dump(mode="json")}, indent=2))
        return
    p = record.process
    lines = [
        ("run", row.run_id),
        ("directory", str(run_dir)),
        ("status", f"{row.status} ({row.detail})" if row.detail else row.status),
        ("target", f"{row.target}, runner {record.runner}" + (f", image {record.image}" if record.image else "")),
        ("scenario", f"{row.scenario}, {row.mode}, {'TEST MODE' if record.test_mode else 'valid'}"),
        ("samples/s", _number(row.samples_per_second, ".2f")),
        ("F1", _number(row.f1, ".2f")),
        ("started", record.started_at or "-"),
        ("finished", record.finished_at or "-"),
    ]
    if p is not None:
        harness = f", harness pid {p.harness_pid}" if p.harness_pid else ""
        container = f", container {p.container_id[:12]}" if p.container_id else ""
        lines.append(("process", f"{p.hostname}, pid {p.cli_pid}{harness}{container}"))
    width = max(len(k) for k, _ in lines)
    typer.echo("\n".join(f"{k.ljust(width)}  {v}" for k, v in lines))
