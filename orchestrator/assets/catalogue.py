"""The asset catalogue (configs/assets.yaml): typed, validated, unknown keys rejected.

The catalogue is data: for each asset its file name, size, checksums, mirrors (with where each fact
came from), and for models the reference accuracy and the input/output interface. Code never hard-codes
a URL or a checksum; it reads them from here.
"""

from __future__ import annotations

import os
import re
import stat
from functools import lru_cache
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from orchestrator import paths
from orchestrator.errors import AssetError, UnknownAssetError

Kind = Literal["model", "dataset", "vocab"]
Dtype = Literal["int32", "int64", "float16", "float32"]

NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]*$"
# Fields an entry may flag as `unverified` (a value no public source confirmed).
_FLAGGABLE = {
    "size",
    "approx_size",
    "md5",
    "sha256",
    "mirrors",
    "interface",
    "interface.inputs",
    "interface.outputs",
    "interface.seq_len",
    "reference",
    "precision",
}

# The interface of MLPerf's BERT ONNX model (language/bert/bert_tf_to_pytorch.py in mlcommons/inference).
MLPERF_INPUTS: dict[str, Dtype] = {"input_ids": "int64", "input_mask": "int64", "segment_ids": "int64"}
MLPERF_OUTPUTS: dict[str, Dtype] = {"output_start_logits": "float32", "output_end_logits": "float32"}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Mirror(_Strict):
    url: str
    source: str | None = None  # where this URL is published
    note: str | None = None

    @field_validator("url")
    @classmethod
    def _http(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError(f"mirror url {v!r} must start with http:// or https://")
        return v


class Reference(_Strict):
    f1: float = Field(gt=0, le=100)
    exact_match: float | None = Field(default=None, gt=0, le=100)
    questions: int | None = Field(default=None, ge=1)
    source: str


class Interface(_Strict):
    inputs: dict[str, Dtype]
    outputs: dict[str, Dtype]
    # The sequence axis: a fixed length (MLPerf's model is exported with 384) or None when dynamic.
    seq_len: int | None = None


MLPERF_INTERFACE = Interface(inputs=MLPERF_INPUTS, outputs=MLPERF_OUTPUTS, seq_len=None)


class Asset(_Strict):
    name: str = Field(pattern=NAME_PATTERN)
    kind: Kind
    format: Literal["onnx", "pytorch", "json", "text"] | None = None
    filename: str
    description: str | None = None
    size: int | None = Field(default=None, ge=1)  # exact bytes, when known
    approx_size: int | None = Field(default=None, ge=1)  # for the disk-space check when size is unknown
    md5: str | None = Field(default=None, pattern=r"^[0-9a-f]{32}$")
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    embedded: str | None = None  # path under the repository's embedded/ directory
    mirrors: list[Mirror] = Field(default_factory=list)
    aliases: list[str] = Field(default_factory=list)
    vocab: str | None = None
    precision: Literal["fp32", "fp16", "int8"] | None = None
    demo: bool = False
    synthetic: bool = False  # generated here (random weights); no published checksum exists
    reference: Reference | None = None
    interface: Interface | None = None
    licence: str | None = None
    source: str | None = None  # where the checksums and size were published
    unverified: list[str] = Field(default_factory=list)  # fields no public source confirmed
    import_hint: str | None = None  # where a copy may already be, for `assets import`

    @field_validator("filename")
    @classmethod
    def _plain_filename(cls, v: str) -> str:
        if not v or "/" in v or v.startswith(".") or v.endswith((".part", ".lock")):
            raise ValueError(f"filename {v!r} must be a plain file name (no '/', no leading dot)")
        return v

    @field_validator("embedded")
    @classmethod
    def _relative(cls, v: str | None) -> str | None:
        if v is not None and (v.startswith("/") or ".." in Path(v).parts):
            raise ValueError(f"embedded path {v!r} must be relative to embedded/ without '..'")
        return v

    @field_validator("aliases")
    @classmethod
    def _alias_names(cls, v: list[str]) -> list[str]:
        for alias in v:
            if not re.match(NAME_PATTERN, alias):
                raise ValueError(f"alias {alias!r} must match {NAME_PATTERN}")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> Asset:
        if not self.synthetic and not (self.md5 or self.sha256):
            raise ValueError(f"asset {self.name!r} needs an md5 or a sha256 (only synthetic assets have none)")
        if self.kind == "model" and (self.interface is None or self.precision is None):
            raise ValueError(f"model {self.name!r} needs an interface and a precision")
        unknown = sorted(set(self.unverified) - _FLAGGABLE)
        if unknown:
            raise ValueError(f"unverified names unknown fields {unknown}; use some of {sorted(_FLAGGABLE)}")
        return self

    @property
    def checksums(self) -> dict[str, str]:
        """The published digests to verify a file against: {'md5': ..., 'sha256': ...}."""
        return {k: v for k, v in (("md5", self.md5), ("sha256", self.sha256)) if v}

    @property
    def expected_size(self) -> int | None:
        return self.size

    @property
    def fetchable(self) -> bool:
        return bool(self.mirrors)

    @property
    def embedded_path(self) -> Path | None:
        return paths.EMBEDDED_DIR / self.embedded if self.embedded else None


class Catalogue(_Strict):
    assets: list[Asset]

    @model_validator(mode="after")
    def _unique(self) -> Catalogue:
        seen: dict[str, str] = {}
        for asset in self.assets:
            for key in [asset.name, *asset.aliases]:
                if key in seen:
                    raise ValueError(f"name {key!r} is used by both {seen[key]!r} and {asset.name!r}")
                seen[key] = asset.name
        names = {a.name for a in self.assets}
        for asset in self.assets:
            if asset.vocab is not None and asset.vocab not in names:
                raise ValueError(f"asset {asset.name!r} names vocab {asset.vocab!r}, which is not in the catalogue")
        return self

    @property
    def names(self) -> list[str]:
        return [a.name for a in self.assets]

    def find(self, name: str) -> Asset | None:
        for asset in self.assets:
            if name == asset.name or name in asset.aliases:
                return asset
        return None

    def get(self, name: str, kind: Kind | None = None) -> Asset:
        asset = self.find(name)
        if asset is None or (kind is not None and asset.kind != kind):
            choices = ", ".join(a.name for a in self.assets if kind is None or a.kind == kind)
            what = kind or "asset"
            raise UnknownAssetError(f"unknown {what} {name!r}; choose one of {choices} (see `mlperf-bert assets list`)")
        return asset


def default_catalogue_path() -> Path:
    """$MLPERF_BERT_CATALOGUE, else configs/assets.yaml ($MLPERF_BERT_CONFIGS moves configs/)."""
    env = os.environ.get("MLPERF_BERT_CATALOGUE")
    if env:
        return Path(env).expanduser()
    configs = os.environ.get("MLPERF_BERT_CONFIGS")
    return (Path(configs) if configs else paths.CONFIGS_DIR) / "assets.yaml"


def parse_catalogue(text: str, origin: str = "catalogue") -> Catalogue:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise AssetError(f"{origin} is not valid YAML ({e.__class__.__name__}); fix its syntax") from None
    if data is None:
        raise AssetError(f"{origin} is empty; a catalogue is a YAML mapping with an `assets:` list")
    if not isinstance(data, dict):
        raise AssetError(f"{origin} is not a YAML mapping; a catalogue is a mapping with an `assets:` list")
    try:
        return Catalogue.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown key; remove it or check its spelling"
        raise AssetError(f"{origin} is invalid at {loc}: {msg}") from None


def _remedy(path: Path) -> str:
    """What to do about an unusable catalogue: git restores only the project's own file."""
    own = paths.CONFIGS_DIR / "assets.yaml"
    if os.path.abspath(path) == os.path.abspath(own):
        return "restore configs/assets.yaml from git (`git checkout -- configs/assets.yaml`)"
    configs = os.environ.get("MLPERF_BERT_CONFIGS")
    if configs and os.path.abspath(path) == os.path.abspath(Path(configs) / "assets.yaml"):
        return "copy the repository's configs/assets.yaml there, or unset $MLPERF_BERT_CONFIGS"
    return "pass the path of a catalogue YAML file (like configs/assets.yaml) to --catalogue or $MLPERF_BERT_CATALOGUE"


@lru_cache(maxsize=8)
def _load_cached(path: str, mtime_ns: int) -> Catalogue:
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise AssetError(
            f"asset catalogue {path} cannot be read ({e.strerror or e.__class__.__name__}); {_remedy(Path(path))}"
        ) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise AssetError(
            f"asset catalogue {path} is not a YAML text file (bad UTF-8 byte at offset {e.start}); "
            f"{_remedy(Path(path))}"
        ) from None
    return parse_catalogue(text, origin=path)


def load_catalogue(path: Path | None = None) -> Catalogue:
    """Read and validate the catalogue (cached per file version)."""
    path = path or default_catalogue_path()
    try:
        st = path.stat()
    except (FileNotFoundError, NotADirectoryError):
        raise AssetError(f"asset catalogue {path} does not exist; {_remedy(path)}") from None
    except OSError as e:
        raise AssetError(f"asset catalogue {path} cannot be read ({e.strerror}); {_remedy(path)}") from None
    if stat.S_ISDIR(st.st_mode):
        raise AssetError(f"asset catalogue {path} is a directory, not a file; {_remedy(path)}")
    return _load_cached(str(path), st.st_mtime_ns)


def no_mirror_message(asset: Asset) -> str:
    """How to bring in an asset that cannot be downloaded (`assets fetch` and a run missing it say this)."""
    if asset.synthetic:
        return f"{asset.name} is generated, not downloaded; run `mlperf-bert assets make-synthetic`"
    hint = f" (on the development machines it is {asset.import_hint})" if asset.import_hint else ""
    return (
        f"{asset.name} has no download mirror; copy the file to this machine and run "
        f"`mlperf-bert assets import FILE --as {asset.name}`{hint}"
    )
