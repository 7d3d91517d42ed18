"""-q and -v work before the sub-command and after it, for every command that runs work; -q hides the
progress bars (the harness's, the downloads', the image build's step lines)."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cli_support import invoke

from orchestrator import cli, logs
from orchestrator.assets import download
from orchestrator.commands import assets_cmd, images_cmd, submission_cmd, tune_cmd
from orchestrator.config import RunConfig
from orchestrator.errors import MlperfBertError
from orchestrator.workflows import benchmark


class _Seen(MlperfBertError):
    exit_code = 7


@pytest.fixture(autouse=True)
def _normal_logging() -> Iterator[None]:
    yield
    logs.setup_logging(0)


WORKING_COMMANDS = [
    (["run"], cli, "resolve_config"),
    (["tune"], tune_cmd, "resolve_config"),
    (["submission", "run"], submission_cmd, "run_and_submit"),
    (["assets", "fetch", "squad-dev-v1.1"], assets_cmd, "_catalogue"),
    (["images", "build"], images_cmd, "default_images"),
]


def _verbosity_at_work(monkeypatch: pytest.MonkeyPatch, target: Any, name: str, argv: list[str]) -> int:
    seen: list[int] = []

    def stop(*_: Any, **__: Any) -> None:
        seen.append(logs.current_verbosity())
        raise _Seen("stopped by the test")

    monkeypatch.setattr(target, name, stop)
    result = invoke(argv)
    assert (result.exit_code, result.stderr) == (7, "error: stopped by the test\n"), result.output
    return seen[0]


@pytest.mark.parametrize(
    ("argv", "target", "name"), WORKING_COMMANDS, ids=[" ".join(a[:2]) for a, _, _ in WORKING_COMMANDS]
)
def test_quiet_and_verbose_after_the_sub_command(
    monkeypatch: pytest.MonkeyPatch, argv: list[str], target: Any, name: str
) -> None:
    assert _verbosity_at_work(monkeypatch, target, name, [*argv, "-q"]) == -1
    assert _verbosity_at_work(monkeypatch, target, name, [*argv, "--quiet"]) == -1
    assert _verbosity_at_work(monkeypatch, target, name, [*argv, "-vv"]) == 2
    assert _verbosity_at_work(monkeypatch, target, name, ["-q", *argv]) == -1  # before it, as before
    assert _verbosity_at_work(monkeypatch, target, name, ["-v", *argv]) == 1
    assert _verbosity_at_work(monkeypatch, target, name, argv) == 0
    assert logging.getLogger().level == logging.INFO


def test_quiet_hides_the_harness_progress_bar(tmp_path: Path) -> None:
    config = RunConfig()
    target = benchmark.get_target(config.backend, config.device)
    inputs = benchmark.resolve_inputs(config, tmp_path / "cache")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    assert benchmark.build_spec(config, target, inputs, run_dir, progress=True).progress is True
    logs.setup_logging(-1)
    assert benchmark.build_spec(config, target, inputs, run_dir, progress=True).progress is False


def test_quiet_hides_the_download_bar_and_the_build_steps(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    bars: list[bool] = []
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)  # a terminal: a bar unless -q
    monkeypatch.setattr(download, "ensure_space", lambda *_: None)
    monkeypatch.setattr(download, "_fetch_from_mirrors", lambda *args: bars.append(args[5]))
    asset = assets_cmd.load_catalogue(None).get("bert-large-onnx-fp32")
    assert asset.mirrors
    for verbosity in (0, -1):
        logs.setup_logging(verbosity)
        download.fetch_asset(asset, tmp_path)
    assert bars == [True, False]
    show = images_cmd._progress("onnxruntime-cpu")
    show("Step 1/9 : FROM base")
    logs.setup_logging(0)
    show("Step 2/9 : RUN true")
    assert capsys.readouterr().err == "  [onnxruntime-cpu] Step 2/9 : RUN true\n"
