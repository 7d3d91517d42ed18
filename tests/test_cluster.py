"""`mlperf-bert cluster up|status|down`: the pieces without Docker (CPU sets, names, the start command, the
status text), then a real Ray cluster in containers on the Docker engine (docker-marked): 3 nodes for
--workers 2, no published port, an internal network, a client without the token refused, nothing left
behind by `cluster down`.

The docker tests talk to Ray only inside the Docker network they created (through `docker exec` in the
head container); nothing of the cluster is published on the host.
"""

from __future__ import annotations

import importlib.util
import os
from typing import Any

import pytest
from cli_support import invoke
from docker_support import docker_client, ensure_image

from orchestrator.backends import TARGETS
from orchestrator.containers import cluster
from orchestrator.errors import ConfigError

NAME = "pytest-cluster"


def test_worker_cpusets_give_each_worker_its_own_cpus() -> None:
    assert cluster.worker_cpusets(2, 1, cpus=[0, 1]) == ["0", "1"]
    assert cluster.worker_cpusets(2, 2, cpus=[0, 1, 2, 3]) == ["0,1", "2,3"]
    with pytest.raises(ConfigError, match="3 workers of 1 CPUs each need 3 CPUs and this machine offers 2"):
        cluster.worker_cpusets(3, 1, cpus=[0, 1])


def test_names_and_their_refusal() -> None:
    assert cluster.container_name("demo", "head") == "mlperf-bert-cluster-demo-head"
    assert cluster.container_name("demo", "worker", 1) == "mlperf-bert-cluster-demo-worker-1"
    assert cluster.ray_image(TARGETS["onnxruntime-cpu"]) == "mlperf-bert/onnxruntime-cpu-ray:latest"
    with pytest.raises(ConfigError, match="is not 1-40 letters"):
        cluster.check_name("bad name;")


def test_the_containers_are_hardened_and_carry_no_token() -> None:
    spec = cluster._spec(
        image="img", name="demo", role="worker", index=0, cpuset="1", cpus=1, head="10.0.0.2", data=None
    )
    kwargs = cluster.sdk_run_kwargs(spec)
    assert kwargs["cap_drop"] == ["ALL"] and kwargs["security_opt"] == ["no-new-privileges"]
    assert kwargs["cpuset_cpus"] == "1" and kwargs["network_mode"] == "mlperf-bert-cluster-demo"
    assert "ports" not in kwargs and "user" not in kwargs  # nothing published; the image's non-root user
    assert "RAY_AUTH_TOKEN" not in kwargs["environment"]  # added only when the container starts
    assert kwargs["environment"]["RAY_AUTH_MODE"] == "token"
    head = " ".join(cluster._start_command("head", 0, None))
    assert "--include-dashboard=false" in head and "--num-cpus=0" in head
    assert "--address=10.0.0.2:6379 --num-cpus=1" in " ".join(cluster._start_command("worker", 1, "10.0.0.2"))


def test_status_text_of_no_cluster() -> None:
    empty = cluster.ClusterStatus(name="x", network=None, internal=None, nodes=[], ray_nodes_alive=None, ray_cpus=None)
    assert cluster.format_status(empty) == "no cluster named x"


# ---- a real cluster --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def client() -> Any:
    c = docker_client(timeout=180)
    ensure_image(c, "onnxruntime-cpu")  # cluster up runs its nodes on it; built here on a fresh machine
    return c


@pytest.fixture(scope="module")
def running(client: Any) -> Any:
    # The nodes get this machine's Ray version, so Ray must be here (pip install 'mlperf-bert[ray]'); CI
    # installs it and sets MLPERF_BERT_REQUIRE_RAY=1, where a missing Ray fails instead of skipping.
    if importlib.util.find_spec("ray") is None and os.environ.get("MLPERF_BERT_REQUIRE_RAY") != "1":
        pytest.skip("Ray is not installed (pip install 'mlperf-bert[ray]')")
    cluster.cluster_down(client, NAME)
    result = invoke(["cluster", "up", "--workers", "2", "--name", NAME])
    assert result.exit_code == 0, result.output
    yield result.output
    cluster.cluster_down(client, NAME)


@pytest.mark.docker
def test_cluster_up_gives_three_nodes(client: Any, running: str) -> None:
    status = cluster.cluster_status(client, NAME)
    assert status.ray_nodes_alive == 3, cluster.format_status(status)
    assert status.ray_cpus == 2.0  # one per worker; the head offers none
    assert sorted(n.cpuset for n in status.nodes if n.role == "worker") == ["0", "1"]
    result = invoke(["cluster", "status", "--name", NAME])
    assert result.exit_code == 0 and "3 nodes alive" in result.stdout, result.output
    assert status.target == "onnxruntime-cpu" and f"cluster {NAME}: onnxruntime-cpu, network" in result.stdout


@pytest.mark.docker
def test_no_port_published_network_internal_hardened(client: Any, running: str) -> None:
    containers, networks = cluster.labelled(client, NAME)
    assert len(containers) == 3 and len(networks) == 1
    assert networks[0].attrs["Internal"] is True
    for c in containers:
        c.reload()
        assert not c.attrs["HostConfig"].get("PortBindings"), c.name
        assert not any(c.ports.values()), c.name
        assert c.attrs["HostConfig"]["CapDrop"] == ["ALL"]
        assert "no-new-privileges" in c.attrs["HostConfig"]["SecurityOpt"]
        assert c.attrs["Config"]["User"] == "mlperf"  # the image's non-root user
        assert list(c.attrs["NetworkSettings"]["Networks"]) == [cluster.network_name(NAME)]


@pytest.mark.docker
def test_a_client_without_the_token_is_refused(client: Any, running: str) -> None:
    head = client.containers.get(cluster.container_name(NAME, "head"))
    ok, _ = cluster.ray_probe(client, head)
    assert ok == 0
    for auth in ("wrong-token", "none"):  # another token; a client with token auth off
        refused, out = cluster.ray_probe(client, head, auth=auth)
        assert refused != 0 and "Failed to connect" in out, (auth, out)


@pytest.mark.docker
def test_token_not_in_the_image(client: Any, running: str) -> None:
    image = client.images.get(cluster.ray_image(TARGETS["onnxruntime-cpu"]))
    assert not any("RAY_AUTH_TOKEN" in e for e in image.attrs["Config"].get("Env") or [])


@pytest.mark.docker
def test_cluster_down_leaves_nothing_with_our_label(client: Any, running: str) -> None:
    result = invoke(["cluster", "down", "--name", NAME])
    assert result.exit_code == 0, result.output
    containers, networks = cluster.labelled(client, NAME)
    assert containers == [] and networks == []
    assert not cluster.token_path(NAME).exists()
