"""A run's shown status: run.json's own once it ended; while it says `running`, the recorded process looked
at on this host (alive, gone, its pid reused, the machine restarted), `unknown` from another host. Then
`runs list` and `runs show` through the CLI edge."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cli_support import invoke

from orchestrator.run_status import boot_id, is_alive, list_runs, process_start, shown_status, this_process
from orchestrator.runs import FileRef, RunProcess, RunRecord

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="reads /proc (Linux)")


def _record(run_id: str, **kw: Any) -> RunRecord:
    ref = FileRef(path="x")
    fields: dict[str, Any] = {
        "run_id": run_id,
        "execution_mode": "test",
        "test_mode": True,
        "scenario": "Offline",
        "modes": ["accuracy", "performance"],
        "target": "onnxruntime-cpu",
        "runner": "local",
        "config": {},
        "model": ref,
        "dataset": ref,
        "vocab": ref,
        "status": "running",
    }
    fields.update(kw)
    return RunRecord(**fields)


def _gone_pid() -> int:
    """The pid of a process that has ended (reaped), so nothing runs under it now."""
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(done.stdout)


def test_this_process_is_alive_and_a_reused_pid_is_not() -> None:
    me = this_process()
    assert me.cli_pid == os.getpid() and me.hostname == socket.gethostname() and me.boot_id == boot_id()
    assert me.cli_started == process_start(os.getpid()) and me.cli_started is not None
    assert is_alive(me.cli_pid, me.cli_started)
    assert not is_alive(me.cli_pid, me.cli_started - 1)  # the same pid, another process (started at another time)
    assert not is_alive(_gone_pid(), None)


def test_a_running_record_whose_process_runs_is_running() -> None:
    assert shown_status(_record("r", process=this_process()))[0] == "running"


def test_a_running_record_whose_process_is_gone_is_abandoned() -> None:
    process = this_process().model_copy(update={"cli_pid": _gone_pid()})
    status, why = shown_status(_record("r", process=process))
    assert status == "abandoned" and f"pid {process.cli_pid}) is gone" in why


def test_an_orphaned_harness_is_named_with_how_to_end_it() -> None:
    me = this_process()
    process = me.model_copy(
        update={"cli_pid": _gone_pid(), "harness_pid": me.cli_pid, "harness_started": me.cli_started}
    )
    status, why = shown_status(_record("r", process=process))
    assert status == "abandoned" and f"`kill {me.cli_pid}`" in why
    container = me.model_copy(update={"cli_pid": _gone_pid(), "container_id": "0123456789abcdef"})
    assert "`docker rm -f 0123456789ab`" in shown_status(_record("r", process=container))[1]


def test_a_pid_reused_or_a_restart_since_is_abandoned() -> None:
    me = this_process()
    reused = me.model_copy(update={"cli_started": (me.cli_started or 0) + 1})
    assert shown_status(_record("r", process=reused))[0] == "abandoned"
    rebooted = me.model_copy(update={"boot_id": "another-boot"})
    assert shown_status(_record("r", process=rebooted)) == ("abandoned", "the machine restarted while it ran")


def test_another_hosts_run_or_one_without_its_process_is_unknown() -> None:
    elsewhere = RunProcess(hostname=socket.gethostname() + "-elsewhere", cli_pid=os.getpid())
    status, why = shown_status(_record("r", process=elsewhere))
    assert status == "unknown" and "elsewhere" in why
    assert shown_status(_record("r"))[0] == "unknown"


def test_an_ended_run_shows_its_own_status() -> None:
    record = _record("r", status="failed", error="the harness exited with code 1", process=this_process())
    assert shown_status(record) == ("failed", "the harness exited with code 1")


def _runs(tmp_path: Path) -> Path:
    out = tmp_path / "runs"
    results = {
        "performance": {"samples_per_second": 1234.56},
        "accuracy": {"f1": 87.654},
    }
    done = _record("20260101-000000-a", status="succeeded", results=results, process=this_process())
    gone = _record("20260101-000001-b", process=this_process().model_copy(update={"cli_pid": _gone_pid()}))
    for record in (done, gone):
        (out / record.run_id).mkdir(parents=True)
        record.save(out / record.run_id)
    (out / "not-a-run").mkdir()
    return out


def test_runs_list_shows_each_run_with_status_and_results(tmp_path: Path) -> None:
    out = _runs(tmp_path)
    assert [(r.run_id, r.status) for r in list_runs(out)] == [
        ("20260101-000000-a", "succeeded"),
        ("20260101-000001-b", "abandoned"),
    ]
    result = invoke(["runs", "list", "--output-dir", str(out)])
    assert result.exit_code == 0, result.output
    header, first, second = result.stdout.splitlines()
    assert header.split() == ["RUN", "STATUS", "TARGET", "SCENARIO", "MODE", "TEST/VALID", "SAMPLES/S", "F1"]
    assert first.split() == [
        "20260101-000000-a",
        "succeeded",
        "onnxruntime-cpu",
        "Offline",
        "both",
        "test",
        "1234.6",
        "87.65",
    ]
    assert second.split()[:2] == ["20260101-000001-b", "abandoned"]
    rows = json.loads(invoke(["runs", "list", "--output-dir", str(out), "--json"]).stdout)
    assert [r["status"] for r in rows] == ["succeeded", "abandoned"] and rows[0]["f1"] == 87.654


def test_runs_show_by_name_or_directory(tmp_path: Path) -> None:
    out = _runs(tmp_path)
    shown = invoke(["runs", "show", "20260101-000001-b", "--output-dir", str(out)])
    assert shown.exit_code == 0, shown.output
    assert "abandoned (the process that ran it" in shown.stdout and f"{socket.gethostname()}, pid" in shown.stdout
    data = json.loads(invoke(["runs", "show", str(out / "20260101-000000-a"), "--json"]).stdout)
    assert data["status"] == "succeeded" and data["record"]["results"]["accuracy"]["f1"] == 87.654
    missing = invoke(["runs", "show", "nope", "--output-dir", str(out)])
    assert missing.exit_code == 2 and missing.stderr.startswith("error: no run 'nope'")
    assert invoke(["runs", "list", "--output-dir", str(tmp_path / "none")]).exit_code == 2
