"""An int8 accuracy check holds only for CPUs that multiply int8 the way the one it ran on does.

Without VNNI or AMX, x86 int8 kernels sum u8 x s8 pairs in int16 (vpmaddubsw, which can saturate): on a real
AVX2-only AMD EPYC (2026-12-07) the demo's OpenVINO NNCF int8 scored F1 80.013 on the full dev set where the
same model, recipe, calibration set and versions scored 80.212 on an AVX-512 VNNI EPYC, and onnxruntime's
dynamic int8 82.905 against 82.733 on the first 100 questions. Unit tests on fake records and checks; the CPU
of a run is its run.json `isa` (or its Ray nodes'), the host's is forced with MLPERF_BERT_CPU_FLAGS.
"""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path

import pytest
from test_accuracy_checks import _int8_run, a_check, make_record
from test_optimize_quantize import _check

from orchestrator.harness.cpu import FAKE_FLAGS_ENV, INT8_DOT_PRODUCTS, INT8_PAIR_SUMS, INT8_UNKNOWN, int8_kernels
from orchestrator.harness.spec import NodeInfo
from orchestrator.workflows.accuracy_checks import check_key, find_check, why_unkeyed, write_check
from orchestrator.workflows.accuracy_label import CHECK_FILE, UNCHECKED, accuracy_check_label, check_file
from orchestrator.workflows.int8 import INT8_FILE, AccuracyCheck, approved_int8, variant_dir

VNNI = "avx512_bf16 avx512_vnni avx512f avx2"
AMX = "amx_bf16 amx_int8 avx512_bf16 avx512_vnni avx512f avx2"
AVX2 = "avx2"


def test_the_class_of_a_recorded_isa() -> None:
    assert int8_kernels(VNNI) == int8_kernels(AMX) == INT8_DOT_PRODUCTS
    assert int8_kernels(AVX2) == int8_kernels("avx512f avx2") == INT8_PAIR_SUMS  # AVX-512F alone: no VNNI
    assert int8_kernels("unknown") == int8_kernels(None) == INT8_UNKNOWN


def _run(tmp_path: Path, isa: str, precision: str = "int8", **changes: object):  # type: ignore[no-untyped-def]
    return make_record(tmp_path, precision, engine_settings={"precision": precision, "isa": isa}, **changes)


def test_an_int8_check_on_vnni_does_not_label_a_run_on_avx2(tmp_path: Path) -> None:
    vnni, amx, avx2 = _run(tmp_path, VNNI), _run(tmp_path, AMX), _run(tmp_path, AVX2)
    key = check_key(vnni)
    assert key is not None and "int8_kernels" not in key  # the keys of every earlier check (all VNNI or AMX)
    assert check_key(amx) == key
    assert check_key(avx2) == {**key, "int8_kernels": INT8_PAIR_SUMS}
    write_check(a_check(vnni), tmp_path / "cache")
    assert accuracy_check_label(amx, tmp_path / "m.onnx").startswith("passed (")
    assert accuracy_check_label(avx2, tmp_path / "m.onnx") == UNCHECKED
    found = find_check(avx2)
    assert found is not None and found[1] is None  # its own record, not yet written
    write_check(a_check(avx2), tmp_path / "cache")
    assert accuracy_check_label(avx2, tmp_path / "m.onnx").startswith("passed (")


def test_bf16_keys_do_not_depend_on_the_int8_kernels(tmp_path: Path) -> None:
    assert check_key(_run(tmp_path, VNNI, "bf16")) == check_key(_run(tmp_path, AMX, "bf16"))


def test_ray_nodes_that_multiply_int8_differently_have_no_key(tmp_path: Path) -> None:
    def node(name: str, isa: str) -> NodeInfo:
        return NodeInfo(hostname=name, address=f"10.0.0.{len(name)}", cpus=2, isa=isa, actors=1)

    same = _run(tmp_path, AVX2, nodes=[node("a", VNNI), node("bb", AMX)])  # the driver's isa is not the nodes'
    assert check_key(same) == check_key(_run(tmp_path, VNNI))
    mixed = _run(tmp_path, VNNI, nodes=[node("a", VNNI), node("bb", AVX2)])
    assert check_key(mixed) is None and why_unkeyed(same) is None
    assert why_unkeyed(mixed) == (
        "ran on Ray nodes whose CPUs multiply int8 differently (some with VNNI or AMX, some without), which no one "
        "check covers; run int8 on nodes of one kind"
    )
    assert why_unkeyed(_run(tmp_path, VNNI, "as given")) == "did not say which precision it ran"


