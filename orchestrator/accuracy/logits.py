"""Read LoadGen's accuracy log (mlperf_log_accuracy.json) back into per-sample logits.

Each entry is `{"seq_id": ..., "qsl_idx": ..., "data": "<hex>"}`; `data` is the response the SUT
gave for QSL index `qsl_idx`: float32 [seq_len, 2], start and end logits interleaved per token.
seq_len may be shorter than 384 (the optimized SUT answers with the real length).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from orchestrator.errors import RunError
from orchestrator.mlperf import SEQ_LEN

log = logging.getLogger(__name__)

# One token of a response: a float32 start logit and a float32 end logit.
BYTES_PER_TOKEN = 8


def read_accuracy_log(path: Path) -> dict[int, np.ndarray]:
    """qsl_idx -> float32 [seq_len, 2] logits, from LoadGen's accuracy log at `path`."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise RunError(f"The accuracy log {path} cannot be read ({exc.strerror}); rerun the accuracy mode.") from exc
    return parse_accuracy_log(raw, source=str(path))


def parse_accuracy_log(raw: bytes, *, source: str = "the accuracy log") -> dict[int, np.ndarray]:
    """Parse the bytes of an accuracy log; see `read_accuracy_log`."""
    try:
        entries = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RunError(f"{source} is not valid JSON ({exc}); the accuracy run did not finish, rerun it.") from exc
    if not isinstance(entries, list):
        raise RunError(f"{source} is not a JSON list of LoadGen responses; rerun the accuracy mode.")

    logits: dict[int, np.ndarray] = {}
    raw_data: dict[int, str] = {}
    differing_repeats = 0
    for position, entry in enumerate(entries):
        qsl_idx, data = _entry_fields(entry, position, source)
        previous = raw_data.get(qsl_idx)
        if previous is not None:
            # LoadGen repeats samples to fill the last MultiStream query; with dynamic int8 quantization a
            # repeat computed in another batch differs slightly. The first answer is the one scored.
            if previous.lower() != data.lower():
                differing_repeats += 1
            continue
        raw_data[qsl_idx] = data
        logits[qsl_idx] = _decode(data, qsl_idx, source)
    if differing_repeats:
        log.warning(
            "%s: %d repeated sample(s) differ from their first answer (batch-dependent int8 "
            "quantization); the first answer of each is scored",
            source,
            differing_repeats,
        )
    log.debug("Read %d responses from %s", len(logits), source)
    return logits


def _entry_fields(entry: object, position: int, source: str) -> tuple[int, str]:
    if not isinstance(entry, dict):
        raise RunError(f"{source} entry {position} is not an object; rerun the accuracy mode.")
    qsl_idx = entry.get("qsl_idx")
    data = entry.get("data")
    # bool is an int subclass; a qsl_idx of true is not an index.
    if not isinstance(qsl_idx, int) or isinstance(qsl_idx, bool) or qsl_idx < 0:
        raise RunError(f"{source} entry {position} has no valid qsl_idx ({qsl_idx!r}); rerun the accuracy mode.")
    if not isinstance(data, str):
        raise RunError(f"{source} entry {position} has no hex data string; rerun the accuracy mode.")
    return qsl_idx, data


def _decode(data: str, qsl_idx: int, source: str) -> np.ndarray:
    try:
        payload = bytes.fromhex(data)
    except ValueError as exc:
        raise RunError(f"{source} holds data that is not hex for qsl_idx {qsl_idx}; rerun the accuracy mode.") from exc
    if len(payload) % BYTES_PER_TOKEN:
        raise RunError(
            f"{source} holds {len(payload)} bytes for qsl_idx {qsl_idx}, not a multiple of 8 "
            "(float32 start/end pairs); the SUT must answer float32 [seq_len, 2]."
        )
    seq_len = len(payload) // BYTES_PER_TOKEN
    if seq_len > SEQ_LEN:
        raise RunError(
            f"{source} holds {seq_len} tokens for qsl_idx {qsl_idx}, more than {SEQ_LEN}; "
            "the SUT must answer float32 [seq_len, 2] with seq_len <= 384."
        )
    # LoadGen writes the bytes as the SUT gave them: native little-endian float32 on every
    # platform MLPerf runs on.
    return np.frombuffer(payload, dtype="<f4").reshape(seq_len, 2)
