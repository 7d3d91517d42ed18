"""Images: one per target (`images/<key>/`), built from a wheelhouse that the host prepares.

Each image folder holds a Dockerfile whose `ARG NAME=default` lines are the single source of every
version, and a requirements.txt that names them as `${NAME}` (pip expands them inside the image from
the build args; `expand_requirements` does the same here). Building is two steps:

1. `prepare_wheelhouse`: `pip download` on the host, for the image's Python, glibc and CPU, into
   `wheelhouse/<key>/` (pip itself included, so the base needs no pip). Skipped when the wheelhouse
   already matches; a wheelhouse copied from another machine serves with `offline=True`.
2. `build_image`: `docker build` with the repository root as the context (only this image's wheelhouse
   travels), the network off, progress on the log, the full log kept, the failing step named.
"""

from __future__ import annotations

import json
import logging
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from orchestrator import __version__
from orchestrator.backends import TARGETS, Target
from orchestrator.backends.pins import expand_requirements, parse_build_args
from orchestrator.containers.client import call, docker_error
from orchestrator.errors import ConfigError, DockerError
from orchestrator.paths import REPO_ROOT, default_cache_dir
from orchestrator.runs import git_sha

log = logging.getLogger(__name__)

IMAGES_DIR = REPO_ROOT / "images"
WHEELHOUSE_DIR = REPO_ROOT / "wheelhouse"
STAMP_FILE = "wheelhouse.json"
LABEL_PREFIX = "mlperf-bert."
LABEL_TARGET = "mlperf-bert.target"
# Labels shown by `images list`, in this order.
VERSION_LABELS = ("engine", "loadgen", "python", "numpy")

_STEP_RE = re.compile(r"^Step (\d+)/(\d+) : (.*)$")
_FROM_RE = re.compile(r"^FROM\s+(?:--\S+\s+)*\S+(?:\s+AS\s+(\S+))?\s*$", re.IGNORECASE)
_LAYER_RE = re.compile(r"^ ---> ([0-9a-f]{12,64})$")
CACHE_TAG_PREFIX = "cache-"  # mlperf-bert/<key>:cache-<stage>: a build stage kept tagged for the layer cache
_ANSI_RE = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")

Runner = Callable[..., "subprocess.CompletedProcess[str]"]


@dataclass(frozen=True)
class ImageRecipe:
    """What `images/<key>/` declares."""

    target: Target
    directory: Path
    build_args: dict[str, str]  # the Dockerfile's ARG defaults, in declaration order

    @property
    def key(self) -> str:
        return self.target.key

    @property
    def dockerfile(self) -> Path:
        return self.directory / "Dockerfile"

    @property
    def requirements(self) -> Path:
        return self.directory / "requirements.txt"

    @property
    def repository(self) -> str:
        return self.target.image  # mlperf-bert/<key>

    @property
    def reference(self) -> str:
        return f"{self.repository}:latest"


def recipes(images_dir: Path = IMAGES_DIR) -> dict[str, ImageRecipe]:
    """Every registry target that has an image folder, in registry order."""
    found: dict[str, ImageRecipe] = {}
    for key, target in TARGETS.items():
        directory = images_dir / key
        dockerfile = directory / "Dockerfile"
        if dockerfile.is_file():
            found[key] = ImageRecipe(target, directory, parse_build_args(dockerfile.read_text()))
    return found


def get_recipe(key: str, images_dir: Path = IMAGES_DIR) -> ImageRecipe:
    known = recipes(images_dir)
    if key not in known:
        if not images_dir.is_dir():
            raise ConfigError(f"no image recipes at {images_dir}; build images from a clone of the repository")
        raise ConfigError(f"unknown image {key!r}; choose one of {', '.join(known)}")
    return known[key]


def effective_build_args(recipe: ImageRecipe, overrides: dict[str, str] | None = None) -> dict[str, str]:
    """The recipe's defaults with the caller's overrides; a name the Dockerfile does not declare is refused."""
    args = dict(recipe.build_args)
    for name, value in (overrides or {}).items():
        if name not in args:
            raise ConfigError(f"{recipe.key} has no build arg {name}; choose one of {', '.join(sorted(args))}")
        args[name] = value
    return args


