"""The one engine options parser (orchestrator/harness/engines/options.py) and every engine's use of it:
a misspelt option or a bad value is one sentence naming the valid options or values, on every engine,
before any engine package is imported; the options the API adds for a target are accepted."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from typing import Literal

import pytest

from orchestrator.backends import TARGETS
from orchestrator.errors import ConfigError
from orchestrator.harness.engines.deepsparse import PROVIDER as DEEPSPARSE_PROVIDER
from orchestrator.harness.engines.deepsparse import DeepSparseEngine, DeepSparseOptions
from orchestrator.harness.engines.engine import (
    Engine,
    check_engine_options,
    unused_engine_options,
)
from orchestrator.harness.engines.onnxruntime import OnnxRuntimeEngine, OnnxRuntimeOptions
from orchestrator.harness.engines.openvino import OpenVinoEngine, OpenVinoOptions
from orchestrator.harness.engines.options import (
    PRECISIONS,
    EngineOptions,
    option,
    option_names,
    parse_engine_options,
)
from orchestrator.harness.engines.pytorch import PyTorchEngine, PyTorchOptions
from orchestrator.harness.engines.tensorrt import TensorRTEngine, TensorRTOptions
from orchestrator.harness.run import load_engine_class

# Each backend's engine and its options class; a new backend must be added here (checked below).
ENGINES: dict[str, tuple[type[Engine], type[EngineOptions], str]] = {
    "onnxruntime": (OnnxRuntimeEngine, OnnxRuntimeOptions, "CPUExecutionProvider"),
    "deepsparse": (DeepSparseEngine, DeepSparseOptions, DEEPSPARSE_PROVIDER),
    "pytorch": (PyTorchEngine, PyTorchOptions, "cpu"),
    "tensorrt": (TensorRTEngine, TensorRTOptions, "TensorRT"),
    "openvino": (OpenVinoEngine, OpenVinoOptions, "CPU"),
}


@dataclasses.dataclass(frozen=True)
class Sample(EngineOptions):
    mode: Literal["auto", "none"] = "auto"
    count: int | Literal["auto"] = option(1, minimum=1)
    level: int = option(3, minimum=0, maximum=5)
    limit: int | None = option(None, minimum=1)
    flag: bool = False
    path: str | None = None
    lengths: tuple[int, ...] = (128, 384)


def test_defaults_and_conversions() -> None:
    assert parse_engine_options(Sample, {}, "sample") == Sample()
    parsed = parse_engine_options(
        Sample,
        {
            "mode": " NONE ",
            "count": "auto",
            "level": "0",
            "limit": "7",
            "flag": "yes",
            "path": "/x",
            "lengths": "64, 384",
        },
        "sample",
    )
    assert parsed == Sample(mode="none", count="auto", level=0, limit=7, flag=True, path="/x", lengths=(64, 384))
    assert parse_engine_options(Sample, {"count": "4", "flag": "off"}, "sample") == Sample(count=4, flag=False)
    assert parse_engine_options(Sample, {"count": "", "path": ""}, "sample") == Sample()  # empty: the default
    # precision comes first: every engine accepts it (EngineOptions).
    assert option_names(Sample) == ("precision", "mode", "count", "level", "limit", "flag", "path", "lengths")


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            {"mdoe": "auto"},
            "unknown sample engine option 'mdoe'; the valid ones are precision, mode, count, level, limit, flag, path, lengths",
        ),
        ({"mode": "fast"}, "sample engine option mode='fast' is not one of auto, none; pass one of them"),
        (
            {"count": "0"},
            "sample engine option count='0' is not auto or a whole number of at least 1; pass e.g. 1 or auto",
        ),
        ({"count": "many"}, "count='many' is not auto or a whole number of at least 1"),
        ({"level": "9"}, "sample engine option level='9' is not a whole number from 0 to 5; pass e.g. 3"),
        ({"limit": "x"}, "limit='x' is not a whole number of at least 1; pass e.g. 1"),
        ({"flag": "maybe"}, "flag='maybe' is not a yes/no value; pass 1, 0, true, false, yes, no, on or off"),
        ({"lengths": "a,b"}, "lengths='a,b' is not a comma-separated list of whole numbers; pass e.g. 128,256,384"),
    ],
)
def test_bad_input_is_one_sentence(raw: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_engine_options(Sample, raw, "sample")
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_every_backend_has_a_strict_options_class() -> None:
    assert {t.backend for t in TARGETS.values()} == set(ENGINES)
    for target in TARGETS.values():
        engine, options, _ = ENGINES[target.backend]
        assert load_engine_class(target.engine_class) is engine
        assert issubclass(options, EngineOptions) and dataclasses.is_dataclass(options)


@pytest.mark.parametrize("key", sorted(TARGETS))
def test_options_the_api_adds_are_accepted(key: str) -> None:
    """The cache directory, Offline and reference options build_spec adds for a target parse."""
    target = TARGETS[key]
    _, options, _ = ENGINES[target.backend]
    added = dict(target.offline_options) | dict(target.reference_options)
    if target.cache_option:
        added[target.cache_option] = "/cache/engines/" + key
    parsed = parse_engine_options(options, added, target.backend)
    for name, value in added.items():
        assert name in option_names(options)
        assert str(getattr(parsed, name)) == value


@pytest.mark.parametrize("backend", sorted(ENGINES))
def test_a_misspelt_option_is_refused_by_every_engine(backend: str) -> None:
    """Before the model, the engine package or a GPU is looked at: a ConfigError naming the valid options."""
    engine, options, provider = ENGINES[backend]
    with pytest.raises(ConfigError) as caught:
        engine(
            "/no/such/model",
            device="cpu",
            batch_size=2,
            threads=None,
            execution_provider=provider,
            options={"optimise_typo": "1"},
        )
    valid = ", ".join(option_names(options))
    assert str(caught.value) == f"unknown {backend} engine option 'optimise_typo'; the valid ones are {valid}"


@pytest.mark.parametrize(
    ("backend", "raw", "message"),
    [
        ("onnxruntime", {"optimize": "fast"}, "onnxruntime engine option optimize='fast' is not one of auto, none"),
        ("deepsparse", {"num_streams": "two"}, "deepsparse engine option num_streams='two' is not a whole number"),
        ("pytorch", {"compile": "maybe"}, "pytorch engine option compile='maybe' is not a yes/no value"),
        (
            "tensorrt",
            {"precision": "fp8"},
            "tensorrt engine option precision='fp8' is not one of auto, fp32, fp16, bf16, int8",
        ),
        ("tensorrt", {"precision": "bf16"}, "the tensorrt engine runs precision auto, fp16, fp32, int8, not 'bf16'"),
        ("onnxruntime", {"precision": "bf16"}, "the onnxruntime engine runs precision auto, fp32, fp16, not 'bf16'"),
        ("deepsparse", {"precision": "fp16"}, "the deepsparse engine runs precision auto, not 'fp16'"),
        ("pytorch", {"precision": "int8"}, "the pytorch engine runs precision auto, fp32, fp16, bf16, not 'int8'"),
    ],
)
def test_a_bad_value_is_refused_by_every_engine(backend: str, raw: dict[str, str], message: str) -> None:
    engine, _, provider = ENGINES[backend]
    with pytest.raises(ConfigError, match=message):
        engine("/no/such/model", device="cpu", batch_size=2, threads=None, execution_provider=provider, options=raw)


def test_precision_is_declared_once_for_every_engine() -> None:
    """Every engine's options take the one `precision` field of EngineOptions; auto is always accepted."""
    for backend, (_, options, _) in ENGINES.items():
        assert "precision" not in options.__dict__.get("__annotations__", {}), backend
        assert parse_engine_options(options, {}, backend).precision == "auto"
        assert "auto" in options.supported_precisions
        assert set(options.supported_precisions) <= set(PRECISIONS)


