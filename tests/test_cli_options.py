"""The command line's edges: run options declared once (commands/run_options.py) for `run`, `submission run`
and `tune`; `--output-dir` is the run directories' folder in each; every sub-command's errors and Ctrl-C
end the same way (orchestrator.cli.run_cli)."""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Annotated, Any

import pytest
import typer
from cli_support import invoke

from orchestrator import __version__, cli
from orchestrator.commands import assets_cmd, images_cmd, run_options, submission_cmd, tune_cmd
from orchestrator.config import ExecutionMode, LocalEnv, Mode, RunConfig, RunnerKind, RunOverrides, Scenario, SutKind
from orchestrator.errors import ConfigError, MlperfBertError, RunError
from orchestrator.workflows import benchmark, submission_run

COMMANDS = {"run": cli.run, "submission run": submission_cmd.run, "tune": tune_cmd.command}
ALIASES = {name: obj for name, obj in vars(run_options).items() if typing.get_origin(obj) is Annotated}


def _click_command(label: str) -> Any:
    command = typer.main.get_command(cli.app)
    for name in label.split():
        command = command.commands[name]  # type: ignore[attr-defined]
    return command


def _flags(label: str) -> dict[str, tuple[list[str], str | None]]:
    """What the user sees of each option of a command: its flags and help, by parameter name."""
    return {p.name: (list(p.opts), p.help) for p in _click_command(label).params}


def _run_options(command: Any) -> dict[str, Any]:
    """The command's parameters that are RunConfig fields, by field: their Annotated type (type + typer.Option)."""
    hints = typing.get_type_hints(command, include_extras=True)
    return {name: hint for name, hint in hints.items() if name in RunConfig.model_fields}


def _info(hint: Any) -> Any:
    return typing.get_args(hint)[1]


def test_the_flag_table_names_real_fields_and_every_alias_has_help() -> None:
    assert set(run_options.RUN_FLAGS) == set(RunConfig.model_fields)
    flags = list(run_options.RUN_FLAGS.values())
    assert len(set(flags)) == len(flags)
    for name, alias in ALIASES.items():
        info = _info(alias)
        assert info.help and "[" not in info.help, name  # "(default: ...)", apart from click's "[default: ...]"


def test_run_submission_run_and_tune_take_their_run_options_from_one_declaration() -> None:
    declared = {label: _run_options(command) for label, command in COMMANDS.items()}
    seen = {label: _flags(label) for label in COMMANDS}
    for label, options in declared.items():
        assert {"backend", "model_path", "output_dir", "cache_dir", "scenario"} <= set(options), label
        for field, hint in options.items():
            assert hint in ALIASES.values(), f"{label} --{field} is declared in its own module"
            assert seen[label][field][0] == [run_options.RUN_FLAGS[field]], (label, field)
    # the fields all three take: the same flag, help text and type
    shared = set.intersection(*(set(options) for options in declared.values()))
    assert {"backend", "device", "model", "model_path", "sut", "runner", "output_dir", "cache_dir"} <= shared
    assert "engine_options" in shared
    for field in shared - {"scenario"}:
        assert len({str(declared[label][field]) for label in COMMANDS}) == 1, field
        assert len({(tuple(seen[label][field][0]), seen[label][field][1]) for label in COMMANDS}) == 1, field
    # scenario: one in `run` and `tune`, repeatable in `submission run`; the same flag and choices
    assert declared["run"]["scenario"] == declared["tune"]["scenario"]
    assert typing.get_args(declared["run"]["scenario"])[0] == Scenario | None
    assert typing.get_args(declared["submission run"]["scenario"])[0] == list[Scenario] | None
    # every option of `run` is a declared one, and `run` takes every field
    assert set(declared["run"]) == set(RunConfig.model_fields)


def test_the_model_path_help_says_what_it_takes() -> None:
    help_text = _info(run_options.ModelPathOption).help
    assert "an ONNX file, or a Hugging Face checkpoint directory for pytorch" in help_text
    assert "(default: ./runs)" in _info(run_options.OutputDirOption).help
    assert "(default: 100)" in _info(run_options.TestQueryCountOption).help


