"""How a run ended, or whether it still runs: the status `runs list`, `runs show` and `submission generate` see.

run.json says `running` from the start of a run until its end is recorded. A run whose process vanished
(power loss, `kill -9` of the CLI) never records its end: it is shown as `abandoned` when the process that
ran it is gone from this host (its pid no longer exists, or now belongs to a process started at another
time, or the machine restarted since). Another host's run cannot be looked at from here: `unknown`.
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from orchestrator.errors import ConfigError, MlperfBertError
from orchestrator.runs import RUN_FILE, RunProcess, RunRecord

log = logging.getLogger(__name__)

Shown = Literal["succeeded", "failed", "interrupted", "running", "abandoned", "unknown"]
PROC = Path("/proc")


def boot_id(proc: Path = PROC) -> str | None:
    """This boot's id (Linux): a pid recorded before a restart says nothing about the processes after it."""
    try:
        return (proc / "sys/kernel/random/boot_id").read_text().strip() or None
    except OSError:
        return None


def process_start(pid: int, proc: Path = PROC) -> int | None:
    """When the process `pid` started, in clock ticks since boot (Linux), or None when there is no such
    process (or no /proc to ask)."""
    try:
        stat = (proc / str(pid) / "stat").read_text()
    except OSError:
        return None
    # "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split after its last ")".
    fields = stat.rpartition(")")[2].split()
    try:
        return int(fields[19])  # field 22 of the whole line: starttime
    except (IndexError, ValueError):
        return None


def this_process() -> RunProcess:
    """The record of the CLI process running a run now."""
    pid = os.getpid()
    return RunProcess(hostname=socket.gethostname(), boot_id=boot_id(), cli_pid=pid, cli_started=process_start(pid))


def is_alive(pid: int, started: int | None, proc: Path = PROC) -> bool:
    """Whether the process `pid` that started at `started` still runs (not another one given its pid)."""
    if proc.is_dir():
        now = process_start(pid, proc)
        return now is not None and (started is None or now == started)
    try:  # no /proc: the pid alone
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def shown_status(record: RunRecord, proc: Path = PROC) -> tuple[Shown, str]:
    """The status to show for a run, and a few words on why when run.json alone does not say it."""
    if record.status in ("succeeded", "failed", "interrupted"):
        return record.status, record.error or ""
    p = record.process
    if p is None:
        return "unknown", "the record does not name the process that ran it"
    if p.hostname != socket.gethostname():
        return "unknown", f"it runs, or ran, on {p.hostname}; look there"
    here = boot_id(proc)
    if p.boot_id and here and p.boot_id != here:
        return "abandoned", "the machine restarted while it ran"
    if is_alive(p.cli_pid, p.cli_started, proc):
        return "running", f"pid {p.cli_pid}"
    return "abandoned", _leftovers(p, proc)


def _leftovers(p: RunProcess, proc: Path) -> str:
    gone = f"the process that ran it (pid {p.cli_pid}) is gone"
    if p.harness_pid is not None and is_alive(p.harness_pid, p.harness_started, proc):
        return f"{gone} but its harness still runs: end it with `kill {p.harness_pid}`"
    if p.container_id:
        short = p.container_id[:12]
        return f"{gone}; if its container {short} still runs, end it with `docker rm -f {short}`"
    return gone


@dataclass(frozen=True)
class RunRow:
    """One run as `runs list` shows it."""

    run_id: str
    run_dir: Path
    status: Shown
    detail: str
    target: str
    scenario: str
    mode: str
    execution_mode: str
    samples_per_second: float | None
    f1: float | None
    started_at: str | None

    def as_json(self) -> dict[str, object]:
        return {
            "run_id": self.run_id,
            "run_dir": str(self.run_dir),
            "status": self.status,
            "detail": self.detail,
            "target": self.target,
            "scenario": self.scenario,
            "mode": self.mode,
            "execution_mode": self.execution_mode,
            "samples_per_second": self.samples_per_second,
            "f1": self.f1,
            "started_at": self.started_at,
        }


def run_row(run_dir: Path, record: RunRecord, proc: Path = PROC) -> RunRow:
    status, detail = shown_status(record, proc)
    perf = record.results.get("performance") or {}
    acc = record.results.get("accuracy") or {}
    return RunRow(
        run_id=record.run_id,
        run_dir=run_dir,
        status=status,
        detail=detail,
        target=record.target,
        scenario=record.scenario,
        mode=record.config.mode.value,
        execution_mode=record.execution_mode,
        samples_per_second=perf.get("samples_per_second"),
        f1=acc.get("f1"),
        started_at=record.started_at,
    )


def list_runs(output_dir: Path, proc: Path = PROC) -> list[RunRow]:
    """Every run directory under output_dir, oldest first; ones whose run.json cannot be read are skipped
    with a warning."""
    if not output_dir.is_dir():
        raise ConfigError(f"{output_dir} does not exist; pass the --output-dir the runs were written to")
    rows = []
    for run_dir in sorted(d for d in output_dir.iterdir() if (d / RUN_FILE).is_file()):
        try:
            record = RunRecord.load(run_dir)
        except MlperfBertError as exc:
            log.warning("skipping %s: %s", run_dir.name, exc)
            continue
        rows.append(run_row(run_dir, record, proc))
    return rows


def find_run(run: str, output_dir: Path) -> Path:
    """A run directory given as a path, or as a run id under output_dir."""
    for candidate in (Path(run), output_dir / run):
        if (candidate / RUN_FILE).is_file():
            return candidate
    raise ConfigError(
        f"no run {run!r} (neither a run directory nor a run in {output_dir}); `mlperf-bert runs list` names them"
    )
