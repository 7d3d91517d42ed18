"""The Ray runner: the harness as the driver of engine actors, with real Ray on loopback.

Unit tests (no Ray needed) check the options and the node checks' sentences. The slow tests start a real
local Ray instance (every service on 127.0.0.1, two single-CPU actors) and run the real harness with the
embedded demo model: the same F1 and answers as the local runner; Server and SingleStream answer every
sample once and say their latency includes the Ray hop; an actor killed in flight leaves the accuracy log
equal to an uninterrupted run's; every actor lost fails the run in one sentence; SIGTERM marks the run
interrupted and ends the job; `submission run --runner ray` makes a normal submission whose system lists
the node.
Ray is optional (pip install 'mlperf-bert[ray]'): without it these skip with the reason, unless
MLPERF_BERT_REQUIRE_RAY=1 (CI), where a missing Ray fails them.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from cli_support import invoke
from harness_support import REPO, harness_env, make_spec, write_features
from ray_faults import KILLED_FILE
from test_tune import int8_check_runs

from orchestrator.backends import get_target
from orchestrator.config import RunConfig
from orchestrator.errors import ConfigError, PreflightError
from orchestrator.harness import ray_cluster
from orchestrator.harness.cpu import FAKE_FLAGS_ENV, detect_isa
from orchestrator.harness.engines.ray_pool import merged_settings
from orchestrator.harness.spec import HarnessResult
from orchestrator.runs import RunRecord
from orchestrator.workflows.calibration import check_precision

os.environ.update(ray_cluster.LOOPBACK_ENV)  # before anything here imports ray: Ray on 127.0.0.1 only
HAVE_RAY = importlib.util.find_spec("ray") is not None
REQUIRE_RAY = os.environ.get("MLPERF_BERT_REQUIRE_RAY") == "1"
needs_ray = pytest.mark.skipif(
    not HAVE_RAY and not REQUIRE_RAY, reason="Ray is not installed (pip install 'mlperf-bert[ray]')"
)


# ---- options and checks (no Ray) -------------------------------------------------------------------
def test_ray_options_need_the_ray_runner() -> None:
    with pytest.raises(ValueError, match="add --runner ray"):
        RunConfig(runner="local", ray_actors=2)  # type: ignore[arg-type]
    assert RunConfig(runner="ray", ray_address="10.0.0.5:6379", ray_actors=2).ray_actors == 2  # type: ignore[arg-type]


@pytest.mark.parametrize("address", ["10.0.0.5", "host:0", "host:99999", ":6379", "ray://x"])
def test_a_bad_ray_address_is_one_sentence(address: str) -> None:
    res = invoke(["run", "--runner", "ray", "--ray-address", address, "--dry-run"])
    assert res.exit_code == ConfigError.exit_code
    assert "HOST:PORT" in res.stderr and res.stderr.count("\n") == 1


def _node(**kw: Any) -> ray_cluster.NodeReport:
    values: dict[str, Any] = {
        "node_id": "n1",
        "address": "10.0.0.2",
        "hostname": "w1",
        "python": "3.11.7",
        "ray": "2.60.0",
        "cpus": 4.0,
        "gpus": 0.0,
    }
    values.update(kw)
    return ray_cluster.NodeReport(**values)


def test_nodes_on_other_versions_or_without_the_backend_are_refused() -> None:
    ray_cluster.check_reports([_node(python="3.11.2")], python="3.11.7", ray_version="2.60.0")  # same minor: fine
    with pytest.raises(PreflightError, match="w1 .* runs Python 3.10.4 and Ray 2.60.0, not Python 3.11"):
        ray_cluster.check_reports([_node(python="3.10.4")], python="3.11.7", ray_version="2.60.0")
    with pytest.raises(PreflightError, match="Ray 2.59.0, not Python 3.11 and Ray 2.60.0"):
        ray_cluster.check_reports([_node(ray="2.59.0")], python="3.11.7", ray_version="2.60.0")
    with pytest.raises(PreflightError, match="lacks onnxruntime"):
        ray_cluster.check_reports([_node(missing=("onnxruntime",))], python="3.11.7", ray_version="2.60.0")
    assert ray_cluster.describe_nodes([_node(), _node(hostname="w2", gpus=1.0)]).startswith("2 nodes: w1 (10.0.0.2)")


def test_settings_that_differ_between_actors_name_each_value_with_its_hosts() -> None:
    """On a cluster of unlike CPUs precision=auto runs bf16 on one node and fp32 on another: run.json says so."""
    infos = [
        {"hostname": "amx1", "settings": {"precision": "bf16", "instances": "1"}},
        {"hostname": "epyc", "settings": {"precision": "fp32", "instances": "1"}},
        {"hostname": "amx2", "settings": {"precision": "bf16", "instances": "1", "pinned": "0-3"}},
    ]
    merged = merged_settings(infos)
    assert merged["instances"] == "1"
    assert merged["precision"] == "bf16 (on amx1, amx2) | fp32 (on epyc)"
    assert merged["pinned"] == "(not set) (on amx1, epyc) | 0-3 (on amx2)"
    assert merged_settings(infos[:1]) == infos[0]["settings"]


def test_bf16_on_a_ray_cluster_is_left_to_its_nodes(monkeypatch: pytest.MonkeyPatch) -> None:
    """The driver's CPU decides nothing for a remote cluster's nodes; for Ray on this host it does."""
    monkeypatch.setenv(FAKE_FLAGS_ENV, "avx2 fma")
    target = get_target("openvino", "cpu")
    options = {"engine_options": {"precision": "bf16"}}
    check_precision(RunConfig(runner="ray", ray_address="10.0.0.5:6379", **options), target)  # type: ignore[arg-type]
    for local in (RunConfig(runner="ray", **options), RunConfig(runner="local", **options)):  # type: ignore[arg-type]
        with pytest.raises(PreflightError, match="precision=bf16 needs a CPU with native bf16"):
            check_precision(local, target)


# ---- real Ray on loopback ------------------------------------------------------------------------------
def _invoke(tmp_path: Path, cache: Path, *extra: str, mode: str = "accuracy", count: int = 200) -> Any:
    res = invoke(
        [
            "run",
            "--mode",
            mode,
            "--test-query-count",
            str(count),
            "--output-dir",
            tmp_path / "runs",
            "--cache-dir",
            cache,
            "--no-progress",
            *extra,
        ]
    )
    assert res.exit_code == 0, res.output[-3000:]
    return res


def _run(tmp_path: Path, cache: Path, *extra: str, mode: str = "accuracy", count: int = 200) -> RunRecord:
    res = _invoke(tmp_path, cache, "--json", *extra, mode=mode, count=count)
    return RunRecord.load(Path(json.loads(res.stdout)["run_dir"]))


def _answers(run_dir: Path) -> dict[int, str]:
    entries = json.loads((run_dir / "accuracy" / "mlperf_log_accuracy.json").read_text())
    answers = {e["qsl_idx"]: e["data"] for e in entries}
    assert len(answers) == len(entries), "a sample was answered twice"
    return answers


@pytest.mark.slow
@needs_ray
def test_two_ray_actors_give_the_local_runners_f1(tmp_path: Path, session_cache: Path) -> None:
    local = _run(tmp_path, session_cache, "--runner", "local")
    ray = _run(tmp_path, session_cache, "--runner", "ray", "--ray-address", "local", "--ray-actors", "2")
    assert ray.runner == "ray" and ray.status == "succeeded"
    assert ray.results["accuracy"]["f1"] == local.results["accuracy"]["f1"]
    assert ray.results["accuracy"]["questions_scored"] == 200
    # Every sample answered once, with the very logits the local runner gave.
    assert _answers(_dir(tmp_path, ray)) == _answers(_dir(tmp_path, local))
    settings = ray.engine_settings
    assert settings["ray_actors"] == "2" and settings["ray_lost_actors"] == "none"
    assert "127.0.0.1" in settings["ray_nodes"] and "object store" in settings["ray_data"]
    assert "hop" in settings["latency"] and float(settings["ray_hop_ms_per_batch"]) > 0
    assert ray.versions["ray"]
    # The node's own instruction set (a cluster's nodes may differ from the driver's); here it is this machine.
    assert [(n.actors, n.isa) for n in ray.nodes] == [(2, detect_isa().describe())]


RAY_LOCAL_2 = ("--runner", "ray", "--ray-address", "local", "--ray-actors", "2")


@pytest.mark.slow
@needs_ray
def test_server_on_ray_answers_every_sample_once_and_says_its_latency_includes_the_hop(
    tmp_path: Path, session_cache: Path
) -> None:
    res = _invoke(
        tmp_path, session_cache, *RAY_LOCAL_2, "--scenario", "server", "--target-qps", "20", mode="both", count=24
    )
    human = res.stdout
    assert "latency: every batch crosses the Ray hop" in human and "ms per batch beyond the engine's compute" in human
    (run_dir,) = list((tmp_path / "runs").iterdir())
    record = RunRecord.load(run_dir)
    assert record.status == "succeeded" and record.runner == "ray" and record.scenario == "Server"
    assert sorted(_answers(run_dir)) == list(range(24))  # every sample answered, once
    assert record.results["accuracy"]["questions_scored"] == 24
    settings = record.engine_settings
    assert "Server" in settings["latency"] and "hop" in settings["latency"]
    assert float(settings["ray_hop_ms_per_batch"]) > 0 and settings["ray_actors"] == "2"
    assert (run_dir / "performance" / "run_1" / "mlperf_log_summary.txt").is_file()


@pytest.mark.slow
@needs_ray
def test_singlestream_on_ray_answers_every_sample_once_and_says_its_latency_includes_the_hop(
    tmp_path: Path, session_cache: Path
) -> None:
    res = _invoke(tmp_path, session_cache, *RAY_LOCAL_2, "--scenario", "singlestream", "--json", mode="both", count=16)
    data = json.loads(res.stdout)
    assert data["status"] == "succeeded" and data["scenario"] == "SingleStream"
    assert "SingleStream" in data["latency_note"] and "Ray hop" in data["latency_note"]
    run_dir = Path(data["run_dir"])
    assert sorted(_answers(run_dir)) == list(range(16))
    assert data["results"]["accuracy"]["questions_scored"] == 16
    assert float(data["engine_settings"]["ray_hop_ms_per_batch"]) > 0
    # SingleStream sends one sample per batch: the pool counted the LoadGen runs' batches, not the warm-ups'.
    issued = 16 + data["results"]["performance"]["samples_issued"]  # the accuracy pass's 16, the performance pass's
    assert int(data["engine_settings"]["ray_batches"]) == issued


@pytest.mark.slow
@needs_ray
def test_submission_run_on_ray_is_a_normal_submission_whose_system_lists_the_nodes(
    tmp_path: Path, session_cache: Path
) -> None:
    out = tmp_path / "subs"
    res = invoke(
        [
            "submission",
            "run",
            *RAY_LOCAL_2,
            "--test-query-count",
            "64",  # the fewest SingleStream queries the checker's early-stopping estimate takes
            "--output-dir",
            str(tmp_path / "runs"),
            "--cache-dir",
            str(session_cache),
            "--submission-dir",
            str(out),
            "--json",
        ]
    )
    assert res.exit_code == 0, res.output[-3000:]
    data = json.loads(res.output[res.output.index("{") :])
    assert data["verdict"] == "test-mode"  # the checker's verdict as it is: a test-mode submission, labelled
    summary = json.loads((out / "mlperf_submission_short_summary.json").read_text())
    assert sorted(r["scenario"] for r in summary["results"]) == ["Offline", "SingleStream"]
    # Each scenario's run is a normal run directory, made by the Ray runner, that recorded its node.
    records = [RunRecord.load(d) for d in sorted((tmp_path / "runs").iterdir())]
    assert sorted(r.scenario for r in records) == ["Offline", "SingleStream"]
    for record in records:
        assert record.runner == "ray" and record.status == "succeeded" and record.test_mode
        (node,) = record.nodes
        assert node.address == "127.0.0.1" and node.cpus >= 2 and node.actors == 2
    (system_file,) = list((out / "mlperf_submission_short").glob("*/*/systems/*.json"))
    system = json.loads(system_file.read_text())
    assert system["number_of_nodes"] == "1" and system["accelerators_per_node"] == "0"
    assert "Ray cluster of 1 node: " in system["hw_notes"] and "2 engine actors" in system["hw_notes"]


def _dir(tmp_path: Path, record: RunRecord) -> Path:
    return tmp_path / "runs" / record.run_id


def _harness_run(tmp_path: Path, name: str, count: int, kill: tuple[str, int] | None = None, **spec: Any) -> Path:
    """A harness run of `count` accuracy samples in a process of its own, as the runners start it (LoadGen
    applies mlperf.conf, its seeds and so the sample order, once per process: see tests/ray_faults.py);
    `kill` = (victims, after) kills actors mid-run."""
    features = tmp_path / "features.npz"
    if not features.exists():
        write_features(features)
    run_dir = tmp_path / name
    # One intra-op thread, as each single-CPU actor runs: the same logits bit for bit.
    make_spec(run_dir, features, modes=["accuracy"], test_query_count=count, batch_size=2, threads=1, **spec)
    if kill is None:
        cmd = [sys.executable, "-m", "orchestrator.harness", str(run_dir)]
    else:
        cmd = [sys.executable, "-m", "ray_faults", str(run_dir), kill[0], str(kill[1])]
    proc = subprocess.run(cmd, cwd=REPO, env=harness_env(), capture_output=True, text=True, timeout=240, check=False)
    assert HarnessResult.read(run_dir) is not None, proc.stderr[-3000:]
    return run_dir


def _result(run_dir: Path) -> HarnessResult:
    result = HarnessResult.read(run_dir)
    assert result is not None
    return result


@pytest.mark.slow
@needs_ray
def test_an_actor_killed_mid_run_costs_no_sample(tmp_path: Path) -> None:
    # The warm-up is call 1: actor 1 is killed with its first measured batch in flight (a later one might
    # never come on a loaded machine, where actor 0 can drain most of the 32 batches).
    faulty_dir = _harness_run(
        tmp_path, "faulty", 64, kill=("1", 2), ray={"actors": 2, "node_cache_dir": str(tmp_path / "nc1")}
    )
    plain_dir = _harness_run(tmp_path, "plain", 64, ray={"actors": 2, "node_cache_dir": str(tmp_path / "nc0")})
    faulty, plain = _result(faulty_dir), _result(plain_dir)
    assert plain.status == "succeeded" and plain.engine_settings["ray_lost_actors"] == "none"
    assert json.loads((faulty_dir / KILLED_FILE).read_text()) == [1]
    assert faulty.status == "succeeded", faulty.error
    lost = faulty.engine_settings["ray_lost_actors"]
    assert lost.startswith("actor 1 (") and "node " in lost and "ActorDiedError" in lost
    # The accuracy log equals the uninterrupted run's: every qsl_idx once, with the same logits bit for bit
    # (the batch in flight ran again as it was composed, on an actor of the same threads).
    got, want = _answers(faulty_dir), _answers(plain_dir)  # _answers fails on a sample answered twice
    assert sorted(got) == sorted(want) == list(range(64))
    changed = sorted(i for i in want if got[i] != want[i])
    assert not changed, f"{len(changed)} of 64 answers differ from the uninterrupted run: qsl_idx {changed[:10]}"


@pytest.mark.slow
@needs_ray
def test_every_actor_lost_fails_the_run_in_one_sentence(tmp_path: Path) -> None:
    run_dir = _harness_run(
        tmp_path, "doomed", 64, kill=("0,1", 3), ray={"actors": 2, "node_cache_dir": str(tmp_path / "nc")}
    )
    result = _result(run_dir)
    assert result.status == "failed"
    assert result.error is not None and "all 2 Ray actors were lost" in result.error
    assert result.error.count(". ") == 0  # one sentence


@pytest.mark.slow
@needs_ray
def test_sigterm_marks_the_run_interrupted_and_ends_the_ray_job(tmp_path: Path, session_cache: Path) -> None:
    cmd = [
        sys.executable,
        "-m",
        "orchestrator.cli",
        "run",
        "--runner",
        "ray",
        "--ray-actors",
        "2",
        "--mode",
        "accuracy",
        "--test-query-count",
        "10833",
        "--no-progress",
        "--output-dir",
        str(tmp_path / "runs"),
        "--cache-dir",
        str(session_cache),
    ]
    before = set(_ray_processes())
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    deadline = time.monotonic() + 180
    seen = []
    for line in proc.stderr:  # the harness's output, streamed by the runner
        seen.append(line)
        if "QSL samples" in line or time.monotonic() > deadline:
            break
    assert any("QSL samples" in s for s in seen), "".join(seen)[-2000:]
    ours = set(_ray_processes()) - before  # this run's local instance: raylet, GCS, agents, actors
    assert ours
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    err = proc.stderr.read()
    assert proc.wait(timeout=90) == 143, err[-2000:]  # 128 + SIGTERM, like every runner
    (run_dir,) = list((tmp_path / "runs").iterdir())
    record = RunRecord.load(run_dir)
    assert record.status == "interrupted" and record.runner == "ray" and "SIGTERM" in (record.error or "")
    assert json.loads((run_dir / "harness_result.json").read_text())["status"] == "interrupted"
    # The Ray job ended with its driver: none of the local instance's processes outlived the run.
    time.sleep(3.0)
    assert not ours & set(_ray_processes()), "Ray processes of the run outlived it"


def _ray_processes() -> list[int]:
    """Pids of Ray's processes on this machine (their command lines name a Ray session or `ray::`)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if "/ray/session_" in cmdline or cmdline.startswith("ray::"):
            pids.append(int(proc.name))
    return pids


