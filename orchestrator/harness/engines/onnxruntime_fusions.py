"""Graph optimizations for BERT, applied once per (model sha256, onnxruntime version, options) and cached.

Two recipes (`OptimizeOptions.fusions`), because the best one depends on the execution provider:

- "transformers": the `onnxruntime.transformers` optimizer rewrites BERT's sub-graphs into its fused
  kernels (`Attention`, `EmbedLayerNormalization`, `SkipLayerNormalization`, `BiasGelu`), several-fold
  fewer kernels per layer. This is what GPU providers want: their fused attention kernels are the fast path.
- "onnxruntime": ONNX Runtime's own transformer fusions for the provider (on CPU: `LayerNormalization`,
  `BiasGelu`, `FusedMatMul` for Q.K^T with its scale and transpose, `Gelu`), applied by an
  ORT_ENABLE_EXTENDED session and saved. On CPU this graph is faster than the "transformers" one: measured
  on this project's 2-core AVX-512 machine, one thread, the same length-sorted batches, the fused CPU
  `Attention` and `SkipLayerNormalization` kernels took 33.3 s of kernel time where ONNX Runtime's own graph
  took 28.4 s (demo MiniLM, 512 samples), and BERT-large's shapes ran 7% faster (benchmarks/RESULTS.md).

The engine picks "onnxruntime" for the CPU provider and "transformers" for the others unless told
(engine option `fusions`). Saving the result spares every later session the rewrite (seconds; minutes of
memory traffic for BERT-large), so it is kept under `cache_dir`:

    <cache_dir>/<model stem>-<key>/optimize.json   what was done: source sha256, versions, options, fusions
    <cache_dir>/<model stem>-<key>/model.onnx      the optimized graph (absent when nothing was fused)

An entry is built in a private temporary directory and renamed into place, so readers never see half a
model and two processes building the same entry at once both end up using one complete copy.
A model that is already quantized, or in which nothing fuses, is recorded as "unchanged" and used as is
(the session still applies ONNX Runtime's optimizations when it loads it).
Only the harness imports this module (it imports onnxruntime).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.errors import ModelError, first_line

log = logging.getLogger(__name__)

# Bump when what this module does to a graph changes: old cache entries are then never reused.
RECIPE_VERSION = 2
RECORD_FILE = "optimize.json"
MODEL_FILE = "model.onnx"
# Protobuf cannot hold more than 2 GiB in one message: larger graphs keep their weights beside them.
EXTERNAL_DATA_ABOVE = 1_800_000_000
# Operators that mark a model as already quantized: the fusions do not apply to them.
QUANTIZED_OPS = frozenset(
    {
        "DynamicQuantizeLinear",
        "MatMulInteger",
        "QLinearMatMul",
        "QuantizeLinear",
        "DequantizeLinear",
        "QAttention",
        "DynamicQuantizeMatMul",
        "MatMulIntegerToFloat",
        "QGemm",
        "MatMulNBits",
    }
)
# The fused operators worth counting in the record.
FUSED_OPS = (
    "Attention",
    "MultiHeadAttention",
    "EmbedLayerNormalization",
    "SkipLayerNormalization",
    "LayerNormalization",
    "BiasGelu",
    "Gelu",
    "FastGelu",
    "FusedMatMul",
)
FUSIONS = ("onnxruntime", "transformers")
CPU = "CPUExecutionProvider"


def default_fusions(provider: str) -> str:
    """The recipe that is fastest for a provider: ONNX Runtime's own CPU fusions on the CPU (measured, see
    the module docstring), the transformers optimizer's fused kernels on GPUs."""
    return "onnxruntime" if provider == CPU else "transformers"


@dataclass(frozen=True)
class OptimizeOptions:
    """What the optimizer is asked to do; part of the cache key. 0 means: detect from the graph.
    `provider` is the execution provider the "onnxruntime" recipe optimizes for (its saved graph holds that
    provider's fused kernels)."""

    fusions: str = "transformers"
    model_type: str = "bert"
    num_heads: int = 0
    hidden_size: int = 0
    provider: str = CPU
    # Convert the fused graph's weights and activations to float16 (inputs and outputs keep their types):
    # the "transformers" recipe only, for GPU providers (precision=fp16).
    float16: bool = False


@dataclass
class OptimizedModel:
    """The model to load: the optimized copy, or the source itself when nothing was fused."""

    path: Path
    source: Path
    source_sha256: str
    changed: bool
    reason: str  # why unchanged, or "fused"
    fused: dict[str, int] = field(default_factory=dict)
    fusions: str = ""  # the recipe that made `path` ("" when nothing was done)
    float16: bool = False  # `path` holds float16 weights (precision=fp16)
    cache_hit: bool = False
    seconds: float = 0.0  # time spent optimizing (0 on a cache hit)


