"""submission generate: the tree from real LoadGen run directories (layout, files, hashes, safety, determinism)."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import socket
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from orchestrator.errors import ConfigError, SubmissionError
from orchestrator.submission import GenerateOptions, Overrides, check_submission, generate_submission
from orchestrator.submission.rules import MEASUREMENTS_KEYS, SYSTEM_KEYS, TRUNCATE_SEPARATOR


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


def _generate(runs: dict[str, Path], out: Path, **kw) -> object:
    options = kw.pop("options", GenerateOptions())
    return generate_submission(
        [runs["Offline"], runs["SingleStream"]], out, options, argv=["mlperf-bert", "submission", "generate"], **kw
    )


def _sub(result) -> Path:
    (sub,) = list((result.tree / "open").iterdir())
    return sub


def test_v61_layout_from_real_runs(runs, tmp_path):
    result = _generate(runs, tmp_path / "out")
    assert result.attempt == "short"  # test-mode runs make the reference ("short") attempt
    assert result.report.verdict == "test-mode"
    sub = _sub(result)
    assert sub.name == "Community"
    (system,) = [p.stem for p in (sub / "systems").glob("*.json")]
    assert system.endswith("-onnxruntime-cpu")
    src = sub / "src" / "mlperf-bert"
    assert (src / "orchestrator" / "__init__.py").is_file() and (src / "pyproject.toml").is_file()
    assert "git commit" in (src / "SOURCE.md").read_text()
    assert not (src / "embedded").exists() and not list(src.rglob(".*"))
    assert json.loads((sub / "model_mapping.json").read_text()) == {"demo-int8": "bert-99"}
    for scenario in ("Offline", "SingleStream"):
        d = sub / "results" / system / "demo-int8" / scenario
        assert sorted(p.name for p in d.iterdir()) == [
            "README.md",
            "accuracy",
            "measurements.json",
            "performance",
            "user.conf",
        ]
        assert sorted(p.name for p in (d / "performance" / "run_1").iterdir()) == [
            "mlperf_log_detail.txt",
            "mlperf_log_summary.txt",
        ]
        assert sorted(p.name for p in (d / "accuracy").iterdir()) == [
            "accuracy.txt",
            "mlperf_log_accuracy.json",
            "mlperf_log_detail.txt",
            "mlperf_log_summary.txt",
        ]
        measurements = json.loads((d / "measurements.json").read_text())
        assert all(measurements[k] for k in MEASUREMENTS_KEYS)
        assert (d / "user.conf").read_text() == (runs[scenario] / "user.conf").read_text()
        readme = (d / "README.md").read_text()
        assert "TEST MODE" in readme and "DEMO MODEL" in readme
        assert f"mlperf-bert run --scenario {scenario}" in readme


def test_system_json_has_all_keys_and_detected_values(runs, tmp_path):
    result = _generate(runs, tmp_path / "out")
    sub = _sub(result)
    (path,) = list((sub / "systems").glob("*.json"))
    desc = json.loads(path.read_text())
    assert list(desc) == sorted(SYSTEM_KEYS)  # written with sorted keys; exactly the 35
    assert desc["division"] == "open" and desc["submitter"] == "Community"
    assert desc["system_type"] == "edge"
    record = json.loads((runs["Offline"] / "run.json").read_text())
    assert desc["host_processor_model_name"] == record["host"]["cpu_model"]
    assert desc["framework"] == "onnxruntime 1.20.1 (CPUExecutionProvider)"
    assert "mlcommons-loadgen 6.0.17" in desc["other_software_stack"]
    assert desc["accelerators_per_node"] == "0" and desc["number_of_nodes"] == "1"


def test_accuracy_log_truncated_and_hash_of_full_log(runs, tmp_path):
    result = _generate(runs, tmp_path / "out")
    sub = _sub(result)
    (system,) = [p.name for p in (sub / "results").iterdir()]
    acc = sub / "results" / system / "demo-int8" / "Offline" / "accuracy"
    full = (runs["Offline"] / "accuracy" / "mlperf_log_accuracy.json").read_bytes()
    assert len(full) > 10 * 1024  # a real log of 50 zero responses; the full log stays in the run
    cut = (acc / "mlperf_log_accuracy.json").read_bytes()
    assert cut == full[:4096] + TRUNCATE_SEPARATOR + full[-4096:]
    lines = (acc / "accuracy.txt").read_text().splitlines()
    assert lines[0] == '{"exact_match": 0.0, "f1": 0.0}'
    assert lines[-1] == "hash=" + hashlib.sha256(full).hexdigest()
    assert sum(ln.startswith("hash=") for ln in lines) == 1


def test_run_hash_that_disagrees_with_the_log_is_refused(runs, tmp_path):
    run = lr.clone_run(runs["Offline"], tmp_path / "runs")
    perf = lr.clone_run(runs["SingleStream"], tmp_path / "runs")
    txt = run / "accuracy" / "accuracy.txt"
    txt.write_text(txt.read_text() + "hash=" + "0" * 64 + "\n")
    with pytest.raises(SubmissionError, match="accuracy log changed after scoring"):
        generate_submission([run, perf], tmp_path / "out", GenerateOptions())
    assert not (tmp_path / "out" / "mlperf_submission_short").exists()


def test_generating_twice_gives_the_same_tree_and_tarball(runs, tmp_path):
    a = _generate(runs, tmp_path / "a")
    b = _generate(runs, tmp_path / "b")
    assert lr.tree_digest(a.tree) == lr.tree_digest(b.tree)
    assert a.artifacts[".tar.gz"].read_bytes() == b.artifacts[".tar.gz"].read_bytes()


def test_never_overwrites_an_earlier_attempt(runs, tmp_path):
    out = tmp_path / "out"
    first = _generate(runs, out)
    before = lr.tree_digest(first.tree)
    with pytest.raises(SubmissionError, match="attempt short already exists"):
        _generate(runs, out)
    assert lr.tree_digest(first.tree) == before
    second = _generate(runs, out, attempt="2")
    assert second.attempt == "2" and second.tree.name == "mlperf_submission_2"
    with pytest.raises(SubmissionError, match="attempt 2 already exists"):
        _generate(runs, out, attempt="2")


def test_refuses_an_output_dir_that_holds_something_else(runs, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(SubmissionError, match="not submission attempts"):
        _generate(runs, out)
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


def test_tarball_holds_only_the_tree(runs, tmp_path):
    result = _generate(runs, tmp_path / "out")
    with tarfile.open(result.artifacts[".tar.gz"]) as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    assert all(m.isfile() or m.isdir() for m in members)
    assert all(not n.startswith("/") and ".." not in n.split("/") for n in names)
    assert all(n == "open" or n.startswith("open/") for n in names)
    files = {m.name for m in members if m.isfile()}
    assert files == set(lr.tree_digest(result.tree))
    assert {m.mtime for m in members} == {0} and {m.uid for m in members} == {0}


def test_invalid_system_config_is_refused_before_anything_is_written(runs, tmp_path):
    bad = tmp_path / "system.yaml"
    bad.write_text("system_type: datacenter\n")
    options = GenerateOptions(overrides=Overrides(system_config=bad))
    with pytest.raises(SubmissionError, match="system_type"):
        _generate(runs, tmp_path / "out", options=options)
    assert not (tmp_path / "out").exists()
    bad.write_text("no_such_key: 1\n")
    with pytest.raises(ConfigError, match="unknown keys no_such_key"):
        _generate(runs, tmp_path / "out", options=options)
    assert not (tmp_path / "out").exists()


def test_overrides_from_yaml_and_flags(runs, tmp_path):
    cfg = tmp_path / "system.yaml"
    cfg.write_text("cooling: liquid\nhost_storage_type: NVMe SSD\nstatus: preview\n")
    options = GenerateOptions(overrides=Overrides(submitter="TeamX", hw_name="My Box", system_config=cfg))
    result = _generate(runs, tmp_path / "out", options=options)
    sub = _sub(result)
    assert sub.name == "TeamX"
    (path,) = list((sub / "systems").glob("*.json"))
    assert path.stem == "My-Box-onnxruntime-cpu"
    desc = json.loads(path.read_text())
    assert (desc["cooling"], desc["host_storage_type"], desc["status"]) == ("liquid", "NVMe SSD", "preview")
    assert desc["submitter"] == "TeamX" and desc["system_name"] == "My Box (onnxruntime-cpu)"


def test_closed_division_refuses_the_demo_model(runs, tmp_path):
    with pytest.raises(SubmissionError, match="not the MLPerf BERT-large model"):
        _generate(runs, tmp_path / "out", options=GenerateOptions(division="closed"))
    assert not (tmp_path / "out").exists()


def test_an_mlperf_model_is_submitted_as_bert_99_without_mapping(runs, tmp_path):
    meta = {"precision": "fp32", "demo": False}
    model = {"name": "bert-large-fp32", "path": "/models/bert-large.onnx", "sha256": "cd" * 32}
    a = lr.clone_run(runs["Offline"], tmp_path / "runs", model_meta=meta, model=model)
    b = lr.clone_run(runs["SingleStream"], tmp_path / "runs", model_meta=meta, model=model)
    result = generate_submission([a, b], tmp_path / "out", GenerateOptions())
    sub = _sub(result)
    assert not (sub / "model_mapping.json").exists()
    (system,) = [p.name for p in (sub / "results").iterdir()]
    assert sorted(p.name for p in (sub / "results" / system).iterdir()) == ["bert-99"]
    assert "DEMO MODEL" not in (sub / "results" / system / "bert-99" / "Offline" / "README.md").read_text()


def test_v5_layout(runs, tmp_path):
    options = GenerateOptions(version="v5.1")
    # LoadGen 6.0.17 carries the v6.1 seeds: the v5.1 rules reject them, so nothing is packaged.
    with pytest.raises(SubmissionError, match="qsl_rng_seed is 2085463073848966840, the v5.1 checker expects"):
        _generate(runs, tmp_path / "out", options=options, keep_invalid=True)
    tree = tmp_path / "out" / "mlperf_submission_short"
    (sub,) = list((tree / "open").iterdir())
    (system,) = [p.stem for p in (sub / "systems").glob("*.json")]
    assert not (sub / "src").exists()
    assert (sub / "code" / "demo-int8" / "onnxruntime-cpu" / "SOURCE.md").is_file()
    mdir = sub / "measurements" / system / "demo-int8" / "Offline"
    assert sorted(p.name for p in mdir.iterdir()) == sorted(
        ["README.md", "user.conf", f"{system}_onnxruntime-cpu_Offline.json"]
    )
    rdir = sub / "results" / system / "demo-int8" / "Offline"
    assert sorted(p.name for p in rdir.iterdir()) == ["accuracy", "performance"]
    assert not list((tmp_path / "out").glob("*.tar.gz"))
    # Apart from the seeds, the v5.1 tree follows the v5.1 rules.
    report = check_submission(tree, "v5.1")
    assert {f.message.split(" is ")[0] for f in report.errors} == {
        "qsl_rng_seed",
        "sample_index_rng_seed",
        "schedule_rng_seed",
    }


def test_runs_that_cannot_be_paired_are_refused(runs, tmp_path):
    with pytest.raises(SubmissionError, match="2 accuracy runs for Offline"):
        twin = lr.clone_run(runs["Offline"], tmp_path / "twin")
        generate_submission([runs["Offline"], twin], tmp_path / "out", GenerateOptions())
    perf_only = lr.clone_run(runs["SingleStream"], tmp_path / "p", modes=["performance"])
    with pytest.raises(SubmissionError, match="no accuracy run for SingleStream"):
        generate_submission([perf_only], tmp_path / "out", GenerateOptions())
    failed = lr.clone_run(runs["Offline"], tmp_path / "f", status="failed")
    with pytest.raises(SubmissionError, match=f"run {failed} failed"):
        generate_submission([failed], tmp_path / "out", GenerateOptions())
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    process = {"hostname": socket.gethostname(), "cli_pid": int(gone.stdout), "cli_started": 1}
    abandoned = lr.clone_run(runs["Offline"], tmp_path / "a", status="running", process=process)
    with pytest.raises(SubmissionError, match=f"run {abandoned} was abandoned .the process that ran it .pid"):
        generate_submission([abandoned], tmp_path / "out", GenerateOptions())
    with pytest.raises(ConfigError, match="not a run directory"):
        generate_submission([tmp_path], tmp_path / "out", GenerateOptions())
