"""The `mlperf-bert` command line (placeholder; filled in by the run command work)."""

from __future__ import annotations

import typer

from orchestrator import __version__

app = typer.Typer(add_completion=False, no_args_is_help=True, invoke_without_command=True)


@app.callback()
def _root(version: bool = typer.Option(False, "--version", help="Print the version and exit.")) -> None:
    if version:
        typer.echo(f"mlperf-bert {__version__}")
        raise typer.Exit()


def main() -> None:
    app()