def parse_build_arg_options(values: Iterable[str]) -> dict[str, str]:
    """`NAME=VALUE` strings (from --build-arg) to a dict."""
    out: dict[str, str] = {}
    for item in values:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise ConfigError(f"--build-arg {item!r} is not NAME=VALUE; write it as e.g. NUMPY_VERSION=1.26.4")
        out[name.strip()] = value.strip()
    return out


def pip_platforms(glibc: str, arch: str | None = None) -> list[str]:
    """pip --platform tags a base with this glibc accepts: manylinux_2_N for N down to 5, the legacy
    aliases, and plain linux_<arch> (PyPI has none, but vendor indexes such as AMD's use it)."""
    arch = arch or platform.machine()
    try:
        major, minor = (int(p) for p in glibc.split(".")[:2])
    except ValueError:
        raise ConfigError(f"GLIBC_VERSION {glibc!r} is not MAJOR.MINOR; set it like 2.36") from None
    if major != 2:
        raise ConfigError(f"GLIBC_VERSION {glibc!r} is not a glibc 2.x version; set it like 2.36")
    tags = [f"manylinux_2_{n}_{arch}" for n in range(minor, 4, -1)]
    legacy = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}
    if arch in ("x86_64", "i686"):
        tags += [f"{name}_{arch}" for n, name in legacy.items() if minor >= n]
    elif minor >= 17:
        tags.append(f"manylinux2014_{arch}")
    tags.append(f"linux_{arch}")
    return tags


def pip_download_command(
    requirements_file: Path,
    dest: Path,
    python_version: str,
    glibc: str,
    *,
    arch: str | None = None,
    python: str = sys.executable,
) -> list[str]:
    cmd = [
        python,
        "-m",
        "pip",
        "download",
        "--dest",
        str(dest),
        "--only-binary=:all:",
        "--implementation",
        "cp",
        "--python-version",
        python_version,
        "--progress-bar",
        "off",
        "--disable-pip-version-check",
    ]
    for tag in pip_platforms(glibc, arch):
        cmd += ["--platform", tag]
    return cmd + ["-r", str(requirements_file)]


def _wheelhouse_stamp(recipe: ImageRecipe, args: dict[str, str], arch: str) -> dict[str, Any]:
    return {
        "image": recipe.key,
        "requirements": expand_requirements(recipe.requirements.read_text(), args, str(recipe.requirements)),
        "python": args.get("PYTHON_VERSION", ""),
        "glibc": args.get("GLIBC_VERSION", ""),
        "arch": arch,
    }