def _beside(directory: Path, name: str = CHECK_FILE, **fields: object) -> None:
    check = {"passed": True, "batch_size": 8, "int8_sha256": "ab" * 32, **fields}  # _int8_run's file
    (directory / name).write_text(json.dumps(check))


def test_an_int8_models_check_beside_it_holds_for_its_class(tmp_path: Path) -> None:
    model = tmp_path / "model.int8.onnx"

    def label(isa: str, reference_f1: float | None = None) -> str | None:
        return accuracy_check_label(_int8_run(tmp_path, settings={"isa": isa}, reference_f1=reference_f1), model)

    pair_sums = check_file(INT8_PAIR_SUMS)
    assert pair_sums == "accuracy_check.int16-pair-sums.json" and check_file() == CHECK_FILE
    _beside(tmp_path)  # written before the field existed: read as made with int8 dot products
    assert label(VNNI) == f"passed ({tmp_path / CHECK_FILE})" and label(AVX2) == UNCHECKED
    # Checked on a CPU of another class, a catalogue reference no longer vouches for this one either.
    assert label(AVX2, reference_f1=80.0) == UNCHECKED
    _beside(tmp_path, pair_sums, int8_kernels=INT8_PAIR_SUMS)  # each class its own record: both hold
    assert label(AVX2) == f"passed ({tmp_path / pair_sums})" and label(VNNI) == f"passed ({tmp_path / CHECK_FILE})"
    _beside(tmp_path, int8_kernels=INT8_PAIR_SUMS)  # a record under another class's name is not believed
    assert label(VNNI) == UNCHECKED
    (tmp_path / CHECK_FILE).unlink()
    (tmp_path / pair_sums).unlink()
    assert label(VNNI) == UNCHECKED and label(VNNI, reference_f1=80.0) is None  # no record: the catalogue's


def _pair_sums_check(int8: Path) -> AccuracyCheck:
    """A passing check of the file int8, recorded on a CPU with int16 pair sums."""
    from orchestrator.assets.hashing import cached_sha256

    return replace(_check(int8, True, cached_sha256(int8)), int8_kernels=INT8_PAIR_SUMS)


