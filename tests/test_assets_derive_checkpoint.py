"""assets derive-checkpoint: the embedded int8 demo dequantized into a Hugging Face checkpoint with the
same tensors (names and shapes) as the fp32 demo checkpoint, and weights close to its own."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
from cli_support import invoke

from orchestrator.harness.engines.pytorch import checkpoint_dir
from orchestrator.paths import EMBEDDED_MODEL


def _header(path: Path) -> dict:  # type: ignore[type-arg]
    with path.open("rb") as f:
        size = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(size))
    header.pop("__metadata__", None)
    return header


def _tensor(path: Path, name: str) -> np.ndarray:
    with path.open("rb") as f:
        size = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(size))
        start, end = header[name]["data_offsets"]
        f.seek(8 + size + start)
        return np.frombuffer(f.read(end - start), "<f4").reshape(header[name]["shape"])


def test_derived_checkpoint_matches_the_fp32_one(shared_assets: Path, tmp_path: Path) -> None:
    out = tmp_path / "demo-hf"
    result = invoke(["assets", "derive-checkpoint", "--onnx", str(EMBEDDED_MODEL), "--output", str(out)])
    assert result.exit_code == 0 and checkpoint_dir(out) == out, result.output
    fp32 = shared_assets / "models" / "demo-minilm-l6-squad-hf"
    derived, original = _header(out / "model.safetensors"), _header(fp32 / "model.safetensors")
    assert {k: v["shape"] for k, v in derived.items()} == {k: v["shape"] for k, v in original.items()}
    config, reference = (json.loads((d / "config.json").read_text()) for d in (out, fp32))
    for key in ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "vocab_size"):
        assert config[key] == reference[key], key
    for name in ("bert.encoder.layer.0.attention.self.query.weight", "qa_outputs.weight"):
        mine, theirs = _tensor(out / "model.safetensors", name), _tensor(fp32 / "model.safetensors", name)
        # int8 per-column quantization: within half a step of the fp32 weight, not equal to it
        assert np.abs(mine - theirs).max() < np.abs(theirs).max() / 100 and not np.array_equal(mine, theirs)
