"""System description detection for GPU targets (no GPU here: nvidia-smi is a stand-in script that prints
what the real one prints for --query-gpu=name,memory.total --format=csv,noheader)."""

from __future__ import annotations

import socket
import stat

import pytest

from orchestrator.runs import FileRef, RunRecord
from orchestrator.submission.system import Overrides, describe_system, detect, slug


def _record(target: str, host: dict) -> RunRecord:
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
