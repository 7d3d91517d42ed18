"""Where an OpenVINO model spends its time, per op type, and how fast its FullyConnected layers run against
this CPU's GEMM ceiling for their precision, measured in the same invocation.

    .venv/bin/python benchmarks/profile_openvino.py MODEL [--float fp32|bf16] [--batch 4 --batches 16]
    .venv/bin/python benchmarks/profile_openvino.py ~/.cache/mlperf-bert/engines/openvino-cpu/int8/<key>/model.xml \\
        --float bf16                    # an NNCF int8 model (run.json's engine setting int8_model names it)
    .venv/bin/python benchmarks/profile_openvino.py --run runs/<run-id>   # the model and float precision a run ran

MODEL is an ONNX file (fp32; `--float` is the precision it runs in) or an OpenVINO IR such as the engine's
cached int8 model (`--float` is then the precision of its float rest, the engine's `int8_float`). The batches
are `--batches` x `--batch` dev features drawn at random over the whole dev set (as LoadGen draws a
performance run's samples; the first N features are shorter than the set's mean), sorted longest first and
padded to a multiple of `--pad-to` tokens, as the optimized SUT runs them. One stream of `--threads` threads
(1 by default: the engine runs one stream per core), OpenVINO's PERF_COUNT on, after one untimed call per
batch (each width's first call compiles kernels).

Prints the node time per op type (ms per batch, share), and per FullyConnected precision the GOP/s its
layers ran at and the fraction of that precision's ceiling (benchmarks/gemm_ceilings.py at the same thread
count, measured in this run; `--no-ceilings` skips it). The profile runs in the openvino-cpu venv (the host
never imports an engine): benchmarks/openvino_profile_worker.py.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

import gemm_ceilings  # noqa: E402

from orchestrator.containers.docker_runner import CACHE_DIR as CONTAINER_CACHE  # noqa: E402
from orchestrator.dataset import build_features, load_features  # noqa: E402
from orchestrator.errors import MlperfBertError  # noqa: E402
from orchestrator.harness.cpu import detect_isa  # noqa: E402
from orchestrator.mlperf import SEQ_LEN  # noqa: E402
from orchestrator.paths import EMBEDDED_DATASET, EMBEDDED_VOCAB, default_cache_dir  # noqa: E402
from orchestrator.runners import venvs  # noqa: E402

WORKER = REPO / "benchmarks" / "openvino_profile_worker.py"
HINTS = {"fp32": "f32", "bf16": "bf16"}
# The FullyConnected's runtime precision (OpenVINO's names) -> the ceiling it is judged against.
CEILING_OF = {"u8": "int8", "i8": "int8", "bf16": "bf16", "f32": "fp32"}


class ProfileError(Exception):
    """A profile that cannot run: one sentence for the user."""


def from_run(run: Path) -> tuple[Path, str]:
    """(the model, its float precision) that an openvino-cpu run ran: its int8 IR and int8_float, or its
    ONNX model and precision; a ProfileError where the run cannot say."""
    path = run / "run.json" if run.is_dir() else run
    try:
        record = json.loads(path.read_text())
        target, settings = record["target"], record["engine_settings"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ProfileError(f"{path} is not a readable run.json ({e}); pass a run directory of mlperf-bert run") from e
    if target != "openvino-cpu":
        raise ProfileError(f"the run {path.parent.name} ran on {target}; pass a run of --backend openvino")
    precision = str(settings.get("precision", "")).split(" ")[0]
    if precision == "int8":
        model = str(settings.get("int8_model", ""))
        if not model or model.endswith("(temporary: removed after the run)"):
            raise ProfileError(
                f"the run {path.parent.name} kept no int8 model (it ran without a cache); rerun it with a cache "
                "dir (the default) or pass the model"
            )
        ir = host_path(record, model)
        if not ir.is_file():
            raise ProfileError(
                f"the run {path.parent.name}'s int8 model {ir} is no longer there (its cache was cleared or moved); "
                "rerun the run, or pass the model"
            )
        return ir, str(settings.get("int8_float", "fp32"))
    if precision not in HINTS:
        raise ProfileError(f"the run {path.parent.name} records no precision this profile runs ({precision!r})")
    return Path(record["model"]["path"]), precision


def host_path(record: dict[str, Any], model: str) -> Path:
    """The run's int8 IR on this machine: a docker run records its container path under the engine cache's
    mount (/cache/cache_dir), which is the host's <cache>/engines/<target> unless the run named cache_dir."""
    mount = f"{CONTAINER_CACHE}/cache_dir/"
    if record.get("runner") != "docker" or not model.startswith(mount):
        return Path(model)
    config = record.get("config") or {}
    named = (config.get("engine_options") or {}).get("cache_dir")
    cache = Path(config.get("cache_dir") or default_cache_dir()).expanduser()
    engine_dir = Path(named) if named else cache / "engines" / str(record["target"])
    return engine_dir / model[len(mount) :]