def test_an_unreachable_head_is_one_sentence_at_once() -> None:
    """Port 1 on loopback accepts nothing: refused in seconds, not after ray.init's minutes of retries."""
    from orchestrator.errors import PreflightError
    from orchestrator.harness import ray_cluster

    started = time.monotonic()
    with pytest.raises(PreflightError, match=r"cannot reach the Ray cluster at 127\.0\.0\.1:1 .*start its head"):
        ray_cluster.check_reachable("127.0.0.1:1")
    assert time.monotonic() - started < ray_cluster.REACH_TIMEOUT_S + 1
    ray_cluster.check_reachable("auto")  # left to Ray


@pytest.mark.slow
@needs_ray
def test_real_int8_tune_on_ray_checks_on_ray(tmp_path: Path, shared_assets: Path) -> None:
    """The trials run on Ray actors, so does the check (on a cluster, its nodes' CPUs decide the int8 numbers)."""
    fp32 = shared_assets / "models" / "demo-minilm-l6-squad.fp32.onnx"
    if not fp32.is_file():
        pytest.skip(f"{fp32} is not present")
    runs = int8_check_runs(tmp_path, fp32, "--runner", "ray", "--ray-address", "local", "--ray-actors", "1")
    assert {r.runner for r in runs} == {"ray"} and all(r.nodes for r in runs)


@pytest.mark.slow
@needs_ray
def test_the_node_probe_reads_the_flags_a_node_is_forced_to(monkeypatch: pytest.MonkeyPatch) -> None:
    """A node's forced CPU flags (MLPERF_BERT_CPU_FLAGS where its workers start) are what its probe reports, as
    its engines see them: tune --int8 decides a cluster's class of CPU from the probe (workflows/int8.py)."""
    import ray

    forced = "avx2 avx512f avx512_vnni amx_int8 amx_bf16 avx512_bf16 fma"
    monkeypatch.setenv(FAKE_FLAGS_ENV, forced)  # the workers of the Ray this test starts inherit it
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        nodes = ray_cluster.check_nodes()
    finally:
        ray.shutdown()
    assert [n.isa for n in nodes] == [detect_isa().describe()]  # detect_isa reads the same variable
    assert "amx_int8" in (nodes[0].isa or "") and "fma" not in (nodes[0].isa or "")  # only the AMX/AVX family