# ---- hashing, with a small persistent memo (a BERT-large file takes ~1 s to hash) ----------------------
def file_sha256(path: Path, memo_dir: Path | None = None) -> str:
    """sha256 of a file, remembered in memo_dir by (real path, size, mtime) when a memo dir is given."""
    real = path.resolve()
    st = real.stat()
    memo: Path | None = None
    if memo_dir is not None:
        memo = memo_dir / (hashlib.sha1(str(real).encode()).hexdigest()[:20] + ".json")
        try:
            hit = json.loads(memo.read_text())
            if (hit.get("size"), hit.get("mtime_ns"), hit.get("path")) == (st.st_size, st.st_mtime_ns, str(real)):
                return str(hit["sha256"])
        except (OSError, ValueError, KeyError):
            pass
    with open(real, "rb") as f:
        digest = hashlib.file_digest(f, "sha256").hexdigest()
    if memo is not None:
        try:
            _atomic_write_text(
                memo, json.dumps({"path": str(real), "size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": digest})
            )
        except OSError as exc:  # a read-only cache only costs the re-hash next time
            log.debug("cannot write the sha256 memo %s: %s", memo, exc)
    return digest


def _atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def cache_key(source_sha256: str, ort_version: str, options: OptimizeOptions) -> str:
    described = asdict(options)
    if not options.float16:
        del described["float16"]  # fp32 entries keep the keys they had before float16 existed
    payload = json.dumps(
        {"sha256": source_sha256, "onnxruntime": ort_version, "recipe": RECIPE_VERSION, "options": described},
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:24]


# ---- graph facts ---------------------------------------------------------------------------------------
def quantized_ops(model: Any) -> list[str]:
    """The quantized operators a model (onnx.ModelProto) contains, if any."""
    return sorted({n.op_type for n in model.graph.node if n.op_type in QUANTIZED_OPS})


def detect_attention_shape(model: Any) -> tuple[int, int]:
    """(num_heads, hidden_size) read from a BERT graph, (0, 0) where they cannot be read.

    hidden_size: the width of the word-embedding table (the Gather on input_ids). num_heads: hidden_size
    over the head size, the last constant of the [batch, seq, heads, head_size] Reshapes that split
    Q/K/V into heads (exports write heads as -1 or as a number; the head size is always a constant).
    ONNX Runtime's own detection fails on recent PyTorch exports, which build those shapes with Concat.
    """
    from onnx import numpy_helper

    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    consts: dict[str, list[int]] = {}
    for n in graph.node:
        if n.op_type == "Constant":
            for a in n.attribute:
                if a.name == "value" and a.t.data_type in (6, 7):  # int32 / int64
                    consts[n.output[0]] = [int(v) for v in numpy_helper.to_array(a.t).reshape(-1)]
    for name, t in inits.items():
        if t.data_type in (6, 7) and len(t.dims) <= 1 and (not t.dims or t.dims[0] <= 8):
            consts[name] = [int(v) for v in numpy_helper.to_array(t).reshape(-1)]

    hidden = 0
    for n in graph.node:
        if n.op_type == "Gather" and len(n.input) == 2 and n.input[1] == "input_ids" and n.input[0] in inits:
            dims = list(inits[n.input[0]].dims)
            if len(dims) == 2:
                hidden = int(dims[1])
                break
    producers = {o: n for n in graph.node for o in n.output}
    consumers: dict[str, list[Any]] = {}
    for n in graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)

    head_sizes: Counter[int] = Counter()
    for n in graph.node:
        if n.op_type != "Reshape" or len(n.input) < 2:
            continue
        if not any(c.op_type == "Transpose" for c in consumers.get(n.output[0], [])):
            continue
        shape = _shape_values(n.input[1], consts, producers)
        if shape is not None and len(shape) == 4 and shape[3] > 0:
            head_sizes[shape[3]] += 1
    if not hidden or not head_sizes:
        return 0, 0
    head = head_sizes.most_common(1)[0][0]
    if hidden % head:
        return 0, 0
    return hidden // head, hidden


def _shape_values(name: str, consts: dict[str, list[int]], producers: dict[str, Any]) -> list[int] | None:
    """The values of a shape tensor: a constant, or a Concat whose pieces are constants or unknown (-2)."""
    if name in consts:
        return consts[name]
    node = producers.get(name)
    if node is None or node.op_type != "Concat":
        return None
    values: list[int] = []
    for part in node.input:
        piece = consts.get(part)
        values += piece if piece is not None else [-2]
    return values


