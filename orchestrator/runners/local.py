"""The local runner: the harness in a child process of this machine, no Docker.

A child process (rather than in-process) keeps LoadGen's threads, the engine's memory and a crash away
from the orchestrator, so a failed run is still recorded, and lets a backend with conflicting
dependencies (DeepSparse) run from its own virtual environment with the same entry point.
"""

from __future__ import annotations

import logging
import os
import shlex
import signal
import subprocess
import sys
import threading
from pathlib import Path

from orchestrator.errors import RunError
from orchestrator.harness.spec import EXIT_INTERRUPTED, HarnessSpec
from orchestrator.logs import current_verbosity
from orchestrator.paths import PACKAGE_DIR
from orchestrator.runners import venvs
from orchestrator.runners.runner import Runner, RunnerOutcome

log = logging.getLogger(__name__)
INTERRUPT_GRACE_S = 2.0


def _forward_sigint(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)


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

    def __init__(self, *, local_env: str = "main", stream: bool = True, cache_dir: Path | None = None) -> None:
        self.local_env = local_env
        self.stream = stream
        self.cache_dir = cache_dir

    def preflight(self) -> None:
        """Build the backend's venv (once) before a run directory exists, so a failed build leaves none."""
        harness_python(self.local_env, self.cache_dir)

    def command(self, run_dir: Path) -> list[str]:
        return [harness_python(self.local_env, self.cache_dir), "-m", "orchestrator.harness", str(run_dir)]

    def describe(self, spec: HarnessSpec, run_dir: Path) -> str:
        return shlex.join(["python", "-m", "orchestrator.harness", str(run_dir)])

    def run(self, spec: HarnessSpec, run_dir: Path) -> RunnerOutcome:
        spec.write(run_dir)
        log_path = run_dir / "harness.log"
        cmd = self.command(run_dir)
        env = dict(os.environ, PYTHONUNBUFFERED="1", MLPERF_BERT_VERBOSITY=str(current_verbosity()))
        # The package is importable from any interpreter (a backend venv too) through its source dir.
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PACKAGE_DIR.parent), env.get("PYTHONPATH")]))
        log.debug("local runner: %s", shlex.join(cmd))
        interrupted = False
        try:
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
        except OSError as e:
            raise RunError(f"cannot start the harness ({e.strerror}); check that {cmd[0]} exists") from None
        with log_path.open("wb") as sink:
            assert proc.stdout is not None
            while True:
                try:
                    chunk = proc.stdout.read1(65536)  # type: ignore[attr-defined]
                except KeyboardInterrupt:
                    # A Ctrl-C at the terminal reaches the child too, which records its interrupted status
                    # and exits; a SIGINT sent to this process alone does not, so pass it on if the child
                    # is still running a moment later.
                    if not interrupted:
                        threading.Timer(INTERRUPT_GRACE_S, _forward_sigint, args=(proc,)).start()
                    interrupted = True
                    continue
                if not chunk:
                    break
                sink.write(chunk)
                if self.stream:
                    sys.stderr.buffer.write(chunk)
                    sys.stderr.buffer.flush()
            while True:
                try:
                    code = proc.wait()
                    break
                except KeyboardInterrupt:
                    interrupted = True
                    proc.terminate()
        return RunnerOutcome(exit_code=code, log_path=log_path, interrupted=interrupted or code == EXIT_INTERRUPTED)
