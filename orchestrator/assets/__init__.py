"""Models and data: the catalogue (configs/assets.yaml), the cache, fetching, importing, resolving.

What a run needs is here: `resolve_model`, `resolve_dataset`, `resolve_vocab` (verified files, or an
AssetError that says which command brings the asset in) and `check_onnx_interface`. Fetching lives in
`orchestrator.assets.download`, the synthetic model in `orchestrator.assets.synthetic`.
"""

from orchestrator.assets.catalogue import (
    MLPERF_INTERFACE,
    Asset,
    Catalogue,
    Interface,
    load_catalogue,
)
from orchestrator.assets.interface import check_onnx_interface
from orchestrator.assets.resolve import (
    ResolvedAsset,
    ResolvedModel,
    resolve_asset,
    resolve_dataset,
    resolve_model,
    resolve_vocab,
)

__all__ = [
    "MLPERF_INTERFACE",
    "Asset",
    "Catalogue",
    "Interface",
    "ResolvedAsset",
    "ResolvedModel",
    "check_onnx_interface",
    "load_catalogue",
    "resolve_asset",
    "resolve_dataset",
    "resolve_model",
    "resolve_vocab",
]
