"""Logging configured once, at the CLI edge (or by a caller of the API who wants it)."""

from __future__ import annotations

import logging
import sys

from tqdm import tqdm

_verbosity = 0  # what setup_logging was last given; the harness child inherits it


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever sys.stderr is now (test runners swap it), through tqdm's writer: a progress bar
    being drawn is cleared, the line written, the bar drawn again below it (a plain write glued the line
    onto the bar: "0/100 [00:00<?, ?sample/s]18:11:47 INFO ...")."""

    @property  # type: ignore[override]
    def stream(self):  # type: ignore[no-untyped-def]
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:  # type: ignore[no-untyped-def]
        pass

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(self.format(record), file=sys.stderr)
            sys.stderr.flush()
        except Exception:  # noqa: BLE001 - logging must never raise (the standard handlers do the same)
            self.handleError(record)


def setup_logging(verbosity: int = 0) -> None:
    """verbosity: -1 quiet (warnings), 0 info, 1+ debug."""
    global _verbosity
    _verbosity = verbosity
    level = logging.WARNING if verbosity < 0 else logging.DEBUG if verbosity > 0 else logging.INFO
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def progress_wanted() -> bool:
    """False under -q (only warnings and the final summary): progress bars and step lines stay hidden."""
    return _verbosity >= 0


def current_verbosity() -> int:
    """The verbosity last given to setup_logging (0 when never called), for the harness child process."""
    return _verbosity