def _made_variant(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A pretend fp32 model, its cache and its full-range variant's directory holding a pretend int8 file."""
    fp32 = tmp_path / "tiny.onnx"
    fp32.write_bytes(b"pretend fp32 model")
    cache = tmp_path / "cache"
    directory = variant_dir(fp32, cache)
    directory.mkdir(parents=True)
    (directory / INT8_FILE).write_bytes(b"pretend int8 model")
    return fp32, cache, directory


def test_the_int8_gate_hands_out_a_variant_checked_on_this_class_of_cpu(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fp32, cache, directory = _made_variant(tmp_path)
    pair_sums = _pair_sums_check(directory / INT8_FILE)
    (directory / check_file(INT8_PAIR_SUMS)).write_text(json.dumps(asdict(pair_sums)))
    monkeypatch.setenv(FAKE_FLAGS_ENV, "avx2 fma")
    assert approved_int8(fp32, cache) == directory / INT8_FILE
    monkeypatch.setenv(FAKE_FLAGS_ENV, "avx2 avx512f avx512_vnni")
    assert approved_int8(fp32, cache) is None
    (directory / CHECK_FILE).write_text(json.dumps(asdict(pair_sums)))  # mislabelled: not this class's check
    assert approved_int8(fp32, cache) is None
    (directory / CHECK_FILE).write_text(json.dumps(asdict(replace(pair_sums, int8_kernels=INT8_DOT_PRODUCTS))))
    assert approved_int8(fp32, cache) == directory / INT8_FILE
    monkeypatch.setenv(FAKE_FLAGS_ENV, "avx2 fma")
    assert approved_int8(fp32, cache) == directory / INT8_FILE  # its own record was left alone


def test_two_classes_of_cpu_sharing_a_cache_keep_both_checks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """make_int8_variant on an AVX2 host, then a VNNI host, then the AVX2 host again: each class's verdict is
    recorded under its own name, so the third call reuses the first check instead of running it again. The
    accuracy runs are stand-ins (the real ones: test_optimize_quantize.py's slow test)."""
    import orchestrator.workflows.int8 as int8_module
    from orchestrator.assets.hashing import cached_sha256

    fp32, cache, directory = _made_variant(tmp_path)
    ran: list[str] = []

    def fake_check(fp32: Path, model: Path, *, batch_size: int, **kw: object) -> AccuracyCheck:
        ran.append(int8_module.host_int8_kernels())  # a local check runs on the host
        check = replace(_check(model, True, cached_sha256(model)), int8_kernels=ran[-1], batch_size=batch_size)
        return check

    monkeypatch.setattr(int8_module, "check_accuracy", fake_check)
    monkeypatch.setattr(int8_module, "quantize", lambda *a, **kw: pytest.fail("the int8 file exists"))

    def variant() -> AccuracyCheck | None:
        made = int8_module.make_int8_variant(fp32, cache_dir=cache, output_dir=tmp_path, samples=100, batch_size=2)
        return made.check

    for flags in ("avx2 fma", "avx2 avx512f avx512_vnni", "avx2 fma"):
        monkeypatch.setenv(FAKE_FLAGS_ENV, flags)
        assert variant() is not None
    assert ran == [INT8_PAIR_SUMS, INT8_DOT_PRODUCTS]
    assert {p.name for p in directory.glob("accuracy_check*.json")} == {
        CHECK_FILE,
        "accuracy_check.batch2.json",
        "accuracy_check.int16-pair-sums.json",
        "accuracy_check.batch2.int16-pair-sums.json",
    }


def test_a_recorded_variant_check_is_reused_only_on_its_class_of_cpu(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """make_int8_variant runs a check again where the recorded one was made on another class of CPU."""
    from orchestrator.workflows.int8 import _usable, check_site

    model = tmp_path / "model.int8.onnx"
    model.write_bytes(b"pretend int8 model")
    check = _pair_sums_check(model)
    monkeypatch.setenv(FAKE_FLAGS_ENV, "avx2 fma")
    assert _usable(check, model, check.features, check.batch_size, check_site())
    monkeypatch.setenv(FAKE_FLAGS_ENV, "avx2 avx512f avx512_vnni")
    assert not _usable(check, model, check.features, check.batch_size, check_site())


def test_a_recorded_variant_check_is_reused_only_where_the_runs_would_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """tune --int8 checks as its trials run: a record made by onnxruntime-cpu does not answer for openvino,
    nor one made with other numerics options; instances and cache folders do not count."""
    from orchestrator.config import RunConfig
    from orchestrator.workflows.int8 import _usable, check_site

    monkeypatch.setenv(FAKE_FLAGS_ENV, "avx2 fma")
    model = tmp_path / "model.int8.onnx"
    model.write_bytes(b"pretend int8 model")
    check = _pair_sums_check(model)

    def usable(**config: object) -> bool:
        return _usable(check, model, check.features, check.batch_size, check_site(RunConfig(**config)))

    assert usable(backend="onnxruntime") and usable(engine_options={"instances": "2", "optimized_cache_dir": "/c"})
    assert not usable(backend="openvino") and not usable(engine_options={"optimize": "none"})
    assert not usable(sut="reference")  # the reference SUT runs the graph unfused
    on_openvino = replace(check, target="openvino-cpu", engine_precision="fp32", cpu_bf16=False)
    openvino = check_site(RunConfig(backend="openvino"))
    assert _usable(on_openvino, model, check.features, check.batch_size, openvino)
    # Made where openvino's `auto` ran bf16 (AMX): the same int8 class elsewhere is no reason to reuse it here.
    on_amx = replace(on_openvino, int8_kernels=INT8_DOT_PRODUCTS, engine_precision="bf16", cpu_bf16=True)
    monkeypatch.setenv(FAKE_FLAGS_ENV, "avx2 avx512f avx512_vnni")  # VNNI, no bf16: the same int8 class as AMX
    assert not _usable(on_amx, model, check.features, check.batch_size, check_site(RunConfig(backend="openvino")))
    gpu = check_site(RunConfig(backend="onnxruntime", device="cuda"))
    assert gpu.target == "onnxruntime-cuda" and gpu.int8_kernels == INT8_DOT_PRODUCTS  # the GPU's, on any host


def test_the_check_site_of_a_ray_cluster_is_its_nodes_class(monkeypatch: pytest.MonkeyPatch) -> None:
    """A remote cluster's nodes run the engines: their class decides, and nodes of two classes are refused
    before any check runs. Ray started here (local) or a `cluster up` cluster runs on this host."""
    from orchestrator.config import RunConfig
    from orchestrator.errors import ConfigError
    from orchestrator.harness import ray_cluster
    from orchestrator.workflows.int8 import check_site, ray_nodes_cpu

    monkeypatch.setenv(FAKE_FLAGS_ENV, "avx2 fma")
    isas = [VNNI, AMX]
    ray_nodes_cpu.cache_clear()  # one probe per cluster and process

    def nodes(*_: object, **__: object) -> list[object]:
        return [type("Node", (), {"isa": isa})() for isa in isas]

    monkeypatch.setattr(ray_cluster, "connect", lambda address: False)
    monkeypatch.setattr(ray_cluster, "check_nodes", nodes)
    remote = RunConfig(runner="ray", ray_address="10.0.0.5:6379")
    assert check_site(remote).int8_kernels == INT8_DOT_PRODUCTS  # the nodes', not this AVX2 host's
    assert check_site(RunConfig(runner="ray", ray_address="local")).int8_kernels == INT8_PAIR_SUMS
    assert check_site(remote.model_copy(update={"backend": "openvino"})).cpu_bf16 is True  # both nodes have it
    isas = [VNNI, AVX2]
    ray_nodes_cpu.cache_clear()
    with pytest.raises(ConfigError, match=r"^the Ray nodes at 10.0.0.5:6379 multiply int8 differently \("):
        check_site(remote)
    ray_nodes_cpu.cache_clear()


def test_a_cpu_without_x86_flags_is_unknown(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ARM's /proc/cpuinfo has `Features`, not `flags`: no x86 rule may refuse its bf16 or class its int8."""
    from orchestrator.harness.cpu import Isa, cpu_flags

    monkeypatch.delenv(FAKE_FLAGS_ENV, raising=False)
    arm = tmp_path / "cpuinfo"
    arm.write_text("processor\t: 0\nFeatures\t: fp asimd bf16 i8mm sve\n")
    assert cpu_flags(arm) is None and not Isa.from_flags(cpu_flags(arm)).known
    assert int8_kernels(Isa.from_flags(cpu_flags(arm)).describe()) == INT8_UNKNOWN


def test_a_record_made_before_records_were_per_class_still_counts_for_its_class(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before 2026-12-07 a check on an AVX2 host was written as accuracy_check.json naming "int16 pair sums": it
    still labels and gates on that class (no full-dev re-check), and never on VNNI/AMX."""
    from orchestrator.workflows.int8 import read_check

    fp32, cache, directory = _made_variant(tmp_path)
    model = directory / INT8_FILE
    old = _pair_sums_check(model)
    (directory / CHECK_FILE).write_text(json.dumps(asdict(old)))
    monkeypatch.setenv(FAKE_FLAGS_ENV, "avx2 fma")
    assert read_check(directory) == old and approved_int8(fp32, cache) == model
    ran = {"max_batch": str(old.batch_size)}
    record = _int8_run(tmp_path, settings={"isa": AVX2, **ran}, sha256=old.int8_sha256)
    assert accuracy_check_label(record, model) == f"passed ({directory / CHECK_FILE})"
    monkeypatch.setenv(FAKE_FLAGS_ENV, "avx2 avx512f avx512_vnni")
    assert read_check(directory) is not None and approved_int8(fp32, cache) is None  # read, not believed
    record = _int8_run(tmp_path, settings={"isa": VNNI, **ran}, sha256=old.int8_sha256)
    assert accuracy_check_label(record, model) == UNCHECKED
