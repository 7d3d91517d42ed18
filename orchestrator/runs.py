"""Run directories and their record, run.json.

Every run gets a fresh directory (created with exist_ok=False, so nothing is ever overwritten); run.json is
rewritten atomically at each state change, so a crash leaves the last consistent state, and a failed or
interrupted run is marked so with its logs kept.
"""

from __future__ import annotations

import getpass
import os
import platform
import re
import socket
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from orchestrator import __version__
from orchestrator.config import RunConfig
from orchestrator.errors import ConfigError
from orchestrator.harness.spec import NodeInfo
from orchestrator.mlperf import Pass

RUN_FILE = "run.json"
Status = Literal["created", "running", "succeeded", "failed", "interrupted"]


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class FileRef(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    path: str
    sha256: str | None = None


class RunProcess(BaseModel):
    """Who runs a run, kept so that a later look can tell a live run from an abandoned one (run_status.py).

    A pid alone could be reused by another process: the start times (clock ticks since boot, from
    /proc/<pid>/stat) and the boot id tell them apart."""

    model_config = ConfigDict(extra="forbid")

    hostname: str
    boot_id: str | None = None
    cli_pid: int
    cli_started: int | None = None
    harness_pid: int | None = None  # the local runner's harness process
    harness_started: int | None = None
    container_id: str | None = None  # the Docker runner's container


class RunRecord(BaseModel):
    """The self-describing record of one run (run.json)."""

    model_config = ConfigDict(extra="forbid")

    run_id: str
    status: Status = "created"
    execution_mode: Literal["test", "valid"]
    test_mode: bool  # a test-mode result is never a valid MLPerf result; say so wherever it appears
    scenario: str
    modes: list[Pass]
    target: str
    runner: str
    config: RunConfig  # the resolved configuration, as `mlperf-bert run` took it (a --config file's keys)
    model: FileRef
    dataset: FileRef
    vocab: FileRef
    features: FileRef | None = None
    model_meta: dict[str, Any] = Field(default_factory=dict)  # precision, demo, reference accuracy
    image: str | None = None
    image_digest: str | None = None
    execution_provider: str | None = None
    engine_settings: dict[str, str] = Field(default_factory=dict)  # what the engine ran with (harness)
    nodes: list[NodeInfo] = Field(default_factory=list)  # the Ray runner: the nodes that hosted engine actors
    # int8/bf16 only: "passed (<check record>)", or "accuracy unchecked" (workflows/accuracy_label.py)
    accuracy_check: str | None = None
    versions: dict[str, str] = Field(default_factory=dict)
    host: dict[str, Any] = Field(default_factory=dict)
    git_sha: str | None = None
    command: list[str] = Field(default_factory=list)
    process: RunProcess | None = None  # set while it runs; None in records written before it existed
    created_at: str = Field(default_factory=utc_now)
    started_at: str | None = None
    finished_at: str | None = None
    error: str | None = None
    results: dict[str, Any] = Field(default_factory=dict)
    compliance_test: str | None = None  # a compliance run (e.g. TEST01): the test it ran
    verified_run: str | None = None  # ...and the run directory it verifies

    @property
    def batch_size_ran(self) -> int | None:
        """The batch the SUT really planned with (engine_settings max_batch: 1 in SingleStream, whatever
        --batch-size says), else the configured one (a record from before the harness reported it)."""
        reported = self.engine_settings.get("max_batch", "")
        return int(reported) if reported.isdigit() else self.config.batch_size

    def save(self, run_dir: Path) -> None:
        tmp = run_dir / (RUN_FILE + ".tmp")
        tmp.write_text(self.model_dump_json(indent=2) + "\n")
        tmp.replace(run_dir / RUN_FILE)

    @classmethod
    def load(cls, run_dir: Path) -> RunRecord:
        path = run_dir / RUN_FILE
        if not path.is_file():
            raise ConfigError(
                f"{run_dir} is not a run directory (no {RUN_FILE}); pass a directory made by `mlperf-bert run`"
            )
        try:
            return cls.model_validate_json(path.read_text())
        except ValidationError as e:
            err = e.errors()[0]
            where = ".".join(str(p) for p in err["loc"]) or "the record"
            raise ConfigError(
                f"{path} is not a run record this version reads ({where}: {err['msg']}); pass a run directory made "
                "by `mlperf-bert run`"
            ) from None


def new_run_dir(output_dir: Path, label: str) -> Path:
    """A fresh directory `<output_dir>/<UTC timestamp>-<label>[-N]`; never an existing one."""
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(
            f"cannot create the output directory {output_dir} ({e.strerror}); choose another with --output-dir"
        ) from None
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", label)
    for n in range(1000):
        name = f"{stamp}-{safe}" + (f"-{n}" if n else "")
        try:
            (output_dir / name).mkdir()
        except FileExistsError:
            continue
        return output_dir / name
    raise ConfigError(f"too many runs named {stamp}-{safe} in {output_dir}; wait a second and retry")


def git_sha(repo: Path) -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
        return out + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return None


def _gpus() -> list[dict[str, str]]:
    """NVIDIA GPUs as nvidia-smi reports them (name, memory); empty where there is none."""
    import shutil

    smi = shutil.which("nvidia-smi")
    if not smi:
        return []
    try:
        out = subprocess.run(
            [smi, "--query-gpu=name,memory.total", "--format=csv,noheader"], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return []
    gpus = []
    for line in out.stdout.strip().splitlines() if out.returncode == 0 else []:
        name, _, memory = line.partition(",")
        gpus.append({"name": name.strip(), "memory": memory.strip()})
    return gpus


def host_info() -> dict[str, Any]:
    return {
        "hostname": socket.gethostname(),
        "user": getpass.getuser(),
        "os": platform.platform(),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "memory_gib": _memory_gib(),
        "gpus": _gpus(),
        "python": sys.version.split()[0],
        "mlperf_bert": __version__,
    }
