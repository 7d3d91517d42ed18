"""submission check: golden trees, and every rule broken on purpose to see its message naming the file.

The golden test-mode tree is generated from real LoadGen runs. A full, VALID run needs 600 s and the
MLPerf model, so the VALID golden tree is that tree with its LoadGen values edited to what a full run
logs (VALID, 13,200 samples per query, 10,833 accuracy samples): it exercises the checker's valid path
only, and is never presented as a real result.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from orchestrator.errors import ConfigError
from orchestrator.submission import GenerateOptions, check_submission, generate_submission


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
def golden(tmp_path_factory: pytest.TempPathFactory) -> Path:
    runs = lr.shared_runs(tmp_path_factory)
    out = tmp_path_factory.mktemp("golden")
    result = generate_submission([runs["Offline"], runs["SingleStream"]], out, GenerateOptions(), package=False)
    return result.tree


class Tree:
    """Paths into a copy of the golden tree."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.sub = root / "open" / "Community"
        (self.system,) = [p.name for p in (self.sub / "results").iterdir()]
        self.system_json = self.sub / "systems" / f"{self.system}.json"

    def scen(self, scenario: str = "Offline") -> Path:
        return self.sub / "results" / self.system / "demo-int8" / scenario

    def perf(self, scenario: str = "Offline") -> Path:
        return self.scen(scenario) / "performance" / "run_1" / "mlperf_log_detail.txt"

    def acc(self, scenario: str = "Offline") -> Path:
        return self.scen(scenario) / "accuracy"

    def edit_system(self, **changes) -> None:
        data = json.loads(self.system_json.read_text())
        for k, v in changes.items():
            if v is None:
                data.pop(k)
            else:
                data[k] = v
        self.system_json.write_text(json.dumps(data))

    def edit_json(self, path: Path, **changes) -> None:
        data = json.loads(path.read_text())
        for k, v in changes.items():
            if v is None:
                data.pop(k)
            else:
                data[k] = v
        path.write_text(json.dumps(data))


@pytest.fixture
def tree(golden: Path, tmp_path: Path) -> Tree:
    root = tmp_path / "tree"
    shutil.copytree(golden, root, symlinks=True)
    return Tree(root)


def make_valid(t: Tree) -> None:
    """Edit the LoadGen values of the test-mode tree to those of a full run (see the module docstring)."""
    lr.mllog_edit(t.perf("Offline"), {"result_validity": "VALID", "effective_samples_per_query": 13200})
    lr.mllog_edit(
        t.perf("SingleStream"), {"result_validity": "VALID", "effective_max_query_count": 0}, drop=("error_runtime",)
    )
    for s in ("Offline", "SingleStream"):
        lr.mllog_edit(t.acc(s) / "mlperf_log_detail.txt", {"effective_accuracy_sample_count": 10833})


def errors_of(root: Path, version: str = "v6.1") -> list[str]:
    return [str(f) for f in check_submission(root, version).errors]


def test_golden_test_mode_tree_is_reported_as_test_mode_never_valid(golden):
    report = check_submission(golden)
    assert report.errors == []
    assert report.verdict == "test-mode"
    assert len(report.results) == 2 and all(r.test_mode for r in report.results)
    reasons = " | ".join(str(f) for f in report.test_mode_findings)
    assert "Offline/performance/run_1/mlperf_log_detail.txt: LoadGen result is INVALID" in reasons
    assert "Offline issued 100 samples per query" in reasons
    assert "SingleStream/performance/run_1/mlperf_log_detail.txt: LoadGen stopped at max_query_count" in reasons
    assert "the accuracy run covered 50 of 10833 samples" in reasons
    assert "NOT a valid MLPerf result" in report.summary_line()
    notes = [str(f) for f in report.findings if f.kind == "note"]
    assert any("below the bert-99 target" in n for n in notes)  # open division: told, not enforced


