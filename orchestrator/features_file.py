"""The features file's layout and its one reader: a plain .npz (no pickle), numpy only.

The dataset step writes it (orchestrator/dataset/cache.py); the host reads every array back for
scoring, and the harness reads only the model inputs. Both read through `read_npz`, so a missing, corrupt
or incomplete file gives the same one-sentence DatasetError wherever it is opened. numpy alone, so the
harness can import it from any backend's environment.
"""

from __future__ import annotations

import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from orchestrator.errors import DatasetError

# name -> (dtype, rank); rank-2 arrays are [N, max_seq_length], rank-1 arrays are [N].
ARRAYS: dict[str, tuple[np.dtype[Any], int]] = {
    "input_ids": (np.dtype(np.int32), 2),
    "input_mask": (np.dtype(np.int8), 2),
    "segment_ids": (np.dtype(np.int8), 2),
    "example_index": (np.dtype(np.int32), 1),
    "doc_span_index": (np.dtype(np.int16), 1),
    "seq_len": (np.dtype(np.int16), 1),
    "token_to_orig_map": (np.dtype(np.int32), 2),
    "token_is_max_context": (np.dtype(np.bool_), 2),
}
META = "meta"  # a JSON string: parameters, input checksums, counts
MODEL_INPUTS = ("input_ids", "input_mask", "segment_ids", "seq_len")


def unusable(path: Path, what: str) -> DatasetError:
    return DatasetError(f"Features file {path} is not usable ({what}); delete it and build the features again.")


def read_npz(path: Path, names: Sequence[str]) -> dict[str, np.ndarray]:
    """The named arrays of a features file, loaded into memory; DatasetError when it cannot be."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [name for name in names if name not in npz.files]
            if missing:
                raise unusable(path, f"missing {', '.join(missing)}")
            return {name: np.asarray(npz[name]) for name in names}
    except FileNotFoundError:
        raise DatasetError(f"Features file {path} does not exist; build the features first.") from None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise unusable(path, f"cannot be read: {exc}") from None
