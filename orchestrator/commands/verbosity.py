"""-q and -v, taken before the sub-command (`mlperf-bert -q run`) and after it (`mlperf-bert run -q`).

The root callback and every sub-command that runs work declare the same two options; the last given wins.
-q also hides progress bars (orchestrator.logs.progress_wanted).
"""

from __future__ import annotations

from typing import Annotated

import typer

from orchestrator.logs import setup_logging

VerboseOption = Annotated[int, typer.Option("--verbose", "-v", count=True, help="More logging (-vv for debug).")]
QuietOption = Annotated[
    bool, typer.Option("--quiet", "-q", help="Only warnings and the final summary (no progress bars).")
]


def apply_verbosity(verbose: int, quiet: bool) -> None:
    """Set the logging of this command when -q or -v was given after it (else keep the root's)."""
    if quiet:
        setup_logging(-1)
    elif verbose:
        setup_logging(verbose)