def test_recorded_run_flags_parse_back_to_the_same_options(tmp_path: Path) -> None:
    """The command recorded for a `submission run` step is made with the flags `run` itself parses."""
    every = RunOverrides(
        backend="onnxruntime",
        device="cpu",
        scenario=Scenario.Server,
        mode=Mode.performance,
        execution_mode=ExecutionMode.valid,
        test_query_count=7,
        batch_size=3,
        threads=2,
        sut=SutKind.optimized,
        model="demo-int8",
        model_path=tmp_path / "m.onnx",
        dataset_path=tmp_path / "d.json",
        vocab_path=tmp_path / "v.txt",
        calibration_path=tmp_path / "train.json.gz",
        target_qps=12.5,
        target_latency_ms=130.0,
        runner=RunnerKind.local,
        local_env=LocalEnv.current,
        output_dir=tmp_path / "runs",
        cache_dir=tmp_path / "cache",
        image="img:1",
        shm_size="2g",
        cpuset_cpus="0-3",
        memory="8g",
        gpus="all",
        engine_options={"optimize": "none", "instances": "2"},
        ray_address="10.0.0.5:6379",
        ray_actors=2,
        cluster="demo",
        stop_grace_s=20.0,
    )
    assert set(every.given()) == set(RunConfig.model_fields)  # the test covers every field
    argv = submission_run.run_command(every, tmp_path / "c.yaml")
    assert argv[:2] == ["mlperf-bert", "run"] and argv[-2:] == ["--config", str(tmp_path / "c.yaml")]
    run_command = _click_command("run")
    with run_command.make_context("run", argv[2:-2]) as ctx:
        params = dict(ctx.params)
    params["engine_options"] = run_options.parse_engine_options(params["engine_options"])
    assert RunOverrides(**{f: params[f] for f in RunConfig.model_fields}) == every


def test_engine_option_items_must_be_key_value() -> None:
    assert run_options.parse_engine_options(["a=1", " b = x=y "]) == {"a": "1", "b": "x=y"}
    assert run_options.parse_engine_options(None) is None
    assert run_options.parse_engine_options(["a=1", "a=1"]) == {"a": "1"}  # the same twice is no conflict
    with pytest.raises(ConfigError, match=r"--engine-option optimize is given twice \(none and auto\); give it once"):
        run_options.parse_engine_options(["optimize=none", "optimize=auto"])
    result = invoke(["run", "--engine-option", "optimize", "--dry-run"])
    assert result.exit_code == 2
    assert result.stderr == (
        "error: --engine-option 'optimize' is not KEY=VALUE; write it like --engine-option optimize=none\n"
    )


class _Stop(RunError):
    """Raised by the stand-ins below once they have seen the config: the test has what it wants."""