def test_golden_valid_tree(tree):
    make_valid(tree)
    report = check_submission(tree.root)
    assert [str(f) for f in report.findings if f.kind != "note"] == []
    assert report.verdict == "valid"
    offline = next(r for r in report.results if r.scenario == "Offline")
    assert offline.units == "Samples/s" and offline.result and offline.result > 0
    single = next(r for r in report.results if r.scenario == "SingleStream")
    assert single.units == "Latency (ms)"


def _root_file(t: Tree) -> None:
    (t.root / "notes.txt").write_text("x")


def _symlink_out(t: Tree) -> None:
    os.symlink("/etc/hostname", t.scen() / "link.txt")


def _broken_link(t: Tree) -> None:
    os.symlink(t.root / "nowhere", t.sub / "dangling")


def _big_file(t: Tree) -> None:
    with (t.sub / "src" / "big.bin").open("wb") as f:
        f.truncate(51 * 1024 * 1024)  # sparse: 51 MB of size, no disk


def _perf_line(t: Tree) -> None:
    p = t.perf()
    p.write_text(p.read_text() + ':::MLLOG {"key": broken\n')


def _perf_error(t: Tree) -> None:
    p = t.perf()
    rec = {
        "key": "error_invalid_config",
        "value": "something failed",
        "time_ms": 1.0,
        "namespace": "mlperf::logging",
        "event_type": "POINT_IN_TIME",
        "metadata": {"is_error": True, "is_warning": False},
    }
    p.write_text(p.read_text() + ":::MLLOG " + json.dumps(rec) + "\n")


def _acc_error(t: Tree) -> None:
    p = t.acc() / "mlperf_log_detail.txt"
    rec = {
        "key": "error_runtime",
        "value": "SUT dropped a response",
        "time_ms": 1.0,
        "metadata": {"is_error": True, "is_warning": False},
    }
    p.write_text(p.read_text() + ":::MLLOG " + json.dumps(rec) + "\n")


def _acc_txt(text: str) -> Callable[[Tree], None]:
    def mutate(t: Tree) -> None:
        lines = (t.acc() / "accuracy.txt").read_text().splitlines()
        hash_line = lines[-1]
        (t.acc() / "accuracy.txt").write_text(text.replace("{hash}", hash_line))

    return mutate


def _untruncated(t: Tree, full: Path) -> None:
    shutil.copyfile(full, t.acc() / "mlperf_log_accuracy.json")


def _not_truncation(t: Tree) -> None:
    p = t.acc() / "mlperf_log_accuracy.json"
    p.write_bytes(p.read_bytes()[:5000])


def _readme_unlabelled(t: Tree) -> None:
    p = t.scen() / "README.md"
    p.write_text(p.read_text().replace("TEST MODE", "short"))


