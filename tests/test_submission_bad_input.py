"""Bad input to `submission generate | check | run`: one `error:` sentence, a non-zero exit, nothing left behind.

Each test is a case a user hit: a traceback, a multi-line error, an error only after the whole benchmark ran,
a sentence that named the wrong option, a silent exit 0, or an empty folder left behind.
"""

from __future__ import annotations

import gzip
import importlib.util
import io
import os
import sys
import tarfile
from pathlib import Path

import pytest
from cli_support import CliResult, invoke

from orchestrator.errors import ConfigError, SubmissionError
from orchestrator.runs import FileRef, RunRecord
from orchestrator.submission import GenerateOptions, Overrides, generate_submission
from orchestrator.submission import package as package_mod
from orchestrator.submission.system import describe_system, load_yaml_mapping


def _fixtures():
    name = "mlperf_bert_submission_fixtures"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            name, Path(__file__).parent / "fixtures" / "submission" / "loadgen_runs.py"
        )
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


lr = _fixtures()


@pytest.fixture(scope="session")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return lr.shared_runs(tmp_path_factory)


def submission(*args: str | Path) -> CliResult:
    """`mlperf-bert submission ARGS...`, through the CLI's one error edge."""
    return invoke(["submission", *map(str, args)])


def one_sentence(res: CliResult, code: int, *parts: str) -> str:
    """The command failed with `code` and said so in exactly one `error:` line (no traceback) holding parts."""
    assert res.exit_code == code, res.output
    assert "Traceback" not in res.output
    errors = [line for line in res.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, res.stderr
    lines = [line for line in res.stderr.splitlines() if line.strip() and " WARNING " not in line]
    assert lines == errors, res.stderr  # nothing but the sentence (and detection warnings)
    for part in parts:
        assert part in errors[0], errors[0]
    return errors[0]


def _generate_args(runs: dict[str, Path], out: Path) -> list[str | Path]:
    return ["generate", runs["Offline"], runs["SingleStream"], "--submitter", "Audit", "--submission-dir", out]


@pytest.fixture
def no_benchmark(monkeypatch):
    """`submission run` must refuse before it runs anything: running fails the test."""
    import orchestrator.workflows.benchmark

    def must_not_run(*_a, **_k):
        pytest.fail("the benchmark ran before the submission options were refused")

    monkeypatch.setattr(orchestrator.workflows.benchmark, "run_benchmark", must_not_run)


def _run_args(tmp_path: Path, *extra: str | Path) -> list[str | Path]:
    return [
        "run",
        "--test-query-count",
        "64",
        "--output-dir",
        tmp_path / "runs",
        "--cache-dir",
        tmp_path / "cache",
        *extra,
    ]


def _binary(path: Path) -> Path:
    path.write_bytes(b"\x7fELF\x02\x01\x01\x00" + bytes(range(128, 256)) * 4)
    return path


# 1. --system-config that is a directory, or not text


@pytest.mark.parametrize("kind", ["directory", "binary"])
def test_system_config_directory_or_binary_is_one_sentence(runs, tmp_path, kind, no_benchmark):
    if kind == "directory":
        bad = tmp_path / "adir"
        bad.mkdir()
        part = "is a directory; pass a YAML file"
    else:
        bad = _binary(tmp_path / "system.yaml")
        part = "is not UTF-8 text; pass a YAML file"
    with pytest.raises(ConfigError, match=part):
        load_yaml_mapping(bad, "system config")
    out = tmp_path / "subs"
    res = submission(*_generate_args(runs, out), "--system-config", bad)
    one_sentence(res, 2, f"system config {bad} {part}")
    res = submission(*_run_args(tmp_path, "--submission-dir", out, "--system-config", bad))
    one_sentence(res, 2, f"system config {bad} {part}")
    assert not out.exists() and not (tmp_path / "runs").exists()


def test_system_config_value_that_is_not_a_string_is_refused(tmp_path):
    cfg = tmp_path / "system.yaml"
    cfg.write_text("cooling: {a: 1}\n")
    with pytest.raises(ConfigError, match="gives cooling a mapping; give every key one plain value"):
        GenerateOptions(overrides=Overrides(system_config=cfg)).validate()


# 2. a --submission-dir that cannot be created


def test_submission_dir_that_cannot_be_created_is_one_sentence(runs, tmp_path, no_benchmark):
    afile = tmp_path / "afile"
    afile.write_text("")
    out = afile / "subs" / "deeper"  # under a regular file: mkdir fails (as /proc/nope does)
    before = sorted(os.listdir(tmp_path))
    res = submission(*_generate_args(runs, out))
    one_sentence(res, 1, f"cannot create --submission-dir {out}", "pass a folder that can be created")
    res = submission(*_run_args(tmp_path, "--submission-dir", out))
    one_sentence(res, 1, f"cannot create --submission-dir {out}")
    assert sorted(os.listdir(tmp_path)) == before  # no runs/ either: refused before the first run


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="needs /proc")
def test_submission_dir_under_proc(runs, tmp_path):
    res = submission(*_generate_args(runs, Path("/proc/nope")))
    one_sentence(res, 1, "cannot create --submission-dir /proc/nope")