def prepare_wheelhouse(
    recipe: ImageRecipe,
    args: dict[str, str],
    *,
    root: Path = WHEELHOUSE_DIR,
    offline: bool = False,
    arch: str | None = None,
    run: Runner = subprocess.run,
) -> Path:
    """`wheelhouse/<key>/` holding every wheel the image installs; downloaded only when out of date."""
    arch = arch or platform.machine()
    dest = root / recipe.key
    stamp = _wheelhouse_stamp(recipe, args, arch)
    stamp_path = dest / STAMP_FILE
    has_wheels = dest.is_dir() and any(dest.glob("*.whl"))
    if has_wheels and stamp_path.is_file():
        try:
            if json.loads(stamp_path.read_text()) == stamp:
                log.info("wheelhouse %s is up to date", dest)
                return dest
        except json.JSONDecodeError:
            pass
    if offline:
        if not has_wheels:
            raise DockerError(
                f"there is no wheelhouse at {dest} and --offline forbids downloading one; copy one made by "
                f"`mlperf-bert images build {recipe.key}` on a connected machine to {dest}"
            )
        log.warning("wheelhouse %s was made for other versions or is unstamped; using it as it is (--offline)", dest)
        return dest
    for name in ("PYTHON_VERSION", "GLIBC_VERSION"):
        if not args.get(name):
            raise ConfigError(
                f"{recipe.dockerfile} declares no {name}; add `ARG {name}=...` so the wheels match the base"
            )
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{recipe.key}.", dir=root))
    try:
        req = tmp / "requirements.txt"
        req.write_text("\n".join(stamp["requirements"]) + "\n")
        cmd = pip_download_command(req, tmp, args["PYTHON_VERSION"], args["GLIBC_VERSION"], arch=arch)
        log.info(
            "downloading the wheels for %s (Python %s, glibc %s, %s) into %s",
            recipe.key,
            args["PYTHON_VERSION"],
            args["GLIBC_VERSION"],
            arch,
            dest,
        )
        started = time.monotonic()
        proc = run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            lines = [
                ln for ln in (proc.stderr or proc.stdout or "").splitlines() if ln.strip() and "Location" not in ln
            ]
            reason = lines[-1].strip() if lines else f"pip exited with {proc.returncode}"
            raise DockerError(
                f"pip could not download the wheels for {recipe.key} ({reason}); check the versions and the "
                f"network, or copy a prepared wheelhouse to {dest} and build with --offline"
            )
        req.unlink()
        (tmp / STAMP_FILE).write_text(json.dumps(stamp, indent=2) + "\n")
        if dest.exists():
            shutil.rmtree(dest)
        tmp.rename(dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    size = sum(p.stat().st_size for p in dest.glob("*.whl"))
    log.info(
        "wheelhouse %s: %d wheels, %.0f MB, %.1f s",
        dest,
        len(list(dest.glob("*.whl"))),
        size / 1e6,
        time.monotonic() - started,
    )
    return dest


def dockerignore_patterns(repo_root: Path) -> list[str]:
    path = repo_root / ".dockerignore"
    if not path.is_file():
        return []
    return [ln.strip() for ln in path.read_text().splitlines() if ln.strip() and not ln.lstrip().startswith("#")]


def build_context(recipe: ImageRecipe, repo_root: Path = REPO_ROOT) -> IO[bytes]:
    """The repository root as a tar, filtered by .dockerignore, with only this image's wheelhouse."""
    from docker.utils.build import tar

    others = [f"wheelhouse/{key}" for key in TARGETS if key != recipe.key]
    patterns = dockerignore_patterns(repo_root) + others + ["wheelhouse/.*"]
    dockerfile = recipe.dockerfile.relative_to(repo_root).as_posix()
    return tar(str(repo_root), exclude=patterns, dockerfile=(dockerfile, None))


@dataclass
class BuildResult:
    key: str
    reference: str
    image_id: str
    tags: list[str]
    size_bytes: int
    seconds: float
    log_path: Path
    build_args: dict[str, str] = field(default_factory=dict)


class _BuildLog:
    """Follows the build stream: the full log to a file, step lines as progress, the failing step."""

    def __init__(self, sink: IO[str], on_step: Callable[[str], None]) -> None:
        self.sink = sink
        self.on_step = on_step
        self.step: str | None = None
        self.step_output: list[str] = []
        self.image_id: str | None = None
        self.error: str | None = None
        # The image each named build stage ended with (all but the last stage): the legacy builder leaves
        # them untagged, `<none>` images a rebuild's cache still wants.
        self.stage_images: dict[str, str] = {}
        self._stage: str | None = None
        self._layer: str | None = None

    def _follow_stages(self, line: str, instruction: str | None) -> None:
        if instruction is not None:
            m = _FROM_RE.match(instruction)
            if m:
                if self._stage and self._layer:
                    self.stage_images[self._stage] = self._layer
                self._stage, self._layer = m.group(1), None
            return
        m = _LAYER_RE.match(line)
        if m:
            self._layer = m.group(1)

    def feed(self, item: dict[str, Any]) -> None:
        if "stream" in item:
            text = str(item["stream"])
            self.sink.write(text)
            for line in text.splitlines():
                line = _ANSI_RE.sub("", line).rstrip()
                m = _STEP_RE.match(line)
                self._follow_stages(line, m.group(3) if m else None)
                if m:
                    self.step, self.step_output = line, []
                    if not m.group(3).upper().startswith("ARG "):
                        self.on_step(line if len(line) <= 120 else line[:117] + "...")
                elif line and not line.startswith(" ---> ") and not line.startswith("Removing intermediate"):
                    self.step_output.append(line)
                if line.startswith("Successfully built ") and not self.image_id:
                    self.image_id = line.split()[-1]  # older engines send no aux ID
        elif "aux" in item and isinstance(item["aux"], dict) and "ID" in item["aux"]:
            self.image_id = str(item["aux"]["ID"])
        elif "error" in item:
            self.error = str(item.get("error") or item.get("errorDetail", {}).get("message", "")).strip()
            self.sink.write(f"ERROR: {self.error}\n")
        elif "status" in item:  # pulling the base image
            self.sink.write(f"{item.get('status')} {item.get('progress', '')}\n")
        self.sink.flush()

    def failure_message(self, reference: str, log_path: Path) -> str:
        where = f"at {self.step}" if self.step else "before the first step"
        detail = self.step_output[-1] if self.step_output else (self.error or "unknown error")
        if self.error and self.error not in detail and self.step_output:
            detail = f"{detail} / {self.error}"
        return f"building {reference} failed {where}: {detail}; the full build log is {log_path}"


def default_log_dir() -> Path:
    return default_cache_dir() / "logs" / "images"


def build_image(
    recipe: ImageRecipe,
    *,
    client: Any,
    overrides: dict[str, str] | None = None,
    base_image: str | None = None,
    offline: bool = False,
    no_cache: bool = False,
    allow_network: bool = False,
    repo_root: Path = REPO_ROOT,
    wheelhouse_root: Path | None = None,
    log_dir: Path | None = None,
    on_step: Callable[[str], None] | None = None,
    run: Runner = subprocess.run,
) -> BuildResult:
    """Prepare the wheelhouse and build `mlperf-bert/<key>:latest` (also tagged with our version)."""
    over = dict(overrides or {})
    if base_image:
        over["BASE_IMAGE"] = base_image
    args = effective_build_args(recipe, over)
    prepare_wheelhouse(recipe, args, root=wheelhouse_root or repo_root / "wheelhouse", offline=offline, run=run)
    args["WHEELHOUSE"] = f"wheelhouse/{recipe.key}"
    if "GIT_SHA" in recipe.build_args:
        args["GIT_SHA"] = git_sha(repo_root) or "unknown"
    if "MLPERF_BERT_VERSION" in recipe.build_args:
        args["MLPERF_BERT_VERSION"] = __version__
    log_dir = log_dir or default_log_dir()
    log_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    log_path = log_dir / f"{recipe.key}-{stamp}.log"
    reference = recipe.reference
    step_cb = on_step or (lambda line: log.info("%s: %s", recipe.key, line))
    started = time.monotonic()
    log.info(
        "building %s from %s (base %s); full log: %s", reference, recipe.dockerfile, args.get("BASE_IMAGE"), log_path
    )
    with log_path.open("w") as sink:
        sink.write(f"# mlperf-bert images build {recipe.key}\n# build args: {json.dumps(args, sort_keys=True)}\n")
        follow = _BuildLog(sink, step_cb)
        context = build_context(recipe, repo_root)
        try:
            stream = client.api.build(
                fileobj=context,
                custom_context=True,
                tag=reference,
                dockerfile=recipe.dockerfile.relative_to(repo_root).as_posix(),
                buildargs=args,
                decode=True,
                rm=True,
                forcerm=True,
                nocache=no_cache,
                pull=False,
                network_mode=None if allow_network else "none",
            )
            for item in stream:
                follow.feed(item)
        except Exception as exc:  # not retried: a build stream cut halfway is not resumed
            raise docker_error(exc, f"build {reference}", otherwise=None) from exc
        finally:
            context.close()
    if follow.error or not follow.image_id:
        raise DockerError(_explain_build_failure(follow, reference, log_path, args))
    version_tag = f"{recipe.repository}:{__version__}"
    image_id = follow.image_id
    call(
        f"tag {reference} as {version_tag}",
        lambda: client.api.tag(image_id, recipe.repository, __version__),
        otherwise=None,
    )
    image = call(f"inspect the image {reference}", lambda: client.images.get(reference), otherwise=None)
    _prune_replaced(client, recipe.key)  # first: an earlier image may hold an earlier stage as its parent
    _keep_stages_tagged(client, recipe.repository, follow.stage_images)
    seconds = time.monotonic() - started
    result = BuildResult(
        key=recipe.key,
        reference=reference,
        image_id=image.id,
        tags=[reference, version_tag],
        size_bytes=int(image.attrs.get("Size", 0)),
        seconds=seconds,
        log_path=log_path,
        build_args=args,
    )
    log.info("built %s (%s, %.0f MB) in %.0f s", reference, image.id[:19], result.size_bytes / 1e6, seconds)
    return result


def _keep_stages_tagged(client: Any, repository: str, stage_images: dict[str, str]) -> None:
    """Tag each build stage this build ended with `<repository>:cache-<stage>`, so none is left a dangling
    `<none>` image while the next build still finds its layers; the stage image a tag moved away from (an
    earlier build's, ours by that tag) is removed."""
    for stage, layer in stage_images.items():
        tag = CACHE_TAG_PREFIX + stage
        earlier = _image_id(client, f"{repository}:{tag}")
        try:
            client.api.tag(layer, repository, tag)
        except Exception as exc:  # noqa: BLE001 - housekeeping only; the build itself succeeded
            log.debug("could not tag the %s stage of %s: %s", stage, repository, exc)
            continue
        if earlier and not earlier.removeprefix("sha256:").startswith(layer):
            try:
                client.images.remove(earlier)
            except Exception as exc:  # noqa: BLE001 - still a parent of another image: it stays, tagged by none
                log.debug("kept the earlier %s stage of %s (%s)", stage, repository, exc)


def _image_id(client: Any, reference: str) -> str | None:
    try:
        return str(client.images.get(reference).id)
    except Exception:  # noqa: BLE001 - none yet
        return None


def _prune_replaced(client: Any, key: str) -> None:
    """Earlier builds of this image that lost their tags would pile up: remove them (not ones in use)."""
    try:
        pruned = client.images.prune(filters={"dangling": True, "label": f"{LABEL_TARGET}={key}"})
    except Exception as exc:  # noqa: BLE001 - housekeeping only; the build itself succeeded
        log.debug("could not prune old %s images: %s", key, exc)
        return
    freed = (pruned or {}).get("SpaceReclaimed") or 0
    if freed:
        log.info("removed earlier %s builds (%.0f MB)", key, freed / 1e6)


def _explain_build_failure(follow: _BuildLog, reference: str, log_path: Path, args: dict[str, str]) -> str:
    error = (follow.error or "").lower()
    base = args.get("BASE_IMAGE", "")
    if (
        follow.step
        and " FROM " in f" {follow.step.split(' : ', 1)[-1]} ".upper()
        and ("pull access denied" in error or "not found" in error or "dial tcp" in error or "lookup" in error)
    ):
        return (
            f"the base image {base} is not here and cannot be pulled ({follow.error}); pull it on a connected "
            "machine, or pass --base-image with a local one (bash .ci/docker-setup.sh makes mlperf-bert/base:bookworm)"
        )
    return follow.failure_message(reference, log_path)


@dataclass
class ImageInfo:
    key: str
    reference: str | None  # None: not built
    image_id: str | None = None
    digest: str | None = None
    size_bytes: int | None = None
    created: str | None = None
    tags: list[str] = field(default_factory=list)
    versions: dict[str, str] = field(default_factory=dict)


def image_digest(attrs: dict[str, Any]) -> str:
    """The registry digest when the image was pushed or pulled, else its content-addressed ID."""
    digests = attrs.get("RepoDigests") or []
    return str(digests[0]) if digests else str(attrs.get("Id", ""))


def image_versions(labels: dict[str, str] | None) -> dict[str, str]:
    labels = labels or {}
    return {name: labels[LABEL_PREFIX + name] for name in VERSION_LABELS if LABEL_PREFIX + name in labels}


def list_images(client: Any, keys: Sequence[str] | None = None) -> list[ImageInfo]:
    """One row per image tag of ours, and one `not built` row for each recipe without an image."""
    wanted = list(keys) if keys else list(recipes())
    rows: list[ImageInfo] = []
    seen: set[str] = set()
    ours = call("list images", lambda: client.images.list(filters={"label": LABEL_TARGET}), otherwise=None)
    for image in ours:
        labels = image.attrs.get("Config", {}).get("Labels") or image.labels or {}
        key = labels.get(LABEL_TARGET)
        if key not in wanted:
            continue
        if not image.tags:
            continue  # an earlier build that lost its tags (pruned after each build)
        seen.add(key)
        tags = sorted(image.tags)
        for tag in tags:
            rows.append(
                ImageInfo(
                    key=key,
                    reference=tag,
                    image_id=image.id,
                    digest=image_digest(image.attrs),
                    size_bytes=int(image.attrs.get("Size", 0)),
                    created=image.attrs.get("Created"),
                    tags=tags,
                    versions=image_versions(labels),
                )
            )
    rows += [ImageInfo(key=k, reference=None) for k in wanted if k not in seen]
    order = {k: i for i, k in enumerate(wanted)}
    rows.sort(key=lambda r: (order.get(r.key, 99), r.reference or ""))
    return rows


def format_size(size: int | None) -> str:
    if size is None:
        return "-"
    return f"{size / 1e6:.0f} MB" if size < 1e9 else f"{size / 1e9:.2f} GB"