MUTATIONS: dict[str, tuple[Callable[[Tree], None], str]] = {
    "root file": (_root_file, "ERROR notes.txt: only .md and .pdf files may sit next to the division folders"),
    "root dir": (lambda t: (t.root / "extra").mkdir(), "ERROR extra: is not a division folder"),
    "division file": (
        lambda t: (t.root / "open" / "x.md").write_text("x"),
        "ERROR open/x.md: a division folder may only hold submitter folders",
    ),
    "dot file": (lambda t: (t.sub / ".DS_Store").write_text("x"), "open/Community/.DS_Store: dot files"),
    "space": (lambda t: (t.sub / "src" / "my notes.md").write_text("x"), "src/my notes.md: names with spaces"),
    "pycache": (
        lambda t: (t.sub / "src" / "__pycache__").mkdir() or (t.sub / "src" / "__pycache__" / "a.pyc").write_text("x"),
        "src/__pycache__: __pycache__ folders are not allowed",
    ),
    "empty dir": (lambda t: (t.sub / "src" / "empty").mkdir(), "src/empty: is an empty folder"),
    "broken link": (_broken_link, "open/Community/dangling: is a broken symbolic link"),
    "link out": (_symlink_out, "Offline/link.txt: is a symbolic link that leads out of the submission"),
    "big file": (_big_file, "src/big.bin: is 51 MB; files over 50 MB are not allowed"),
    "no src": (lambda t: shutil.rmtree(t.sub / "src"), "open/Community/src: the src/ folder is missing"),
    "no system json": (lambda t: t.system_json.unlink(), "is missing; every results/"),
    "system without results": (
        lambda t: (t.sub / "systems" / "other.json").write_text("{}"),
        "systems/other.json: describes a system that has no results/ folder",
    ),
    "system key missing": (lambda t: t.edit_system(cooling=None), ".json: field cooling is missing"),
    "system key empty": (lambda t: t.edit_system(framework=""), ".json: field framework is empty"),
    "status": (lambda t: t.edit_system(status="ready"), "status 'ready' is not one of available, preview, rdi"),
    "datacenter": (lambda t: t.edit_system(system_type="datacenter"), "bert is an edge benchmark"),
    "submitter": (lambda t: t.edit_system(submitter="Other"), "submitter 'Other' differs from the folder name"),
    "division": (lambda t: t.edit_system(division="closed"), "division 'closed' differs from the folder name 'open'"),
    "nodes": (lambda t: t.edit_system(number_of_nodes="one"), "number_of_nodes 'one' must be an integer"),
    "is_network": (lambda t: t.edit_system(is_network="false"), "field is_network makes the official checker"),
    "no mapping": (
        lambda t: (t.sub / "model_mapping.json").unlink(),
        "demo-int8: model 'demo-int8' is not bert-99 or bert-99.9; map it in model_mapping.json",
    ),
    "bad mapping": (
        lambda t: (t.sub / "model_mapping.json").write_text("{nope"),
        "model_mapping.json: is not valid JSON",
    ),
    "scenario name": (lambda t: t.scen().rename(t.scen().with_name("offline")), "'offline' is not a scenario"),
    "measurement field": (
        lambda t: t.edit_json(t.scen() / "measurements.json", retraining=None),
        "Offline/measurements.json: field retraining is missing",
    ),
    "measurement empty": (
        lambda t: t.edit_json(t.scen() / "measurements.json", weight_data_types=""),
        "Offline/measurements.json: field weight_data_types is empty",
    ),
    "no user.conf": (lambda t: (t.scen() / "user.conf").unlink(), "Offline/user.conf: user.conf is missing"),
    "empty README": (lambda t: (t.scen() / "README.md").write_text(""), "Offline/README.md: README.md is empty"),
    "min_duration": (
        lambda t: (t.scen() / "user.conf").write_text("bert.Offline.min_duration = 10000\n"),
        "Offline/user.conf: line 1 lowers min_duration to 10000 ms",
    ),
    "seed": (
        lambda t: (t.scen() / "user.conf").write_text("*.*.qsl_rng_seed = 1\n"),
        "Offline/user.conf: line 1 sets qsl_rng_seed",
    ),
    "sample count conf": (
        lambda t: (t.scen() / "user.conf").write_text("bert.*.performance_sample_count_override = 100\n"),
        "lowers performance_sample_count_override to 100",
    ),
    "perf extra file": (
        lambda t: (t.perf().parent / "notes.txt").write_text("x"),
        "performance/run_1/notes.txt: is not allowed here",
    ),
    "perf missing": (lambda t: t.perf().unlink(), "performance/run_1/mlperf_log_detail.txt: is missing"),
    "perf bad line": (_perf_line, "mlperf_log_detail.txt: line 92 starts with :::MLLOG but is not valid JSON"),
    "perf loadgen error": (
        _perf_error,
        "performance/run_1/mlperf_log_detail.txt: LoadGen reported an error: something failed",
    ),
    "perf seeds": (
        lambda t: lr.mllog_edit(t.perf(), {"effective_qsl_rng_seed": 1}),
        "qsl_rng_seed is 1, the v6.1 checker expects 2085463073848966840",
    ),
    "perf min_duration": (
        lambda t: lr.mllog_edit(t.perf(), {"effective_min_duration_ms": 10000}),
        "min_duration is 10000 ms; it must be >= 600000",
    ),
    "perf sample count": (
        lambda t: lr.mllog_edit(t.perf(), {"effective_performance_sample_count": 100}),
        "performance_sample_count is 100; it must be >= 10833",
    ),
    "early stopping": (
        lambda t: lr.mllog_edit(t.perf("SingleStream"), {"early_stopping_met": False}),
        "SingleStream/performance/run_1/mlperf_log_detail.txt: LoadGen's early-stopping condition was not met",
    ),
    "perf mode": (
        lambda t: lr.mllog_edit(t.perf(), {"effective_test_mode": "AccuracyOnly"}),
        "is a AccuracyOnly log; performance/run_1 needs a PerformanceOnly run",
    ),
    "perf scenario": (
        lambda t: lr.mllog_edit(t.perf(), {"effective_scenario": "Server"}),
        "is a Server run but sits in the Offline folder",
    ),
    "perf no result": (
        lambda t: lr.mllog_edit(t.perf(), {}, drop=("result_samples_per_second",)),
        "has no numeric result for Offline",
    ),
    "accuracy line order": (
        _acc_txt('{"f1": 80.1, "exact_match": 70.2}\n{hash}\n'),
        "accuracy.txt: has no line the official checker can parse",
    ),
    "accuracy exponent": (
        _acc_txt('{"exact_match": 1e-05, "f1": 80.1}\n{hash}\n'),
        "accuracy.txt: has no line the official checker can parse",
    ),
    "accuracy numbers": (
        _acc_txt('{"exact_match": 1.2.3, "f1": 80.1}\n{hash}\n'),
        "accuracy.txt: the accuracy line matches the checker's pattern but its numbers do not parse",
    ),
    "no hash": (_acc_txt('{"exact_match": 70.2, "f1": 80.1}\n'), "accuracy.txt: has no hash=<sha256"),
    "bad hash": (_acc_txt('{"exact_match": 70.2, "f1": 80.1}\nhash=xyz\n'), "accuracy.txt: hash xyz is not a sha256"),
    "not a truncation": (_not_truncation, "accuracy/mlperf_log_accuracy.json: is neither the full log"),
    "acc loadgen error": (
        _acc_error,
        "accuracy/mlperf_log_detail.txt: LoadGen reported an error: SUT dropped a response",
    ),
    "acc mode": (
        lambda t: lr.mllog_edit(t.acc() / "mlperf_log_detail.txt", {"effective_test_mode": "PerformanceOnly"}),
        "accuracy/ needs an AccuracyOnly run",
    ),
    "acc extra file": (
        lambda t: (t.acc() / "predictions.json").write_text("{}"),
        "accuracy/predictions.json: is not allowed here",
    ),
    "no accuracy dir": (lambda t: shutil.rmtree(t.acc()), "Offline/accuracy: the accuracy folder is missing"),
    "unlabelled test mode": (
        _readme_unlabelled,
        "Offline/README.md: this is a test-mode result but README.md does not say",
    ),
}


