import dataclasses
import typing
from pathlib import Path

import pytest
from cli_support import invoke

from orchestrator.backends import TARGETS, get_target
from orchestrator.config import Mode, RunConfig, RunOverrides, Scenario, resolve_config
from orchestrator.errors import ConfigError


def test_defaults_are_the_embedded_demo_in_test_mode() -> None:
    cfg = RunConfig()
    assert cfg.target_key == "onnxruntime-cpu"
    assert cfg.scenario is Scenario.Offline
    assert cfg.mode.modes() == ["accuracy", "performance"]
    assert cfg.execution_mode.value == "test"


def test_batch_size_left_out_is_the_targets_and_recorded_as_such() -> None:
    from orchestrator.workflows.benchmark import with_default_batch_size

    cpu = get_target("onnxruntime", "cpu")
    assert RunConfig().batch_size is None
    assert with_default_batch_size(RunConfig(), cpu).batch_size == cpu.batch_size == 2
    assert with_default_batch_size(RunConfig(sut="reference"), cpu).batch_size == 1
    assert with_default_batch_size(RunConfig(batch_size=8), cpu).batch_size == 8
    ds = RunConfig(backend="deepsparse")
    assert with_default_batch_size(ds, get_target("deepsparse")).batch_size == 16


def test_unknown_key_rejected_with_one_sentence(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("scenarioo: Offline\n")
    with pytest.raises(ConfigError, match="unknown option 'scenarioo'"):
        resolve_config(None, f)


def test_cli_overrides_file_overrides_defaults(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("scenario: Server\nbatch-size: 8\nthreads: 3\n")
    cfg = resolve_config(RunOverrides(batch_size=32, threads=None), f)
    assert cfg.scenario is Scenario.Server and cfg.batch_size == 32 and cfg.threads == 3
    assert cfg.mode is Mode.both  # neither given nor in the file: the default


def test_overrides_are_run_config_fields_all_optional() -> None:
    """Field for field a RunConfig, each the same type or None, so every option can be given or left out."""
    hints = typing.get_type_hints(RunOverrides)
    assert list(hints) == list(RunConfig.model_fields)
    for name, info in RunConfig.model_fields.items():
        assert hints[name] == info.annotation | None, name
        assert getattr(RunOverrides(), name) is None
    assert RunOverrides(scenario=Scenario.Server, test_query_count=5).given() == {
        "scenario": Scenario.Server,
        "test_query_count": 5,
    }
    with pytest.raises(TypeError):
        RunOverrides(scenarioo=Scenario.Server)  # type: ignore[call-arg]
    with pytest.raises(dataclasses.FrozenInstanceError):
        RunOverrides().backend = "x"  # type: ignore[misc]


@pytest.mark.parametrize(
    "values, message",
    [
        ({"scenario": "Offlien"}, "invalid scenario"),
        ({"backend": "tensorflow"}, "unknown backend 'tensorflow'"),
        ({"backend": "onnxruntime", "device": "tpu"}, "has no device 'tpu'"),
        ({"test_query_count": 0}, "invalid test_query_count"),
        ({"mode": "both-ways"}, "invalid mode"),
    ],
)
def test_bad_values_name_the_option(values: dict, message: str) -> None:
    """Values are checked once, by RunConfig, whether given (API callers may pass strings) or from a file."""
    with pytest.raises(ConfigError, match=message):
        resolve_config(RunOverrides(**values))


def test_bad_values_in_the_file_name_the_option(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("test-query-count: 0\n")
    with pytest.raises(ConfigError, match="invalid test_query_count"):
        resolve_config(None, f)


def test_scenario_is_case_insensitive(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("scenario: singlestream\n")
    assert resolve_config(None, f).scenario is Scenario.SingleStream


def test_every_choice_is_case_insensitive_in_files_and_flags(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("mode: BOTH\nexecution-mode: Test\nsut: Reference\nrunner: LOCAL\nlocal-env: Current\n")
    config = resolve_config(None, f)
    assert (config.mode.value, config.execution_mode.value, config.sut.value) == ("both", "test", "reference")
    assert (config.runner.value, config.local_env.value) == ("local", "current")
    flags = ["--mode", "Accuracy", "--execution-mode", "TEST", "--sut", "REFERENCE", "--runner", "LOCAL"]
    result = invoke(["run", *flags, "--local-env", "CURRENT", "--dry-run", "--output-dir", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output


def test_a_config_path_that_is_no_text_file_is_one_sentence(tmp_path: Path) -> None:
    binary = tmp_path / "c.yaml"
    binary.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(ConfigError, match="is not UTF-8 text; pass a YAML file"):
        resolve_config(None, binary)
    with pytest.raises(ConfigError, match="is a folder; pass a YAML file"):
        resolve_config(None, tmp_path)
    result = invoke(["tune", "--config", str(tmp_path)])
    assert result.exit_code == 2 and result.stderr.count("\n") == 1, result.output


def test_bad_yaml_file(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("a: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        resolve_config(None, f)
    with pytest.raises(ConfigError, match="does not exist"):
        resolve_config(None, tmp_path / "missing.yaml")


def test_registry_keys_match_image_folders_convention() -> None:
    for key, target in TARGETS.items():
        assert key == f"{target.backend}-{target.device}"
        assert target.image.endswith(key)
    assert get_target("onnxruntime").device == "cpu"
    assert Mode.accuracy.modes() == ["accuracy"]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"shm_size": "lots"}, "invalid shm_size 'lots': not a size Docker reads"),
        ({"memory": "-5g"}, "invalid memory '-5g': not a size Docker reads"),
        ({"cpuset_cpus": "0-x"}, "invalid cpuset_cpus '0-x': not a list of CPUs"),
        ({"image": "UPPER CASE::bad"}, "invalid image 'UPPER CASE::bad': not an image reference"),
    ],
)
def test_docker_settings_in_a_form_docker_cannot_read_are_one_sentence(values: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        resolve_config(RunOverrides(runner="docker", **values))  # type: ignore[arg-type]


def test_docker_settings_docker_reads_are_taken() -> None:
    config = RunConfig(
        runner="docker",  # type: ignore[arg-type]
        shm_size="1g",
        memory="512MiB",
        cpuset_cpus="0-3,6",
        image="registry.example.com:5000/team/mlperf-bert_onnxruntime-cpu:v1.2@sha256:" + "a" * 64,
    )
    assert (config.shm_size, config.memory, config.cpuset_cpus) == ("1g", "512MiB", "0-3,6")


def test_the_reference_sut_with_another_batch_size_is_refused() -> None:
    """MLPerf's reference SUT runs batch 1: a run.json saying batch 8 for it would record what did not run."""
    with pytest.raises(ConfigError, match="the reference SUT runs MLPerf's batch of 1, not 8; drop --batch-size"):
        resolve_config(RunOverrides(sut="reference", batch_size=8))  # type: ignore[arg-type]
    assert resolve_config(RunOverrides(sut="reference", batch_size=1)).batch_size == 1  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="input should be a finite number"):
        resolve_config(RunOverrides(target_qps=float("inf")))