@pytest.fixture()
def seen(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    configs: list[Any] = []

    def stand_in(config: Any, **_: Any) -> None:
        configs.append(config if isinstance(config, RunConfig) else config.base)
        raise _Stop("stopped by the test")

    monkeypatch.setattr(cli, "run_benchmark", stand_in)
    monkeypatch.setattr(benchmark, "run_benchmark", stand_in)  # `submission run` looks it up per call
    monkeypatch.setattr(tune_cmd, "tune", stand_in)
    return configs


@pytest.mark.parametrize("argv", [["run"], ["tune"], ["submission", "run"]])
def test_output_dir_is_where_run_directories_go_in_every_command(
    argv: list[str], tmp_path: Path, seen: list[Any]
) -> None:
    result = invoke([*argv, "--output-dir", str(tmp_path / "runs"), "--cache-dir", str(tmp_path / "cache")])
    assert result.stderr.splitlines()[-1] == "error: stopped by the test", result.output
    assert [c.output_dir for c in seen] == [tmp_path / "runs"]


@pytest.mark.parametrize("argv", [["run"], ["tune"], ["submission", "run"]])
def test_engine_options_reach_the_config_in_every_command(argv: list[str], tmp_path: Path, seen: list[Any]) -> None:
    """`--engine-option` on run, tune and `submission run` (an option of the default onnxruntime target: tune
    checks its settings with the engine's parser before it starts)."""
    result = invoke([*argv, "--engine-option", "optimize=none", "--output-dir", str(tmp_path / "runs")])
    assert result.stderr.splitlines()[-1] == "error: stopped by the test", result.output
    assert [c.engine_options for c in seen] == [{"optimize": "none"}]


def test_submissions_have_their_own_folder_flag(tmp_path: Path, seen: list[Any]) -> None:
    for label in ("submission run", "submission generate"):
        assert _flags(label)["submission_dir"][0] == ["--submission-dir"]
    result = invoke(["submission", "run", "--runs-dir", str(tmp_path)])
    assert result.exit_code == 2 and "No such option: --runs-dir" in result.stderr


# ---- one edge: every sub-command's errors and Ctrl-C end the same way -----------------------------------


class _Odd(MlperfBertError):
    """An error with an exit code no other has, to see that it is the one reported."""

    exit_code = 7


def _first_call_of(monkeypatch: pytest.MonkeyPatch, target: Any, name: str, exc: BaseException) -> None:
    def raise_it(*_: Any, **__: Any) -> None:
        raise exc

    monkeypatch.setattr(target, name, raise_it)


SUB_COMMANDS = [
    (["run"], cli, "resolve_config"),
    (["tune"], tune_cmd, "resolve_config"),
    (["submission", "run"], submission_cmd, "run_and_submit"),
    (["submission", "generate", "some-run"], submission_cmd, "generate_submission"),
    (["submission", "check", "some-tree"], submission_cmd, "check_submission"),
    (["assets", "list"], assets_cmd, "load_catalogue"),
    (["images", "build"], images_cmd, "default_images"),
]


@pytest.mark.parametrize(("argv", "target", "name"), SUB_COMMANDS, ids=[" ".join(a[:2]) for a, _, _ in SUB_COMMANDS])
def test_an_error_in_any_sub_command_is_one_line_and_its_exit_code(
    monkeypatch: pytest.MonkeyPatch, argv: list[str], target: Any, name: str
) -> None:
    _first_call_of(monkeypatch, target, name, _Odd("the thing is wrong; do this instead"))
    result = invoke(argv)
    assert (result.exit_code, result.stderr) == (7, "error: the thing is wrong; do this instead\n")


@pytest.mark.parametrize(("argv", "target", "name"), SUB_COMMANDS, ids=[" ".join(a[:2]) for a, _, _ in SUB_COMMANDS])
def test_an_unexpected_exception_is_one_line_not_a_traceback(
    monkeypatch: pytest.MonkeyPatch, argv: list[str], target: Any, name: str
) -> None:
    """A failure no check names (a bug of ours) still reaches the user as one line saying so, exit 1."""
    _first_call_of(monkeypatch, target, name, KeyError("oops"))
    result = invoke(argv)
    assert result.exit_code == 1 and "Traceback" not in result.stderr
    assert result.stderr == (
        "error: unexpected KeyError: 'oops' (a bug in mlperf-bert: rerun with -v for the traceback, and report it)\n"
    )


@pytest.mark.parametrize(("argv", "target", "name"), SUB_COMMANDS, ids=[" ".join(a[:2]) for a, _, _ in SUB_COMMANDS])
def test_ctrl_c_in_any_sub_command_is_exit_130(
    monkeypatch: pytest.MonkeyPatch, argv: list[str], target: Any, name: str
) -> None:
    _first_call_of(monkeypatch, target, name, KeyboardInterrupt())
    result = invoke(argv)
    assert (result.exit_code, result.stderr) == (130, "interrupted\n")


def test_typer_exit_codes_help_version_and_usage_errors(tmp_path: Path) -> None:
    assert (invoke(["--version"]).exit_code, invoke(["--version"]).stdout) == (0, f"mlperf-bert {__version__}\n")
    helped = invoke(["run", "--help"])
    assert helped.exit_code == 0 and "--model-path" in helped.stdout and helped.stderr == ""
    bare = invoke([])
    assert bare.exit_code == 2 and "submission" in bare.stdout  # the group's help, as before
    bad = invoke(["run", "--scenario", "Batch"])
    assert bad.exit_code == 2 and bad.stdout == ""
    assert bad.stderr.startswith("error: Invalid value for '--scenario'") and bad.stderr.count("\n") == 1
    assert bad.stderr.rstrip().endswith("see `mlperf-bert run --help`")


def test_main_exits_with_run_clis_code(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cli, "run_cli", lambda argv=None: 7)
    with pytest.raises(SystemExit) as exited:
        cli.main()
    assert exited.value.code == 7


def test_an_option_the_reference_sut_ignores_is_one_sentence_before_a_run(tmp_path: Path) -> None:
    result = invoke(
        ["run", "--sut", "reference", "--engine-option", "fusions=onnxruntime", "--output-dir", str(tmp_path / "r")]
    )
    assert result.exit_code == 2 and result.stderr == (
        "error: engine option fusions=onnxruntime does nothing here: the reference SUT runs onnxruntime-cpu "
        "with optimize=none; drop it, or use --sut optimized\n"
    ), result.output
    assert not (tmp_path / "r").exists()
    own = invoke(
        ["run", "--engine-option", "optimize=none", "--engine-option", "fusions=onnxruntime"]
        + ["--output-dir", str(tmp_path / "r")]
    )
    assert own.exit_code == 2 and own.stderr.startswith(
        "error: onnxruntime engine option fusions=onnxruntime does nothing here: it configures the fusions, and "
        "optimize=none applies none; drop it, or drop optimize=none"
    ), own.output
