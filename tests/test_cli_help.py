"""Every command's `--help`, rendered as a user sees it: no written text lost (rich markup once ate
"[plot]" and every "[default: ...]"), placeholders that say what to type rather than Python types, flags
spelled once (no `--no-no-cache`), and every option explained."""

from __future__ import annotations

import re
from typing import Any

import pytest
import typer
from cli_support import invoke

from orchestrator import cli


def _walk(command: Any, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    found = [(path, command)]
    for name, sub in sorted(getattr(command, "commands", {}).items()):
        found += _walk(sub, (*path, name))
    return found


COMMANDS = _walk(typer.main.get_command(cli.app))


def _squeezed(text: str) -> str:
    """The text without whitespace: help wraps lines anywhere (after a hyphen too)."""
    return re.sub(r"\s+", "", text)


def test_the_walk_finds_every_command() -> None:
    names = {" ".join(path) for path, _ in COMMANDS}
    assert {"", "run", "tune", "assets fetch", "assets make-synthetic", "images build", "submission run"} <= names


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=[" ".join(p) or "mlperf-bert" for p, _ in COMMANDS])
def test_help_keeps_every_written_word(path: tuple[str, ...], command: Any) -> None:
    result = invoke([*path, "--help"])
    assert result.exit_code == 0, result.output
    shown = _squeezed(result.stdout)
    written = [command.help or ""] + [p.help for p in command.params if getattr(p, "help", None)]
    for text in written:
        assert _squeezed(text.replace("\b", "")) in shown, (path, text)
    for python_type in ("<bool>", "<str>", "<list[", "<int range>", "<float range>"):
        assert python_type not in result.stdout, (path, python_type)
    assert "--no-no-" not in result.stdout
    for param in command.params:
        if param.param_type_name == "option" and param.name != "help":
            assert getattr(param, "help", None), (path, param.name)  # every option says what it does


def test_bracketed_text_survives() -> None:
    shown = _squeezed(invoke(["tune", "--help"]).stdout)
    assert _squeezed("pip install 'mlperf-bert[plot]'") in shown
    fetch = _squeezed(invoke(["assets", "fetch", "--help"]).stdout)
    assert _squeezed("[default: when stderr is a terminal]") in fetch


def test_run_help_names_the_defaults_of_the_main_choices() -> None:
    shown = _squeezed(invoke(["run", "--help"]).stdout)
    for default in ("(default: onnxruntime)", "(default: Offline)", "(default: both)", "(default: test)"):
        assert _squeezed(default) in shown, default


def test_no_cache_is_one_flag() -> None:
    shown = invoke(["images", "build", "--help"]).stdout
    assert "--no-cache" in shown and "--no-no-cache" not in shown