@pytest.mark.parametrize("rule", sorted(MUTATIONS))
def test_each_broken_rule_is_caught_with_its_message(tree, rule):
    mutate, expected = MUTATIONS[rule]
    mutate(tree)
    errors = errors_of(tree.root)
    assert any(expected in e for e in errors), f"{rule}: {expected!r} not in {errors}"
    report = check_submission(tree.root)
    assert report.verdict == "invalid"


def test_untruncated_accuracy_log_is_caught(tree, tmp_path_factory):
    runs = lr.shared_runs(tmp_path_factory)
    _untruncated(tree, runs["Offline"] / "accuracy" / "mlperf_log_accuracy.json")
    errors = errors_of(tree.root)
    assert any("accuracy/mlperf_log_accuracy.json: is " in e and "truncate it" in e for e in errors), errors


def test_the_same_rule_broken_twice_gives_two_messages(tree):
    for s in ("Offline", "SingleStream"):
        (tree.scen(s) / "user.conf").unlink()
    errors = [e for e in errors_of(tree.root) if "user.conf is missing" in e]
    assert len(errors) == 2 and any("Offline" in e for e in errors) and any("SingleStream" in e for e in errors)


def test_closed_division_rules(tree):
    # The same tree moved to the closed division: the open division's allowances become errors.
    make_valid(tree)
    closed = tree.root / "closed"
    (tree.root / "open").rename(closed)
    tree.sub = closed / "Community"
    tree.system_json = tree.sub / "systems" / f"{tree.system}.json"
    tree.edit_system(division="closed")
    errors = errors_of(tree.root)
    assert any("model_mapping.json: model_mapping.json is only read in the open division" in e for e in errors)
    assert any("demo-int8: model 'demo-int8' is not allowed in the closed division" in e for e in errors)
    # With the official model name, the closed-only rules show.
    (tree.sub / "model_mapping.json").unlink()
    (tree.sub / "results" / tree.system / "demo-int8").rename(tree.sub / "results" / tree.system / "bert-99")
    server = tree.sub / "results" / tree.system / "bert-99" / "Server"
    shutil.copytree(tree.sub / "results" / tree.system / "bert-99" / "Offline", server)
    shutil.rmtree(tree.sub / "results" / tree.system / "bert-99" / "SingleStream")
    errors = errors_of(tree.root)
    assert any("bert-99/Server: bert is an edge benchmark: the closed division accepts only" in e for e in errors)
    assert any("bert-99/SingleStream: the closed division needs both SingleStream and Offline" in e for e in errors)
    assert any("bert-99/Offline/TEST01: the closed division needs the TEST01 compliance run" in e for e in errors)
    assert any("accuracy.txt: F1 0.000 is below the bert-99 target" in e for e in errors)