def test_probe_leaves_nothing_behind(tmp_path):
    out = tmp_path / "a" / "b" / "c"
    package_mod.probe_output_dir(out)
    assert list(tmp_path.iterdir()) == []


# 3. `submission check` of something that is not a (complete) tarball


def _tarball(path: Path) -> Path:
    """A tar.gz big enough that its first 50,000 bytes are not the whole stream."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        data = os.urandom(200_000)
        info = tarfile.TarInfo("open/Audit/blob.bin")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    path.write_bytes(gzip.compress(buf.getvalue()))
    return path


def test_check_of_a_truncated_tarball_is_one_sentence(tmp_path):
    whole = _tarball(tmp_path / "whole.tar.gz")
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(whole.read_bytes()[:50_000])
    res = submission("check", cut, "--allow-test-mode")
    one_sentence(res, 2, f"{cut} is truncated or corrupt", "pass a complete submission folder or tarball")
    plain_cut = tmp_path / "cut.tar"
    plain_cut.write_bytes(gzip.decompress(whole.read_bytes())[:100_000])
    one_sentence(submission("check", plain_cut), 2, f"{plain_cut} is truncated or corrupt")


@pytest.mark.parametrize("kind", ["text", "empty", "not-gzip.json.gz", "truncated.json.gz"])
def test_check_of_a_file_that_is_not_a_tarball_is_one_sentence(tmp_path, kind):
    path = tmp_path / kind
    if kind == "text":
        path.write_text("hello\n")
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "not-gzip.json.gz":
        path.write_text('{"data": []}\n')
    else:
        path.write_bytes(gzip.compress(b'{"data": [' + b'{"title": "x"}, ' * 20_000 + b"]}")[:3000])
    res = submission("check", path, "--allow-test-mode")
    line = one_sentence(res, 2, str(path), "pass a ")
    assert "method gz" not in line


# 4. `submission run` refuses its submission options before the first benchmark run


@pytest.mark.parametrize(
    ("flags", "code", "part"),
    [
        (["--division", "closed"], 1, "--division closed needs the MLPerf BERT-large model and demo-int8 is not it"),
        (["--submitter", "a/b"], 1, "--submitter 'a/b' is invalid"),
        (["--submission-dir", "{file}"], 1, "is a file; pass a folder to --submission-dir"),
        (["--system-config", "{broken}"], 2, "is not valid YAML"),
        (["--system-config", "{wrong_type}"], 1, "is invalid at system_type"),
        (["--attempt", "zzz"], 1, "--attempt 'zzz' must be 'short' or a positive number"),
        (["--model-name", "bert-99"], 2, "would claim to be the MLPerf model itself"),
        (["--submission-dir", "{taken}"], 1, "attempt short already exists"),
        (["--submission-dir", "{foreign}"], 1, "holds things that are not submission attempts"),
    ],
)
def test_run_refuses_submission_options_before_running(tmp_path, no_benchmark, flags, code, part):
    afile = tmp_path / "afile"
    afile.write_text("")
    broken = tmp_path / "broken.yaml"
    broken.write_text("scenario: [1,2\n")
    wrong_type = tmp_path / "wrong_type.yaml"
    wrong_type.write_text("system_type: datacenter\n")
    taken = tmp_path / "taken"
    (taken / "mlperf_submission_short").mkdir(parents=True)
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine\n")
    paths = {"file": afile, "broken": broken, "wrong_type": wrong_type, "taken": taken, "foreign": foreign}
    args = [f.format(**paths) for f in flags]
    if "--submission-dir" not in args:
        args += ["--submission-dir", str(tmp_path / "subs")]
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    one_sentence(submission(*_run_args(tmp_path, *args)), code, part)
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before  # nothing new, nothing lost


def test_run_accepts_the_mlperf_model_in_the_closed_division(monkeypatch):
    """The pre-run model check lets the MLPerf model through (it must not refuse what generate accepts)."""
    from orchestrator.submission.generate import check_model

    check_model("bert-large-fp32", "/m/bert-large.onnx", False, GenerateOptions(division="closed"))
    with pytest.raises(SubmissionError, match="--division closed needs the MLPerf BERT-large model"):
        check_model("custom:x.onnx", "/m/x.onnx", False, GenerateOptions(division="closed"))
    check_model("custom:x.onnx", "/m/x.onnx", False, GenerateOptions())


# 5. an invalid value from a flag names the flag, not the YAML


def _record() -> RunRecord:
    return RunRecord(
        run_id="r",
        status="succeeded",
        execution_mode="test",
        test_mode=True,
        scenario="Offline",
        modes=["accuracy", "performance"],
        target="onnxruntime-cpu",
        runner="local",
        config={},
        model=FileRef(path="/m.onnx"),
        dataset=FileRef(path="/d.json"),
        vocab=FileRef(path="/v.txt"),
        host={"hostname": "elsewhere", "cpu_model": "AMD EPYC"},
    )


def test_submitter_flag_error_names_the_flag(runs, tmp_path):
    res = submission(*_generate_args(runs, tmp_path / "subs")[:-4], "--submitter", "a/b")
    line = one_sentence(res, 1, "--submitter 'a/b' is invalid", "pass a name of letters, digits")
    assert "--system-config" not in line
    with pytest.raises(SubmissionError, match="--submitter '' is invalid"):
        GenerateOptions(overrides=Overrides(submitter="")).validate()
    # describe_system, which validates the whole description, says the same
    with pytest.raises(SubmissionError, match="^--submitter 'a/b' is invalid") as exc:
        describe_system(_record(), "open", Overrides(submitter="a/b"), "")
    assert "--system-config" not in str(exc.value)
    # a value from the YAML still sends the user to the YAML
    cfg = tmp_path / "system.yaml"
    cfg.write_text("submitter: a/b\n")
    with pytest.raises(SubmissionError, match="fix it in your --system-config YAML"):
        describe_system(_record(), "open", Overrides(system_config=cfg), "")
    with pytest.raises(SubmissionError, match=f"system config {cfg} is invalid at submitter"):
        GenerateOptions(overrides=Overrides(system_config=cfg)).validate()
    # ... unless the flag overrides it
    GenerateOptions(overrides=Overrides(submitter="Good", system_config=cfg)).validate()


# 6. `submission check --run-dir` of something that is not a directory


@pytest.mark.parametrize("kind", ["missing", "file"])
def test_check_run_dir_that_is_not_a_directory_is_an_error(tmp_path, kind):
    run_dir = tmp_path / "nonexistent"
    if kind == "file":
        run_dir.write_text("")
    root = tmp_path / "sub"
    root.mkdir()
    res = submission("check", root, "--allow-test-mode", "--run-dir", run_dir)
    what = "does not exist" if kind == "missing" else "is not a directory"
    one_sentence(res, 2, f"--run-dir {run_dir} {what}; pass a run directory made by `mlperf-bert run`")


# 7. a refused generate leaves nothing behind


def test_refused_generate_leaves_no_submission_dir(runs, tmp_path):
    nosum = lr.clone_run(runs["Offline"], tmp_path / "runs")
    (nosum / "performance" / "run_1" / "mlperf_log_summary.txt").unlink()
    out = tmp_path / "new" / "subs"
    res = submission("generate", nosum, "--submitter", "Audit", "--submission-dir", out)
    one_sentence(res, 1, "mlperf_log_summary.txt is missing")
    assert not (tmp_path / "new").exists()
    # an existing folder stays, as it was
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "summary.csv").write_text("earlier\n")
    res = submission("generate", nosum, "--submitter", "Audit", "--submission-dir", existing)
    one_sentence(res, 1, "mlperf_log_summary.txt is missing")
    assert [p.name for p in existing.iterdir()] == ["summary.csv"]
    assert (existing / "summary.csv").read_text() == "earlier\n"


def test_generate_failing_the_check_leaves_no_submission_dir(runs, tmp_path):
    out = tmp_path / "new" / "subs"
    with pytest.raises(SubmissionError, match="the generated submission breaks"):  # v5.1: not the v6.1 seeds
        generate_submission([runs["Offline"], runs["SingleStream"]], out, GenerateOptions(version="v5.1"))
    assert not (tmp_path / "new").exists()


def test_generate_failing_to_package_leaves_no_half_attempt(runs, tmp_path, monkeypatch):
    def disk_full(*_a, **_k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(package_mod, "attempt_markdown", disk_full)
    out = tmp_path / "subs"
    with pytest.raises(OSError, match="No space left"):
        generate_submission([runs["Offline"], runs["SingleStream"]], out, GenerateOptions())
    assert not out.exists()  # neither the tree nor the tarball, summary.json, .run nor .tstamps
