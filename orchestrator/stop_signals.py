"""SIGTERM and SIGHUP end a run the way Ctrl-C does.

A batch system's time limit (Slurm, `timeout`, systemd stop) sends SIGTERM, a closed terminal SIGHUP.
Python's default for both ends the process at once: no `finally`, so run.json stays `running` and the
harness or its container keeps running. Inside `stop_signals_interrupt()` they raise `Terminated`, a
KeyboardInterrupt, instead, so every place that handles Ctrl-C (the runners stop the harness, the use case
marks the run interrupted) handles them too; the signal travels with it for run.json and the exit code.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

STOP_SIGNALS: tuple[signal.Signals, ...] = (signal.SIGTERM, signal.SIGHUP)


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP arrived: handled wherever Ctrl-C is, with the signal named."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def signal_of(exc: BaseException) -> int:
    """The signal behind an interrupt: the one a Terminated carries, SIGINT for Ctrl-C."""
    return exc.signum if isinstance(exc, Terminated) else int(signal.SIGINT)


def signal_name(signum: int) -> str:
    return signal.Signals(signum).name


def exit_code_for(signum: int) -> int:
    """The shell's convention for a process ended by a signal: 128 + its number (130, 143, 129)."""
    return 128 + signum


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise Terminated(signum)


@contextmanager
def stop_signals_interrupt() -> Iterator[None]:
    """SIGTERM and SIGHUP raise Terminated in the main thread while inside; the old handlers after.

    Elsewhere than the main thread Python cannot install handlers: then nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old: dict[signal.Signals, Any] = {signum: signal.signal(signum, _raise_terminated) for signum in STOP_SIGNALS}
    try:
        yield
    finally:
        for signum, handler in old.items():
            signal.signal(signum, handler)