def test_closed_division_turns_short_runs_into_errors(tree):
    closed = tree.root / "closed"
    (tree.root / "open").rename(closed)
    sub = closed / "Community"
    (sub / "model_mapping.json").unlink()
    (sub / "results" / tree.system / "demo-int8").rename(sub / "results" / tree.system / "bert-99")
    errors = errors_of(tree.root)
    assert any("LoadGen result is INVALID" in e and "not allowed in the closed division" in e for e in errors)
    assert any("accuracy run covered 50 of 10833" in e and "closed division" in e for e in errors)


def test_seeds_are_checked_against_the_requested_round(golden):
    v60 = errors_of(golden, "v6.0")
    assert any("qsl_rng_seed is 2085463073848966840, the v6.0 checker expects 2465351861681999779" in e for e in v60)
    assert not any("rng_seed" in e for e in errors_of(golden, "v6.1"))


def test_v6_tree_checked_as_v5_names_the_layout(golden):
    errors = errors_of(golden, "v5.1")
    assert any("the code/ folder is missing" in e and "v6.x layout" in e for e in errors)


def test_bad_arguments(tmp_path):
    with pytest.raises(ConfigError, match="not a directory"):
        check_submission(tmp_path / "nope")
    with pytest.raises(ConfigError, match="not known"):
        check_submission(tmp_path, "v4.0")
    assert errors_of(tmp_path) == ["ERROR .: holds no division folder (open/ or closed/); pass the submission root"]


def test_hash_is_verified_against_the_full_logs_of_the_runs(tree, tmp_path_factory):
    runs = lr.shared_runs(tmp_path_factory)
    full = [runs[s] / "accuracy" / "mlperf_log_accuracy.json" for s in ("Offline", "SingleStream")]
    assert check_submission(tree.root, "v6.1", full).errors == []
    txt = tree.acc() / "accuracy.txt"
    txt.write_text(txt.read_text().rsplit("hash=", 1)[0] + "hash=" + "0" * 64 + "\n")
    errors = [str(f) for f in check_submission(tree.root, "v6.1", full).errors]
    assert any(
        "Offline/accuracy/accuracy.txt: hash 0000" in e and "is not the sha256 of the full log" in e for e in errors
    ), errors
    # without the right run the hash cannot be verified: said as a note, not hidden
    report = check_submission(tree.root, "v6.1", full[1:])
    assert any("could not be verified" in str(f) for f in report.findings if f.kind == "note")