def feeds(batch: int, batches: int, pad_to: int, seed: int) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """The batches as the npz the worker reads, and their mean real and padded lengths."""
    f = load_features(build_features(EMBEDDED_DATASET, EMBEDDED_VOCAB, default_cache_dir() / "features"))
    total = len(f.seq_len)
    pick = np.random.default_rng(seed).choice(total, size=min(total, batch * batches), replace=False)
    lengths = np.asarray(f.seq_len)[pick]
    pick = pick[np.argsort(-lengths, kind="stable")]  # longest first, as the SUT plans Offline
    out: dict[str, np.ndarray] = {}
    real, padded = [], []
    for i in range(0, len(pick), batch):
        idx = pick[i : i + batch]
        longest = int(np.asarray(f.seq_len)[idx].max())
        width = min(SEQ_LEN, -(-longest // pad_to) * pad_to)
        n = i // batch
        out[f"input_ids_{n}"] = np.asarray(f.input_ids)[idx, :width].astype(np.int64)
        out[f"input_mask_{n}"] = np.asarray(f.input_mask)[idx, :width].astype(np.int64)
        out[f"segment_ids_{n}"] = np.asarray(f.segment_ids)[idx, :width].astype(np.int64)
        real += np.asarray(f.seq_len)[idx].tolist()
        padded += [width] * len(idx)
    return out, {"mean_real_tokens": float(np.mean(real)), "mean_padded_tokens": float(np.mean(padded))}


def profile(model: Path, float_precision: str, threads: int, passes: int, npz: dict[str, np.ndarray]) -> Any:
    """The worker's JSON, run in the openvino-cpu venv; a ProfileError naming what went wrong."""
    try:
        python = venvs.ensure_venv("openvino-cpu")
    except MlperfBertError as e:
        raise ProfileError(f"the openvino-cpu venv cannot be made ({e}); run `make setup` and try again") from e
    with tempfile.TemporaryDirectory(prefix="profile-openvino-") as tmp:
        path = Path(tmp) / "feeds.npz"
        np.savez(path, **npz)
        argv = [str(python), str(WORKER), str(model), str(path), HINTS[float_precision], str(threads), str(passes)]
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        last = next((line for line in reversed(done.stderr.strip().splitlines()) if line.strip()), "no message")
        raise ProfileError(f"OpenVINO could not profile {model.name} ({last[:300]}); pass an ONNX or IR BERT model")
    return json.loads(done.stdout.strip().splitlines()[-1])


def summarise(raw: Any, ceilings: dict[str, float | None] | None, batch: int) -> dict[str, Any]:
    """Per op type ms per batch and share; per FullyConnected precision GOP/s and fraction of its ceiling."""
    calls = raw["calls"]
    node_total = sum(t["seconds"] for t in raw["op_types"].values()) or 1.0
    op_types = {
        name: {
            "ms_per_batch": 1e3 * t["seconds"] / calls,
            "share": t["seconds"] / node_total,
            "nodes_per_batch": t["per_call"],
            "kernels": t["kernels"],
        }
        for name, t in raw["op_types"].items()
    }
    fully_connected = {}
    for precision, fc in raw["fully_connected"].items():
        rate = fc["ops"] / fc["seconds"] / 1e9 if fc["seconds"] else 0.0
        kind = CEILING_OF.get(precision)
        ceiling = (ceilings or {}).get(kind) if kind else None
        fully_connected[precision] = {
            "gops_per_s": rate,
            "share": fc["seconds"] / node_total,
            "ceiling": ceiling,
            "ceiling_of": kind,
            "fraction_of_ceiling": rate / ceiling if ceiling else None,
        }
    wall = raw["wall_seconds"] / calls
    return {
        "ms_per_batch": 1e3 * wall,
        "samples_per_s_one_stream": batch / wall if wall else 0.0,
        "op_types": op_types,
        "fully_connected": fully_connected,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", type=Path, nargs="?", help="an ONNX file or an OpenVINO IR (.xml)")
    parser.add_argument("--run", type=Path, default=None, help="an openvino run's directory: its model and float")
    parser.add_argument("--float", dest="float_precision", choices=sorted(HINTS), default=None, help="default fp32")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--batches", type=int, default=16)
    parser.add_argument("--pad-to", type=int, default=16, help="widths padded up to a multiple of it (the engine's)")
    parser.add_argument("--threads", type=int, default=1, help="threads of the one stream (default 1)")
    parser.add_argument("--passes", type=int, default=3, help="profiled passes over the batches")
    parser.add_argument("--seed", type=int, default=0, help="which dev features are drawn")
    parser.add_argument("--no-ceilings", action="store_true", help="skip the GEMM ceilings (~20 s)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    # Every flag checked before any measurement: a wrong one costs nothing.
    if (args.model is None) == (args.run is None):
        parser.error("pass either a MODEL or --run RUN_DIR (an openvino run), not both or neither")
    if args.run is not None:
        if args.float_precision is not None:
            parser.error("--float comes from the run with --run; drop one of them")
        try:
            args.model, args.float_precision = from_run(args.run)
        except ProfileError as e:
            parser.error(str(e))
    args.float_precision = args.float_precision or "fp32"
    if not args.model.is_file():
        parser.error(f"{args.model} is not a file; pass an ONNX model or an OpenVINO IR (.xml)")
    if args.model.suffix not in (".onnx", ".xml"):
        parser.error(f"{args.model.name} is neither .onnx nor .xml; pass an ONNX model or an OpenVINO IR")
    for flag, value in (("--batch", args.batch), ("--batches", args.batches), ("--threads", args.threads)):
        if value < 1:
            parser.error(f"{flag} {value} is below 1; pass 1 or more")
    if args.passes < 1:
        parser.error(f"--passes {args.passes} is below 1; pass 1 or more")
    if not 1 <= args.pad_to <= SEQ_LEN:
        parser.error(f"--pad-to {args.pad_to} is not within 1-{SEQ_LEN}; pass e.g. 16")
    if args.json and not args.json.parent.is_dir():
        parser.error(f"--json {args.json}: the folder {args.json.parent} does not exist; create it or pick another")
    npz, lengths = feeds(args.batch, args.batches, args.pad_to, args.seed)
    try:
        raw = profile(args.model, args.float_precision, args.threads, args.passes, npz)
    except ProfileError as e:
        raise SystemExit(f"profile_openvino: {e}") from None
    ceilings = None if args.no_ceilings else gemm_ceilings.measure(args.threads)
    result = {
        "model": str(args.model),
        "float": args.float_precision,
        "threads": args.threads,
        "batch": args.batch,
        "batches": len(npz) // 3,
        "isa": str(detect_isa()),
        "openvino": raw["openvino"],
        **lengths,
        "ceilings": ceilings,
        **summarise(raw, ceilings["ceilings"] if ceilings else None, args.batch),
    }
    print(
        f"{args.model.name}, float {args.float_precision}, one stream of {args.threads} thread(s), "
        f"{result['batches']} batches of {args.batch} (mean real length {lengths['mean_real_tokens']:.1f}, "
        f"padded {lengths['mean_padded_tokens']:.1f}), openvino {raw['openvino']}, {result['isa']}"
    )
    print(f"wall {result['ms_per_batch']:.1f} ms per batch: {result['samples_per_s_one_stream']:.2f} samples/s")
    print("| op type | ms per batch | share | nodes per batch | kernels |")
    print("|---|---:|---:|---:|---|")
    for name, t in result["op_types"].items():
        if t["share"] >= 0.001:
            kernels = ", ".join(t["kernels"])
            print(f"| {name} | {t['ms_per_batch']:.2f} | {t['share']:.1%} | {t['nodes_per_batch']:g} | {kernels} |")
    print("| FullyConnected in | GOP/s | share of node time | ceiling (GOP/s) | of the ceiling |")
    print("|---|---:|---:|---:|---:|")
    for precision, fc in result["fully_connected"].items():
        ceiling = f"{fc['ceiling']:,.0f} ({fc['ceiling_of']})" if fc["ceiling"] else "not measured"
        fraction = f"{fc['fraction_of_ceiling']:.2f}" if fc["fraction_of_ceiling"] else "-"
        print(f"| {precision} | {fc['gops_per_s']:,.0f} | {fc['share']:.1%} | {ceiling} | {fraction} |")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
