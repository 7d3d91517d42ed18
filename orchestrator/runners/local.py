"""The local runner: the harness in a child process of this machine, no Docker.

A child process (rather than in-process) keeps LoadGen's threads, the engine's memory and a crash away
from the orchestrator, so a failed run is still recorded, and lets a backend with conflicting
dependencies (DeepSparse) run from its own virtual environment with the same entry point.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shlex
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from signal import SIGINT, SIGTERM
from typing import IO

from orchestrator.errors import PreflightError, RunError
from orchestrator.harness.spec import EXIT_INTERRUPTED, HarnessSpec
from orchestrator.logs import current_verbosity
from orchestrator.paths import PACKAGE_DIR
from orchestrator.runners import venvs
from orchestrator.runners.runner import STOP_GRACE_S, Runner, RunnerOutcome, Started, StartHook
from orchestrator.stop_signals import Terminated, signal_name, signal_of

log = logging.getLogger(__name__)
INTERRUPT_GRACE_S = 2.0  # a terminal's Ctrl-C reaches the harness itself; pass it on only after this


def _send(proc: subprocess.Popen[bytes], signum: int) -> None:
    if proc.poll() is None:
        proc.send_signal(signum)


def _kill_if_running(proc: subprocess.Popen[bytes], grace_s: float) -> None:
    if proc.poll() is None:
        log.warning("the harness did not stop within %.0f s; killing it", grace_s)
        proc.kill()


# The runner's name for "this interpreter as it is" (--local-env current), whatever the target's local_env.
CURRENT_ENV = "current"


def harness_python(local_env: str, cache_dir: Path | None = None) -> str:
    """The interpreter that runs the harness: this one ("main": the target runs here; "current": the user
    asked for this one), or a managed venv for backends with their own pins."""
    if local_env in ("main", CURRENT_ENV):
        return sys.executable

    return str(venvs.ensure_venv(local_env, cache_dir=cache_dir))


class LocalRunner(Runner):
    name = "local"
    # What tells the harness to stop after a SIGTERM/SIGHUP of the CLI (every harness records it as interrupted).
    harness_stop_signal: int = SIGTERM

    def __init__(
        self,
        *,
        local_env: str = "main",
        stream: bool = True,
        cache_dir: Path | None = None,
        stop_grace_s: float = STOP_GRACE_S,
        packages: tuple[str, ...] = (),
    ) -> None:
        self.local_env = local_env
        self.stream = stream
        self.cache_dir = cache_dir
        self.packages = packages  # what the engine imports: checked here when the harness runs in this Python
        self.stop_grace_s = stop_grace_s

    def preflight(self) -> None:
        """Build the backend's venv (once) before a run directory exists, so a failed build leaves none; when
        the harness runs in this Python, its engine's packages must be importable here."""
        harness_python(self.local_env, self.cache_dir)
        if self.local_env in ("main", CURRENT_ENV):
            missing = [p for p in self.packages if importlib.util.find_spec(p) is None]
            if missing:
                names = " and ".join(missing)
                fix = f"install {names} in it (pip install {' '.join(missing)})"
                if self.local_env == CURRENT_ENV:
                    fix += ", or drop --local-env current (the local runner then builds the backend's own environment)"
                raise PreflightError(f"the harness runs in this Python ({sys.executable}), which lacks {names}; {fix}")

    def command(self, run_dir: Path) -> list[str]:
        return [harness_python(self.local_env, self.cache_dir), "-m", "orchestrator.harness", str(run_dir)]

    def describe(self, spec: HarnessSpec, run_dir: Path) -> str:
        return shlex.join(["python", "-m", "orchestrator.harness", str(run_dir)])

    def run(self, spec: HarnessSpec, run_dir: Path, *, on_start: StartHook | None = None) -> RunnerOutcome:
        spec.write(run_dir)
        log_path = run_dir / "harness.log"
        cmd = self.command(run_dir)
        env = dict(os.environ, PYTHONUNBUFFERED="1", MLPERF_BERT_VERBOSITY=str(current_verbosity()))
        # The package is importable from any interpreter (a backend venv too) through its source dir.
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PACKAGE_DIR.parent), env.get("PYTHONPATH")]))
        log.debug("local runner: %s", shlex.join(cmd))
        try:
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
        except OSError as e:
            raise RunError(f"cannot start the harness ({e.strerror}); check that {cmd[0]} exists") from None
        stopper = _Stopper(proc, self.stop_grace_s, self.harness_stop_signal)
        try:
            if on_start is not None:
                on_start(Started(pid=proc.pid))
            with log_path.open("wb") as sink:
                self._follow(proc, sink, stopper)
            while True:
                try:
                    code = proc.wait()
                    break
                except KeyboardInterrupt as exc:
                    stopper.interrupt(exc)
        except BaseException:  # whatever cut the follow short, the harness must not outlive this process
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            raise
        finally:
            stopper.cancel()
        signum = stopper.signum if stopper.signum is not None else (SIGINT if code == EXIT_INTERRUPTED else None)
        return RunnerOutcome(exit_code=code, log_path=log_path, interrupted=signum is not None, signal=signum)

    def _follow(self, proc: subprocess.Popen[bytes], sink: IO[bytes], stopper: _Stopper) -> None:
        assert proc.stdout is not None
        while True:
            try:
                chunk = proc.stdout.read1(65536)  # type: ignore[attr-defined]
            except KeyboardInterrupt as exc:
                stopper.interrupt(exc)
                continue
            if not chunk:
                return
            sink.write(chunk)
            sink.flush()  # harness.log is what `tail -f` and a later look read while it runs
            if self.stream:
                sys.stderr.buffer.write(chunk)
                sys.stderr.buffer.flush()


class _Stopper:
    """Ends the harness after an interrupt: told to stop, given a grace time to record it, then killed.

    Ctrl-C at a terminal reaches the harness itself, so SIGINT is passed on only if it still runs a moment
    later (a `kill -INT` of this process alone); SIGTERM and SIGHUP reach this process alone, so SIGTERM
    (which every harness records as interrupted) is sent at once. A second interrupt kills it at once."""

    def __init__(self, proc: subprocess.Popen[bytes], grace_s: float, stop_signal: int = SIGTERM) -> None:
        self.proc = proc
        self.grace_s = grace_s
        self.stop_signal = stop_signal
        self.signum: int | None = None
        self._timers: list[threading.Timer] = []

    def interrupt(self, exc: KeyboardInterrupt) -> None:
        if self.signum is not None:
            log.warning("interrupted again: killing the harness")
            if self.proc.poll() is None:
                self.proc.kill()
            return
        self.signum = signal_of(exc)
        if isinstance(exc, Terminated):
            log.warning("%s: stopping the harness (again to kill it)", signal_name(self.signum))
            _send(self.proc, self.stop_signal)
        else:
            self._later(INTERRUPT_GRACE_S, _send, self.proc, SIGINT)
        self._later(self.grace_s, _kill_if_running, self.proc, self.grace_s)

    def _later(self, seconds: float, fn: Callable[..., None], *args: object) -> None:
        timer = threading.Timer(seconds, fn, args=args)
        timer.daemon = True
        timer.start()
        self._timers.append(timer)

    def cancel(self) -> None:
        for timer in self._timers:
            timer.cancel()