# ---- the cached optimization ---------------------------------------------------------------------------
def optimize_cached(model_path: Path, cache_dir: Path, options: OptimizeOptions | None = None) -> OptimizedModel:
    """The optimized model for model_path, built on first use and then read from cache_dir."""
    import onnxruntime as ort

    options = options or OptimizeOptions()
    model_path = Path(model_path)
    if not model_path.is_file():
        raise ModelError(f"The model file {model_path} does not exist; fetch or import the model first.")
    sha = file_sha256(model_path, cache_dir / "sha256")
    key = cache_key(sha, ort.__version__, options)
    entry = cache_dir / f"{_stem(model_path)}-{key}"
    hit = _read_entry(entry, model_path, sha)
    if hit is not None:
        hit.cache_hit = True
        log.info("optimized model from the cache: %s (%s)", hit.path, hit.reason)
        return hit
    cache_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(dir=cache_dir, prefix=f".{entry.name}.tmp-"))
    tmp.chmod(0o755)  # mkdtemp makes it private; a cache entry is readable like any cached asset
    try:
        record = _optimize_into(model_path, sha, tmp, options, ort.__version__)
        record["seconds"] = round(time.perf_counter() - started, 3)
        _atomic_write_text(tmp / RECORD_FILE, json.dumps(record, indent=2) + "\n")
        try:
            os.rename(tmp, entry)
        except OSError:
            # Another process placed the same entry first: use theirs if it is complete.
            if _read_entry(entry, model_path, sha) is None:
                raise
            log.info("another process built %s first; using it", entry)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    result = _read_entry(entry, model_path, sha)
    if result is None:
        raise ModelError(f"The optimized-model cache entry {entry} is incomplete; delete it and run again.")
    result.seconds = record["seconds"]
    log.info(
        "optimized %s in %.1f s (%s fusions): %s %s",
        model_path.name,
        result.seconds,
        options.fusions,
        result.reason,
        ", ".join(f"{k} {v}" for k, v in result.fused.items() if v),
    )
    return result


def _stem(path: Path) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in path.stem)[:60]


def _read_entry(entry: Path, source: Path, sha: str) -> OptimizedModel | None:
    try:
        record = json.loads((entry / RECORD_FILE).read_text())
    except (OSError, ValueError):
        return None
    if record.get("source_sha256") != sha:
        return None
    changed = bool(record.get("changed"))
    path = entry / MODEL_FILE if changed else source
    if changed and not path.is_file():
        return None
    return OptimizedModel(
        path=path,
        source=source,
        source_sha256=sha,
        changed=changed,
        reason=str(record.get("reason", "")),
        fused=dict(record.get("fused", {})),
        fusions=str(record.get("fusions", "")),
        float16=bool(record.get("float16", False)),
    )


def _optimize_into(
    model_path: Path, sha: str, out_dir: Path, options: OptimizeOptions, ort_version: str
) -> dict[str, Any]:
    import onnx

    record: dict[str, Any] = {
        "source": str(model_path),
        "source_sha256": sha,
        "onnxruntime": ort_version,
        "recipe": RECIPE_VERSION,
        "options": asdict(options),
        "changed": False,
    }
    try:
        model = onnx.load(str(model_path))
    except Exception as exc:  # any parse failure means the same thing to the user
        raise ModelError(
            f"onnxruntime cannot load {model_path} as an ONNX model ({type(exc).__name__}); check that the file "
            "is a complete .onnx model."
        ) from exc
    graph_inputs = {i.name for i in model.graph.input}
    if not {"input_ids", "input_mask", "segment_ids"} <= graph_inputs:
        record["reason"] = "not the MLPerf BERT interface: left to the engine's interface check"
        return record
    quantized = quantized_ops(model)
    if quantized:
        record["reason"] = f"already quantized ({', '.join(quantized[:3])}): the fusions do not apply"
        return record
    if options.float16 and options.fusions != "transformers":
        raise ModelError(
            "float16 conversion runs after the transformers fusions; pass fusions=transformers with precision=fp16."
        )
    record["fusions"] = options.fusions
    before = Counter(n.op_type for n in model.graph.node)
    if options.fusions == "onnxruntime":
        del model  # the session reads the file itself; BERT-large's weights need not be held twice
        after = _onnxruntime_fusions(model_path, out_dir, options.provider)
        record = _fused_record(record, before, after)
        if not record["changed"]:  # the source is used as is: keep no copy of it
            for leftover in out_dir.glob(MODEL_FILE + "*"):
                leftover.unlink()
        return record
    num_heads, hidden = options.num_heads, options.hidden_size
    if not (num_heads and hidden):
        found_heads, found_hidden = detect_attention_shape(model)
        num_heads, hidden = num_heads or found_heads, hidden or found_hidden
    record["num_heads"], record["hidden_size"] = num_heads, hidden
    try:
        optimizer = _run_optimizer(model, options.model_type, num_heads, hidden)
    except ModelError:
        raise
    except Exception as exc:  # noqa: BLE001 - the unfused model still gives the same answers, only slower
        log.warning(
            "the transformer optimizer failed on %s (%s: %s); running the model unfused",
            model_path.name,
            type(exc).__name__,
            exc,
        )
        record["reason"] = f"the optimizer failed ({type(exc).__name__}: {str(exc)[:200]})"
        return record
    after = Counter(n.op_type for n in optimizer.model.graph.node)
    record = _fused_record(record, before, after)
    if options.float16:
        # keep_io_types: the int64 inputs and float32 logits stay as the harness binds them.
        with _quiet_optimizer_logs():
            optimizer.convert_float_to_float16(keep_io_types=True)
        record["changed"], record["float16"] = True, True
        record["reason"] = "fused, float16" if record["reason"] == "fused" else "float16"
    if record["changed"]:
        big = optimizer.model.ByteSize() > EXTERNAL_DATA_ABOVE
        with _quiet_optimizer_logs():
            optimizer.save_model_to_file(str(out_dir / MODEL_FILE), use_external_data_format=big)
    return record


