"""Run `mlperf-bert` command lines in-process as a user's shell would: through orchestrator.cli.run_cli, the
one place errors become a line on stderr and an exit code, with stdout and stderr captured.

Typer's CliRunner on a Typer app skips that edge (an error there is the result's exception); this does not.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from typer.testing import CliRunner

from orchestrator.cli import run_cli


@dataclass(frozen=True)
class CliResult:
    exit_code: int
    stdout: str
    stderr: str
    output: str  # stdout and stderr as they were interleaved


def invoke(args: list[str]) -> CliResult:
    with CliRunner().isolation() as streams:
        code = run_cli([str(a) for a in args])
        sys.stdout.flush()
        sys.stderr.flush()
        out, err, mixed = (s.getvalue().decode() for s in streams)
    return CliResult(exit_code=code, stdout=out, stderr=err, output=mixed)
