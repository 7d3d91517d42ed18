"""What every runner does: run the harness for one prepared run directory and report how it ended."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.errors import ConfigError
from orchestrator.harness.spec import HarnessSpec

# How long a stopped harness (a process, a container, a harness in a cluster's head) may take to record its
# ending after Ctrl-C/SIGTERM/SIGHUP before it is killed: every runner's grace time.
STOP_GRACE_S = 30.0


@dataclass
class RunnerOutcome:
    exit_code: int
    log_path: Path  # run_dir/harness.log: everything the harness printed
    image: str | None = None
    image_digest: str | None = None
    oom_killed: bool = False
    interrupted: bool = False
    signal: int | None = None  # what interrupted it: SIGINT (Ctrl-C), SIGTERM, SIGHUP; None when not
    message: str | None = None  # the runner's own explanation when the harness could not say
    extra: dict[str, str] = field(default_factory=dict)
    settings: dict[str, str] = field(default_factory=dict)  # what the runner adds to run.json engine_settings


@dataclass(frozen=True)
class Started:
    """What a runner started, told the moment it runs: the harness's pid here, or its container."""

    pid: int | None = None
    container_id: str | None = None


StartHook = Callable[[Started], None]


class Runner(ABC):
    name: str = "runner"

    def preflight(self) -> None:  # noqa: B027 - optional: a runner with nothing to check up front
        """Check (and prepare) what the run needs, before a run directory exists, so a failure leaves none."""

    @abstractmethod
    def run(self, spec: HarnessSpec, run_dir: Path, *, on_start: StartHook | None = None) -> RunnerOutcome:
        """spec holds HOST paths; the runner maps them as its harness sees them, writes
        run_dir/harness.json and runs `python -m orchestrator.harness <run_dir>` to completion,
        streaming output to the console and run_dir/harness.log, and calls on_start with what it started
        (so run.json can tell a later look whether it still runs). Never raises for a harness failure
        (returns its exit code); raises DockerError/RunError when it cannot run at all. An interrupt (Ctrl-C,
        or SIGTERM/SIGHUP as stop_signals.Terminated) stops the harness within a grace time, kills it on a
        second one, and returns an outcome with interrupted and signal set."""

    def describe(self, spec: HarnessSpec, run_dir: Path) -> str:
        """The equivalent command line (for --dry-run and the SCC .run artifact)."""
        return f"python -m orchestrator.harness {run_dir}"

    def debug(self, spec: HarnessSpec, output_dir: Path) -> str:
        """--debug: open an interactive shell where the harness would run; only a container runner can."""
        raise ConfigError("--debug opens a shell in the container; use it with --runner docker")
