"""SIGTERM and SIGHUP end a run like Ctrl-C: the local runner against real child processes (a stand-in
harness that records the signal, or ignores it), the signals really sent to this process, and the CLI edge's
exit codes. The whole run with the real harness is in test_end_to_end.py, the container in
test_docker_integration.py."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from cli_support import invoke

from orchestrator import cli
from orchestrator.commands import assets_cmd
from orchestrator.errors import RunInterrupted
from orchestrator.harness.spec import HarnessSpec
from orchestrator.runners.local import LocalRunner
from orchestrator.runners.runner import Started
from orchestrator.stop_signals import STOP_SIGNALS, Terminated, exit_code_for, signal_of, stop_signals_interrupt

SPEC = HarnessSpec(
    target="onnxruntime-cpu",
    engine_class="m:C",
    execution_provider="CPUExecutionProvider",
    model_path="/m.onnx",
    features_path="/f.npz",
    run_dir="/r",
    scenario="Offline",
    modes=["accuracy"],
)

# A stand-in harness: says it is ready, then runs until a signal. `records` exits 130 on SIGTERM as the
# real harness does; `ignores` ignores SIGTERM (a hung harness), so only a kill ends it.
RECORDS = """
import signal, sys, time
def stop(signum, frame):
    print("stopping on", signal.Signals(signum).name, flush=True)
    sys.exit(130)
signal.signal(signal.SIGTERM, stop)
print("ready", flush=True)
time.sleep(120)
"""
IGNORES = """
import signal, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("ready", flush=True)
time.sleep(120)
"""


class StandIn(LocalRunner):
    def __init__(self, script: str, **kw: Any) -> None:
        super().__init__(stream=False, **kw)
        self.script = script

    def command(self, run_dir: Path) -> list[str]:
        return [sys.executable, "-c", self.script]


def _signal_when_ready(run_dir: Path, *signums: int, gap_s: float = 0.3) -> threading.Thread:
    """Send this process the signals once the stand-in said `ready`, as `kill -TERM <cli pid>` would."""

    def send() -> None:
        deadline = time.monotonic() + 30
        log = run_dir / "harness.log"
        while time.monotonic() < deadline and b"ready" not in (log.read_bytes() if log.is_file() else b""):
            time.sleep(0.05)
        for signum in signums:
            os.kill(os.getpid(), signum)
            time.sleep(gap_s)

    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    return thread


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.mark.parametrize("signum", STOP_SIGNALS)
def test_the_harness_is_told_to_stop_and_its_ending_kept(tmp_path: Path, signum: int) -> None:
    started: list[Started] = []
    _signal_when_ready(tmp_path, signum)
    with stop_signals_interrupt():
        outcome = StandIn(RECORDS).run(SPEC, tmp_path, on_start=started.append)
    assert outcome.interrupted and outcome.signal == signum
    assert outcome.exit_code == 130  # it recorded the stop itself
    assert b"stopping on SIGTERM" in (tmp_path / "harness.log").read_bytes()
    (what,) = started
    assert what.pid is not None and _gone(what.pid)


def test_a_harness_that_does_not_stop_is_killed_after_the_grace_time(tmp_path: Path) -> None:
    started: list[Started] = []
    _signal_when_ready(tmp_path, signal.SIGTERM)
    begin = time.monotonic()
    with stop_signals_interrupt():
        outcome = StandIn(IGNORES, stop_grace_s=1.0).run(SPEC, tmp_path, on_start=started.append)
    assert outcome.interrupted and outcome.signal == signal.SIGTERM
    assert outcome.exit_code == -signal.SIGKILL
    assert time.monotonic() - begin < 20  # the grace time, not the stand-in's two minutes
    assert started[0].pid is not None and _gone(started[0].pid)


def test_a_second_signal_during_the_grace_time_kills_at_once(tmp_path: Path) -> None:
    _signal_when_ready(tmp_path, signal.SIGTERM, signal.SIGHUP)
    begin = time.monotonic()
    with stop_signals_interrupt():
        outcome = StandIn(IGNORES, stop_grace_s=60.0).run(SPEC, tmp_path)
    assert outcome.exit_code == -signal.SIGKILL and time.monotonic() - begin < 20  # not the 60 s grace
    assert outcome.interrupted and outcome.signal == signal.SIGTERM  # the first signal is the one recorded


def test_the_handlers_are_put_back_and_terminated_is_an_interrupt() -> None:
    before = {s: signal.getsignal(s) for s in STOP_SIGNALS}
    with stop_signals_interrupt():
        assert all(signal.getsignal(s) is not before[s] for s in STOP_SIGNALS)
        with pytest.raises(KeyboardInterrupt) as caught:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
    assert {s: signal.getsignal(s) for s in STOP_SIGNALS} == before
    assert isinstance(caught.value, Terminated) and signal_of(caught.value) == signal.SIGTERM
    assert signal_of(KeyboardInterrupt()) == signal.SIGINT
    assert [exit_code_for(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)] == [130, 143, 129]


def test_run_interrupted_exits_with_the_signals_code() -> None:
    assert RunInterrupted("x").exit_code == 130
    assert RunInterrupted("x", signum=signal.SIGTERM).exit_code == 143
    assert RunInterrupted("x", signum=signal.SIGHUP).exit_code == 129


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGHUP, 129)])
@pytest.mark.parametrize(
    ("argv", "target", "name"), [(["run"], cli, "resolve_config"), (["assets", "list"], assets_cmd, "load_catalogue")]
)
def test_a_signal_to_the_cli_is_its_exit_code_and_one_line(
    monkeypatch: pytest.MonkeyPatch, argv: list[str], target: Any, name: str, signum: int, code: int
) -> None:
    def signalled(*_: Any, **__: Any) -> None:
        os.kill(os.getpid(), signum)  # as `kill -TERM <pid>` or a closed terminal would
        time.sleep(5)
        raise AssertionError("the signal did not interrupt the command")

    monkeypatch.setattr(target, name, signalled)
    before = signal.getsignal(signum)
    result = invoke(argv)
    assert (result.exit_code, result.stderr) == (code, f"interrupted by {signal.Signals(signum).name}\n")
    assert signal.getsignal(signum) is before