def _fused_record(record: dict[str, Any], before: Counter[str], after: Counter[str]) -> dict[str, Any]:
    fused = {op: after.get(op, 0) for op in FUSED_OPS}
    record["fused"] = fused
    record["nodes_before"], record["nodes_after"] = sum(before.values()), sum(after.values())
    if record["nodes_after"] >= record["nodes_before"]:
        record["reason"] = "nothing fused"
        return record
    record["changed"] = True
    record["reason"] = "fused"
    record["attention_fused"] = fused["Attention"] + fused["MultiHeadAttention"] > 0
    return record


def open_session(path: Path, options: Any, provider: str) -> Any:
    """An onnxruntime session on exactly `provider` (no fallback); a file it cannot load is a ModelError."""
    import onnxruntime as ort

    try:
        return ort.InferenceSession(str(path), sess_options=options, providers=[provider])
    except Exception as exc:
        raise ModelError(
            f"onnxruntime cannot load {path} as an ONNX model ({first_line(exc)}); check that the file is a "
            "complete .onnx model."
        ) from exc


def _onnxruntime_fusions(model_path: Path, out_dir: Path, provider: str) -> Counter[str]:
    """Let an ORT_ENABLE_EXTENDED session fuse the graph for `provider` and save it to out_dir/MODEL_FILE;
    the operators of the saved graph. (ORT_ENABLE_ALL would add layout rewrites for this very CPU, which
    ONNX Runtime warns must not be saved; the session that loads the result applies them itself.)"""
    import onnx
    import onnxruntime as ort

    target = out_dir / MODEL_FILE
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    so.optimized_model_filepath = str(target)
    so.log_severity_level = 3  # its "serializing an optimized model" notes are not the user's business
    if model_path.stat().st_size > EXTERNAL_DATA_ABOVE:
        so.add_session_config_entry("session.optimized_model_external_initializers_file_name", MODEL_FILE + ".data")
        so.add_session_config_entry("session.optimized_model_external_initializers_min_size_in_bytes", "1024")
    open_session(model_path, so, provider)
    saved = onnx.load(str(target), load_external_data=False)
    return Counter(n.op_type for n in saved.graph.node)


def _run_optimizer(model: Any, model_type: str, num_heads: int, hidden: int) -> Any:
    """onnxruntime.transformers' Python fusions only (opt_level 0): levels >= 1 pre-run onnxruntime through
    a code path that imports torch. The session that loads the result applies onnxruntime's own graph
    optimizations (ORT_ENABLE_ALL) on top."""
    try:
        from onnxruntime.transformers.optimizer import optimize_model

        with _quiet_optimizer_logs():
            return optimize_model(
                model, model_type=model_type, num_heads=num_heads, hidden_size=hidden, opt_level=0, use_gpu=False
            )
    except ImportError as exc:
        raise ModelError(
            f"onnxruntime's transformer optimizer cannot run here ({exc}); install the package "
            "it names, or pass the engine option optimize=none."
        ) from exc


@contextmanager
def _quiet_optimizer_logs() -> Iterator[None]:
    """The optimizer's modules log every fusion attempt (and every miss) at INFO/WARNING under their bare
    module names; keep the harness log to our own one-line summary."""
    names = [
        n
        for n in list(logging.root.manager.loggerDict)
        if n.startswith(("onnxruntime.transformers", "onnx_model", "fusion_", "shape_infer", "symbolic_shape"))
    ]
    loggers = [logging.getLogger(n) for n in names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)
