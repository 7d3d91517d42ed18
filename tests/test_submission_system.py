"""System description detection for GPU targets (no GPU here: nvidia-smi is a stand-in script that prints
what the real one prints for --query-gpu=name,memory.total --format=csv,noheader)."""

from __future__ import annotations

import socket
import stat

import pytest

from orchestrator.harness.spec import NodeInfo
from orchestrator.runs import FileRef, RunRecord
from orchestrator.submission.system import Overrides, describe_system, detect, slug


def _record(target: str, host: dict, nodes: list[NodeInfo] | None = None) -> RunRecord:
    return RunRecord(
        run_id="r",
        status="succeeded",
        execution_mode="test",
        test_mode=True,
        scenario="Offline",
        modes=["accuracy", "performance"],
        target=target,
        runner="local",
        config={},
        model=FileRef(path="/m.onnx"),
        dataset=FileRef(path="/d.json"),
        vocab=FileRef(path="/v.txt"),
        versions={"tensorrt": "10.3.0", "python": "3.11.7"},
        host=host,
        nodes=nodes or [],
    )


def test_gpus_from_the_run_record():
    host = {
        "hostname": "elsewhere",
        "cpu_model": "AMD EPYC 9654",
        "cpu_count": 192,
        "memory_gib": 1510.0,
        "gpus": [{"name": "NVIDIA H100 80GB HBM3", "memory": "81559 MiB"}] * 2,
    }
    found = detect(_record("tensorrt-cuda", host))
    assert found["accelerators_per_node"] == "2"
    assert found["accelerator_model_name"] == "NVIDIA H100 80GB HBM3"
    assert found["accelerator_memory_capacity"] == "81559 MiB"
    assert found["framework"] == "tensorrt 10.3.0 (TensorRT)"
    assert found["host_processor_core_count"] == "192" and "logical CPUs" in found["hw_notes"]


def test_gpus_from_nvidia_smi_on_the_machine_that_ran(tmp_path, monkeypatch):
    smi = tmp_path / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho 'NVIDIA H200, 143771 MiB'\n")
    smi.chmod(smi.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    record = _record("tensorrt-cuda", {"hostname": socket.gethostname(), "cpu_model": "Intel Xeon"})
    found = detect(record)
    assert (found["accelerators_per_node"], found["accelerator_model_name"], found["accelerator_memory_capacity"]) == (
        "1",
        "NVIDIA H200",
        "143771 MiB",
    )
    system = describe_system(record, "open", Overrides(submitter="TeamX"), "notes")
    assert system.id == "NVIDIA-H200-tensorrt-cuda"
    # what the run did not record is said to be unknown, never invented
    assert system.description["host_memory_capacity"] == "unspecified"
    assert system.description["host_processor_model_name"] == "Intel Xeon"


def test_gpu_target_without_gpu_information_says_unspecified():
    found = detect(_record("tensorrt-cuda", {"hostname": "elsewhere", "cpu_model": "x"}))
    assert found["accelerator_model_name"] == "unspecified NVIDIA GPU"


@pytest.mark.parametrize(
    ("text", "expected"),
    [("Intel(R) Xeon(R) Gold 6448Y", "Intel-R-Xeon-R-Gold-6448Y"), ("  ", "system"), ("a/b c", "a-b-c")],
)
def test_slug(text, expected):
    assert slug(text) == expected


def _ray_node(name: str, cpus: float, gpus: float = 0, actors: int = 1) -> NodeInfo:
    return NodeInfo(
        hostname=name,
        address=f"10.0.0.{len(name)}",
        cpus=cpus,
        accelerators=gpus,
        accelerator_model="H100" if gpus else None,
        cpu_model="AMD EPYC 9654",
        isa="avx512_bf16 avx512_vnni avx512f avx2",
        actors=actors,
    )


def test_a_ray_runs_system_lists_its_nodes():
    nodes = [_ray_node("w1", 64, gpus=2, actors=2), _ray_node("w2", 64, gpus=2, actors=2)]
    driver = {"hostname": "driver", "cpu_model": "Intel Xeon", "cpu_count": 8, "gpus": [{"name": "T4"}]}
    record = _record("tensorrt-cuda", driver, nodes)
    found = detect(record)
    assert found["number_of_nodes"] == "2" and found["host_processor_core_count"] == "64"
    assert found["accelerators_per_node"] == "2" and found["accelerator_model_name"] == "H100"
    assert found["host_processor_model_name"] == "AMD EPYC 9654"  # the nodes', not the driver's Xeon
    assert found["accelerator_memory_capacity"] == "unspecified"  # not the driver's T4
    assert found["hw_notes"].startswith(
        "Ray cluster of 2 nodes: w1 (10.0.0.2) 64 CPUs, 2 x H100, avx512_bf16 avx512_vnni avx512f avx2, 2 engine actors; w2"
    )
    assert "logical CPUs (8)" not in found["hw_notes"]
    system = describe_system(record, "open", Overrides(), "")
    assert system.description["number_of_nodes"] == "2"
    assert "host_networking" in system.undetected  # the nodes' network: the user must say


def test_unequal_ray_nodes_give_the_smallest_per_node_count_and_say_so():
    found = detect(_record("onnxruntime-cpu", {"hostname": "driver"}, [_ray_node("w1", 16), _ray_node("w2", 8)]))
    assert found["host_processor_core_count"] == "8" and "(the smallest)" in found["hw_notes"]
    assert found.get("accelerators_per_node") is None  # a CPU target: the defaults' 0 stands


def test_a_local_ray_run_keeps_this_machines_description_and_notes_the_node():
    here = socket.gethostname()
    plain = detect(_record("onnxruntime-cpu", {"hostname": here, "cpu_model": "x", "cpu_count": 2}))
    ray = detect(_record("onnxruntime-cpu", {"hostname": here, "cpu_model": "x", "cpu_count": 2}, [_ray_node(here, 2)]))
    assert ray["number_of_nodes"] == "1"
    assert ray["host_processor_core_count"] == plain["host_processor_core_count"]
    assert ray["hw_notes"].endswith(
        f"Ray cluster of 1 node: {here} (10.0.0.{len(here)}) 2 CPUs, avx512_bf16 avx512_vnni avx512f avx2, 1 engine actor"
    )