@pytest.mark.parametrize("backend", sorted(ENGINES))
def test_the_host_check_parses_with_the_engines_own_options(backend: str) -> None:
    """check_engine_options (the host's, before any run directory) refuses what the engine refuses, with its
    sentence, and takes what it takes; importing the engine module for it imports no engine package."""
    engine, options, _ = ENGINES[backend]
    assert engine.options_class is options
    target = next(t for t in TARGETS.values() if t.backend == backend)
    with pytest.raises(ConfigError) as caught:
        check_engine_options(target.engine_class, {"optimise_typo": "1"})
    assert str(caught.value).startswith(f"unknown {backend} engine option 'optimise_typo'; the valid ones are")
    check_engine_options(target.engine_class, dict(target.offline_options) | dict(target.reference_options))


def test_the_host_check_imports_no_engine_package() -> None:
    code = (
        "import sys\n"
        "from orchestrator.backends import TARGETS\n"
        "from orchestrator.harness.engines.engine import check_engine_options\n"
        "for t in TARGETS.values():\n"
        "    check_engine_options(t.engine_class, {})\n"
        "bad = [m for m in ('onnxruntime', 'openvino', 'torch', 'tensorrt', 'deepsparse', 'nncf') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


@pytest.mark.parametrize(
    ("backend", "raw", "message"),
    [
        (
            "openvino",
            {"precision": "bf16", "int8_attention": "float"},
            "openvino engine option int8_attention=float does nothing here: it applies only to precision=int8, "
            "and this run's is bf16; drop it, or pass precision=int8",
        ),
        (
            "openvino",
            {"int8_float": "bf16"},  # precision=auto is bf16 or fp32, never int8
            "openvino engine option int8_float=bf16 does nothing here: it applies only to precision=int8, "
            "and precision=auto never quantizes (it is bf16 or fp32); drop it, or pass precision=int8",
        ),
        (
            "openvino",
            {"shapes": "buckets", "pad_to": "32"},
            "openvino engine option pad_to=32 does nothing here: shapes=buckets pads each batch to its bucket; "
            "drop it, or pass shapes=dynamic",
        ),
        (
            "openvino",
            {"buckets": "128,384"},
            "openvino engine option buckets=128,384 does nothing here: it applies only to shapes=buckets; "
            "drop it, or pass shapes=buckets",
        ),
        (
            "pytorch",
            {"compile_mode": "max-autotune"},
            "pytorch engine option compile_mode=max-autotune does nothing here: it is torch.compile's mode, and "
            "compile is off; pass compile=1 too, or drop it",
        ),
        (
            "onnxruntime",
            {"optimize": "none", "fusions": "transformers"},
            "onnxruntime engine option fusions=transformers does nothing here: it configures the fusions, and "
            "optimize=none applies none; drop it, or drop optimize=none",
        ),
    ],
)
def test_an_option_the_others_make_the_engine_ignore_is_one_sentence(
    backend: str, raw: dict[str, str], message: str
) -> None:
    """A setting that silently does nothing would read in run.json as if it had run; the engine and the host
    check refuse it with the same sentence, and the same options without it parse."""
    engine, options, provider = ENGINES[backend]
    with pytest.raises(ConfigError) as caught:
        engine("/no/such/model", device="cpu", batch_size=2, threads=None, execution_provider=provider, options=raw)
    assert str(caught.value) == message
    target = next(t for t in TARGETS.values() if t.backend == backend)
    with pytest.raises(ConfigError) as host:
        check_engine_options(target.engine_class, raw)
    assert str(host.value) == message
    unused = unused_engine_options(target.engine_class, raw)
    assert list(unused.values()) == [message]  # the one ignored option, with the sentence refusing it
    check_engine_options(target.engine_class, {k: v for k, v in raw.items() if k not in unused})


def test_a_default_or_an_empty_value_is_never_refused_as_ignored() -> None:
    """Only an option given is refused: the defaults of int8-only options at bf16 are no one's mistake."""
    parsed = parse_engine_options(OpenVinoOptions, {"precision": "bf16", "int8_float": " "}, "openvino")
    assert parsed.precision == "bf16" and "int8_float" in parsed.unused()
    int8 = {"precision": "int8", "int8_float": "bf16", "int8_attention": "float", "calibration_rows": "64"}
    assert parse_engine_options(OpenVinoOptions, int8, "openvino").int8_attention == "float"
    compiled = parse_engine_options(PyTorchOptions, {"compile": "1", "compile_mode": "reduce-overhead"}, "pytorch")
    assert compiled.compile_mode == "reduce-overhead"
