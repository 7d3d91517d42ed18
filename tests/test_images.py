"""Image recipes and the build machinery, without a Docker engine: the recipes' consistency (every
version a pinned build arg), the wheelhouse download command and its cache, the build context, the
build stream's progress and failure message, `images list`.
"""

from __future__ import annotations

import json
import re
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from orchestrator.backends import TARGETS
from orchestrator.commands.text_table import format_table
from orchestrator.containers import images
from orchestrator.errors import ConfigError, DockerError

REPO = Path(__file__).resolve().parents[1]
IMAGE_KEYS = ["onnxruntime-cpu", "onnxruntime-rocm", "tensorrt-cuda", "deepsparse-cpu"]


# --- the recipes -----------------------------------------------------------------------------------
def test_recipes_are_registry_targets() -> None:
    found = images.recipes()
    assert set(IMAGE_KEYS) <= set(found)
    assert list(found) == [k for k in TARGETS if k in found]  # registry order
    for key, recipe in found.items():
        assert recipe.target is TARGETS[key] and recipe.reference == f"mlperf-bert/{key}:latest"


@pytest.mark.parametrize("key", IMAGE_KEYS)
def test_recipe_pins_every_version_as_a_build_arg(key: str) -> None:
    recipe = images.get_recipe(key)
    args = recipe.build_args
    for name in ("BASE_IMAGE", "PYTHON_VERSION", "GLIBC_VERSION", "PIP_VERSION", "LOADGEN_VERSION", "WHEELHOUSE"):
        assert args.get(name), f"{key}: ARG {name} needs a default"
    assert args["WHEELHOUSE"] == f"wheelhouse/{key}"
    assert args["LOADGEN_VERSION"] == "6.0.17"  # the harness's pin (pyproject.toml)
    lines = images.expand_requirements(recipe.requirements.read_text(), args)
    packages = [ln for ln in lines if not ln.startswith("-")]
    for line in packages:
        assert re.fullmatch(r"[A-Za-z0-9_.-]+==[A-Za-z0-9_.+-]+", line), f"{key}: {line!r} is not pinned"
    # Versions live only in build args: the requirements name them, never hard-code them.
    for raw in recipe.requirements.read_text().splitlines():
        if "==" in raw and not raw.lstrip().startswith("#"):
            assert "${" in raw.split("==", 1)[1], f"{key}: {raw!r} hard-codes a version"


@pytest.mark.parametrize("key", IMAGE_KEYS)
def test_dockerfile_labels_non_root_user_and_harness_command(key: str) -> None:
    text = images.get_recipe(key).dockerfile.read_text()
    target = TARGETS[key]
    assert f'mlperf-bert.target="{key}"' in text
    assert f'mlperf-bert.backend="{target.backend}"' in text
    for label in (
        "mlperf-bert.engine",
        "mlperf-bert.loadgen",
        "mlperf-bert.python",
        "org.opencontainers.image.version",
        "org.opencontainers.image.revision",
    ):
        assert label in text, f"{key}: label {label} missing"
    assert "\nUSER mlperf\n" in text
    assert 'CMD ["python", "-m", "orchestrator.harness", "/run"]' in text
    assert "COPY orchestrator/ /opt/mlperf-bert/orchestrator/" in text
    assert "COPY --from=venv /opt/venv /opt/venv" in text  # the wheelhouse layer stays out of the image
    # Stages redeclare ARGs without defaults: each version has exactly one default.
    defaults = re.findall(r"^ARG ([A-Z0-9_]+)=", text, flags=re.MULTILINE)
    assert len(defaults) == len(set(defaults))
    if target.gpu is not None:
        assert 'mlperf-bert.verified="false"' in text and "UNVERIFIED" in text


def test_default_bases_are_the_real_public_images() -> None:
    bases = {k: r.build_args["BASE_IMAGE"] for k, r in images.recipes().items()}
    assert bases["onnxruntime-cpu"] == bases["deepsparse-cpu"] == "python:3.11-slim-bookworm"
    assert bases["tensorrt-cuda"].startswith("nvcr.io/nvidia/tensorrt:")
    assert bases["onnxruntime-rocm"].startswith("rocm/")


def test_parse_build_args_first_default_wins() -> None:
    text = 'ARG A=1\nFROM x\nARG A\nARG B="two"\n  ARG C=\nARG A=3\n'
    assert images.parse_build_args(text) == {"A": "1", "B": "two", "C": ""}


def test_overrides_must_name_a_declared_arg() -> None:
    recipe = images.get_recipe("onnxruntime-cpu")
    args = images.effective_build_args(recipe, {"NUMPY_VERSION": "1.26.4"})
    assert args["NUMPY_VERSION"] == "1.26.4" and args["ONNXRUNTIME_VERSION"] == recipe.build_args["ONNXRUNTIME_VERSION"]
    with pytest.raises(ConfigError, match="has no build arg NUMPY_VERISON"):
        images.effective_build_args(recipe, {"NUMPY_VERISON": "1"})
    assert images.parse_build_arg_options(["A=1", "B = x=y"]) == {"A": "1", "B": "x=y"}
    with pytest.raises(ConfigError, match="NAME=VALUE"):
        images.parse_build_arg_options(["novalue"])


def test_expand_requirements() -> None:
    text = "# comment\n\n--find-links https://x/${V}/\npkg==${V}  # trailing\n"
    assert images.expand_requirements(text, {"V": "1.2"}) == ["--find-links https://x/1.2/", "pkg==1.2"]
    with pytest.raises(ConfigError, match=r"declares no such build arg; add `ARG W=...`"):
        images.expand_requirements("pkg==${W}", {})


def test_pip_platforms() -> None:
    tags = images.pip_platforms("2.36", "x86_64")
    assert tags[0] == "manylinux_2_36_x86_64" and "manylinux_2_5_x86_64" in tags
    assert {"manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64", "linux_x86_64"} <= set(tags)
    assert "manylinux_2_37_x86_64" not in tags
    arm = images.pip_platforms("2.39", "aarch64")
    assert "manylinux2014_aarch64" in arm and "manylinux1_aarch64" not in arm
    with pytest.raises(ConfigError):
        images.pip_platforms("bookworm")


def test_pip_download_command_targets_the_image_python(tmp_path: Path) -> None:
    cmd = images.pip_download_command(tmp_path / "r.txt", tmp_path, "3.12", "2.39", arch="x86_64", python="py")
    assert cmd[:4] == ["py", "-m", "pip", "download"]
    assert "--only-binary=:all:" in cmd
    assert cmd[cmd.index("--python-version") + 1] == "3.12"
    assert cmd[cmd.index("--implementation") + 1] == "cp"
    assert "manylinux_2_39_x86_64" in cmd and cmd[-2:] == ["-r", str(tmp_path / "r.txt")]


# --- the wheelhouse ----------------------------------------------------------------------------------
class FakePip:
    """Stands in for `pip download`: records the call, drops wheels into --dest."""

    def __init__(self, returncode: int = 0, stderr: str = "") -> None:
        self.calls: list[list[str]] = []
        self.returncode = returncode
        self.stderr = stderr

    def __call__(self, cmd: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
        self.calls.append(cmd)
        dest = Path(cmd[cmd.index("--dest") + 1])
        if self.returncode == 0:
            (dest / "pip-26.3-py3-none-any.whl").write_bytes(b"wheel")
            (dest / "numpy-2.4.6-cp311-cp311-manylinux_2_17_x86_64.whl").write_bytes(b"wheel")
        return subprocess.CompletedProcess(cmd, self.returncode, "", self.stderr)


def test_wheelhouse_is_downloaded_once_then_reused(tmp_path: Path) -> None:
    recipe = images.get_recipe("onnxruntime-cpu")
    args = images.effective_build_args(recipe)
    pip = FakePip()
    dest = images.prepare_wheelhouse(recipe, args, root=tmp_path, arch="x86_64", run=pip)
    assert dest == tmp_path / "onnxruntime-cpu" and len(pip.calls) == 1
    stamp = json.loads((dest / images.STAMP_FILE).read_text())
    assert f"onnxruntime=={args['ONNXRUNTIME_VERSION']}" in stamp["requirements"]
    assert stamp["python"] == "3.11" and stamp["arch"] == "x86_64"
    images.prepare_wheelhouse(recipe, args, root=tmp_path, arch="x86_64", run=pip)
    assert len(pip.calls) == 1  # up to date: no second download
    images.prepare_wheelhouse(recipe, {**args, "NUMPY_VERSION": "1.26.4"}, root=tmp_path, arch="x86_64", run=pip)
    assert len(pip.calls) == 2  # another version: downloaded again
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary left behind


def test_wheelhouse_download_failure_keeps_the_old_one_and_says_what_to_do(tmp_path: Path) -> None:
    recipe = images.get_recipe("onnxruntime-cpu")
    args = images.effective_build_args(recipe)
    images.prepare_wheelhouse(recipe, args, root=tmp_path, arch="x86_64", run=FakePip())
    broken = FakePip(returncode=1, stderr="ERROR: No matching distribution found for numpy==9.9\n")
    with pytest.raises(DockerError, match=r"No matching distribution found for numpy==9.9.*--offline"):
        images.prepare_wheelhouse(recipe, {**args, "NUMPY_VERSION": "9.9"}, root=tmp_path, arch="x86_64", run=broken)
    assert (tmp_path / "onnxruntime-cpu" / "pip-26.3-py3-none-any.whl").exists()


def test_offline_uses_what_is_there_or_says_where_to_put_it(tmp_path: Path) -> None:
    recipe = images.get_recipe("deepsparse-cpu")
    args = images.effective_build_args(recipe)
    with pytest.raises(DockerError, match="no wheelhouse at .*copy one"):
        images.prepare_wheelhouse(recipe, args, root=tmp_path, offline=True, run=FakePip())
    (tmp_path / "deepsparse-cpu").mkdir()
    (tmp_path / "deepsparse-cpu" / "x-1-py3-none-any.whl").write_bytes(b"w")
    pip = FakePip()
    assert images.prepare_wheelhouse(recipe, args, root=tmp_path, offline=True, run=pip) == tmp_path / "deepsparse-cpu"
    assert pip.calls == []


# --- the build context and the build stream -----------------------------------------------------
def test_build_context_holds_the_harness_and_only_this_wheelhouse(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    for rel in (
        "orchestrator/__init__.py",
        "orchestrator/harness/run.py",
        "images/onnxruntime-cpu/Dockerfile",
        "images/onnxruntime-cpu/requirements.txt",
        "images/common/harness-setup.sh",
        "wheelhouse/onnxruntime-cpu/a.whl",
        "wheelhouse/deepsparse-cpu/b.whl",
        "embedded/models/m.onnx",
        "tests/test_x.py",
        "runs/r/run.json",
        "orchestrator/__pycache__/x.pyc",
        "README.md",
    ):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text("x")
    (root / ".dockerignore").write_text((REPO / ".dockerignore").read_text())
    recipe = images.ImageRecipe(TARGETS["onnxruntime-cpu"], root / "images" / "onnxruntime-cpu", {})
    with tarfile.open(fileobj=images.build_context(recipe, root)) as tar:
        names = {m.name for m in tar.getmembers() if m.isfile()}
    assert names == {
        ".dockerignore",
        "orchestrator/__init__.py",
        "orchestrator/harness/run.py",
        "images/onnxruntime-cpu/Dockerfile",
        "images/onnxruntime-cpu/requirements.txt",
        "images/common/harness-setup.sh",
        "wheelhouse/onnxruntime-cpu/a.whl",
    }


STREAM_OK: list[dict[str, Any]] = [
    {"stream": "Step 1/4 : ARG BASE_IMAGE=x\n"},
    {"stream": "Step 2/4 : FROM x AS runtime\n"},
    {"stream": " ---> abc\n"},
    {"stream": "Step 3/4 : RUN sh harness-setup.sh venv\n"},
    {"stream": 'Step 4/4 : CMD ["python"]\n'},
    {"aux": {"ID": "sha256:" + "cd" * 32}},
    {"stream": "Successfully built cdcdcdcdcdcd\n"},
]
STREAM_FAIL: list[dict[str, Any]] = [
    {"stream": "Step 2/4 : FROM x AS runtime\n"},
    {"stream": "Step 3/4 : RUN sh /usr/local/lib/mlperf-bert/harness-setup.sh runtime\n"},
    {"stream": " ---> Running in 123\n"},
    {
        "stream": "harness-setup: the base image has Python 3.12 but the wheelhouse is for 3.11; pass "
        "--build-arg PYTHON_VERSION=3.12\n"
    },
    {
        "error": "The command '/bin/sh -c sh harness-setup.sh runtime' returned a non-zero code: 1",
        "errorDetail": {"message": "returned a non-zero code: 1"},
    },
]


class FakeApi:
    def __init__(self, stream: list[dict[str, Any]]) -> None:
        self.stream = stream
        self.build_kwargs: dict[str, Any] = {}
        self.tags: list[tuple[str, str, str]] = []

    def build(self, **kwargs: Any) -> Any:
        self.build_kwargs = kwargs
        return iter(self.stream)

    def tag(self, image: str, repository: str, tag: str) -> None:
        self.tags.append((image, repository, tag))


class FakeBuiltImage:
    def __init__(self, key: str = "onnxruntime-cpu", digests: list[str] | None = None) -> None:
        self.id = "sha256:" + "cd" * 32
        labels = {
            "mlperf-bert.target": key,
            "mlperf-bert.engine": "onnxruntime 1.32.0",
            "mlperf-bert.loadgen": "6.0.17",
            "mlperf-bert.python": "3.11",
            "mlperf-bert.numpy": "2.4.6",
        }
        self.attrs = {
            "Id": self.id,
            "Size": 357_000_000,
            "RepoDigests": digests or [],
            "Created": "2026-01-01",
            "Config": {"Labels": labels},
        }
        self.labels = labels
        self.tags = [f"mlperf-bert/{key}:latest", f"mlperf-bert/{key}:0.1.0"]


class FakeImagesApi:
    def __init__(self, items: list[FakeBuiltImage]) -> None:
        self.items = items
        self.filters: Any = None

    def get(self, ref: str) -> FakeBuiltImage:
        return self.items[0]

    def list(self, filters: Any = None) -> list[FakeBuiltImage]:
        self.filters = filters
        return self.items

    def prune(self, filters: Any = None) -> dict[str, Any]:
        self.pruned = filters
        return {"SpaceReclaimed": 0}


class FakeDocker:
    def __init__(self, stream: list[dict[str, Any]], items: list[FakeBuiltImage] | None = None) -> None:
        self.api = FakeApi(stream)
        self.images = FakeImagesApi(items if items is not None else [FakeBuiltImage()])


def _prepared(tmp_path: Path) -> Path:
    wh = tmp_path / "wheelhouse"
    (wh / "onnxruntime-cpu").mkdir(parents=True)
    (wh / "onnxruntime-cpu" / "pip-26.3-py3-none-any.whl").write_bytes(b"w")
    return wh


def test_build_passes_args_offline_network_and_reports_progress(tmp_path: Path) -> None:
    client = FakeDocker(STREAM_OK)
    steps: list[str] = []
    recipe = images.get_recipe("onnxruntime-cpu")
    result = images.build_image(
        recipe,
        client=client,
        base_image="mlperf-bert/base:bookworm",
        offline=True,
        wheelhouse_root=_prepared(tmp_path),
        log_dir=tmp_path / "logs",
        on_step=steps.append,
    )
    kw = client.api.build_kwargs
    assert kw["network_mode"] == "none" and kw["custom_context"] is True and kw["pull"] is False
    assert kw["dockerfile"] == "images/onnxruntime-cpu/Dockerfile" and kw["tag"] == "mlperf-bert/onnxruntime-cpu:latest"
    assert kw["buildargs"]["BASE_IMAGE"] == "mlperf-bert/base:bookworm"
    assert kw["buildargs"]["WHEELHOUSE"] == "wheelhouse/onnxruntime-cpu"
    assert kw["buildargs"]["ONNXRUNTIME_VERSION"] == recipe.build_args["ONNXRUNTIME_VERSION"]
    assert steps == [
        "Step 2/4 : FROM x AS runtime",
        "Step 3/4 : RUN sh harness-setup.sh venv",
        'Step 4/4 : CMD ["python"]',
    ]
    assert client.api.tags == [("sha256:" + "cd" * 32, "mlperf-bert/onnxruntime-cpu", "0.1.0")]
    assert client.images.pruned == {"dangling": True, "label": "mlperf-bert.target=onnxruntime-cpu"}
    assert result.size_bytes == 357_000_000 and result.image_id.startswith("sha256:cdcd")
    log = result.log_path.read_text()
    assert "Step 3/4 : RUN sh harness-setup.sh venv" in log and '"BASE_IMAGE": "mlperf-bert/base:bookworm"' in log


STREAM_STAGES: list[dict[str, Any]] = [
    {"stream": "Step 1/6 : ARG BASE_IMAGE=x\n"},
    {"stream": "Step 2/6 : FROM x AS runtime\n"},
    {"stream": " ---> 0000000000aa\n"},
    {"stream": "Step 3/6 : RUN setup runtime\n"},
    {"stream": " ---> Running in 5555\n"},
    {"stream": " ---> 1111111111aa\n"},
    {"stream": "Step 4/6 : FROM runtime AS venv\n"},
    {"stream": " ---> 1111111111aa\n"},
    {"stream": "Step 5/6 : RUN setup venv\n"},
    {"stream": " ---> Using cache\n"},
    {"stream": " ---> 2222222222aa\n"},
    {"stream": "Step 6/6 : FROM runtime\n"},
    {"stream": " ---> 1111111111aa\n"},
    {"aux": {"ID": "sha256:" + "cd" * 32}},
]


def test_build_stages_stay_tagged_for_the_cache_and_the_stage_images_they_replace_go(tmp_path: Path) -> None:
    class Images(FakeImagesApi):
        removed: list[str] = []

        def get(self, ref: str) -> Any:
            if ref == "mlperf-bert/onnxruntime-cpu:cache-venv":  # an earlier build's venv stage
                return type("Img", (), {"id": "sha256:" + "99" * 32})()
            if ref.endswith(":cache-runtime"):
                raise LookupError(ref)  # the SDK raises ImageNotFound: any error means none
            return super().get(ref)

        def remove(self, image: str) -> None:
            self.removed.append(image)

    client = FakeDocker(STREAM_STAGES)
    client.images = Images([FakeBuiltImage()])
    images.build_image(
        images.get_recipe("onnxruntime-cpu"),
        client=client,
        offline=True,
        wheelhouse_root=_prepared(tmp_path),
        log_dir=tmp_path / "logs",
        on_step=lambda line: None,
    )
    assert client.api.tags[1:] == [
        ("1111111111aa", "mlperf-bert/onnxruntime-cpu", "cache-runtime"),
        ("2222222222aa", "mlperf-bert/onnxruntime-cpu", "cache-venv"),
    ]
    assert client.images.removed == ["sha256:" + "99" * 32]  # the venv stage the tag moved from


def test_build_failure_names_the_step_the_reason_and_the_log(tmp_path: Path) -> None:
    client = FakeDocker(STREAM_FAIL)
    with pytest.raises(DockerError) as err:
        images.build_image(
            images.get_recipe("onnxruntime-cpu"),
            client=client,
            offline=True,
            wheelhouse_root=_prepared(tmp_path),
            log_dir=tmp_path / "logs",
            on_step=lambda s: None,
        )
    msg = str(err.value)
    assert "failed at Step 3/4 : RUN sh /usr/local/lib/mlperf-bert/harness-setup.sh runtime" in msg
    assert "pass --build-arg PYTHON_VERSION=3.12" in msg
    (log_path,) = (tmp_path / "logs").iterdir()
    assert str(log_path) in msg and "ERROR: The command" in log_path.read_text()


def test_missing_base_image_says_how_to_get_one(tmp_path: Path) -> None:
    stream = [
        {"stream": "Step 14/47 : FROM nvcr.io/nvidia/tensorrt:24.12-py3 AS runtime\n"},
        {"error": 'Get "https://nvcr.io/v2/": dial tcp: lookup nvcr.io: no such host'},
    ]
    with pytest.raises(DockerError, match=r"base image .* is not here and cannot be pulled.*--base-image"):
        images.build_image(
            images.get_recipe("onnxruntime-cpu"),
            client=FakeDocker(stream),
            offline=True,
            wheelhouse_root=_prepared(tmp_path),
            log_dir=tmp_path / "logs",
            on_step=lambda s: None,
        )


# --- images list ------------------------------------------------------------------------------------
def test_list_images_rows_and_not_built() -> None:
    dangling = FakeBuiltImage("deepsparse-cpu")
    dangling.tags = []
    client = FakeDocker(
        [], [FakeBuiltImage("onnxruntime-cpu", digests=["mlperf-bert/onnxruntime-cpu@sha256:ee"]), dangling]
    )
    rows = images.list_images(client)
    assert client.images.filters == {"label": "mlperf-bert.target"}
    built = [r for r in rows if r.reference]
    assert [r.reference for r in built] == ["mlperf-bert/onnxruntime-cpu:0.1.0", "mlperf-bert/onnxruntime-cpu:latest"]
    assert built[0].digest == "mlperf-bert/onnxruntime-cpu@sha256:ee"
    assert built[0].versions == {
        "engine": "onnxruntime 1.32.0",
        "loadgen": "6.0.17",
        "python": "3.11",
        "numpy": "2.4.6",
    }
    assert {r.key for r in rows if r.reference is None} == set(images.recipes()) - {"onnxruntime-cpu"}


def test_images_list_command(monkeypatch: pytest.MonkeyPatch) -> None:
    from orchestrator.cli import app
    from orchestrator.commands import images_cmd

    client = FakeDocker([], [FakeBuiltImage("onnxruntime-cpu")])
    monkeypatch.setattr(images_cmd, "connect", lambda action, otherwise=None: client)
    result = CliRunner().invoke(app, ["images", "list"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["NAME", "TAG", "DIGEST", "SIZE", "VERSIONS"]
    assert any(
        ln.startswith("onnxruntime-cpu")
        and "mlperf-bert/onnxruntime-cpu:latest" in ln
        and "357 MB" in ln
        and "onnxruntime 1.32.0, loadgen 6.0.17" in ln
        for ln in lines
    )
    assert any(
        ln.startswith("deepsparse-cpu") and "not built: mlperf-bert images build deepsparse-cpu" in ln for ln in lines
    )
    as_json = CliRunner().invoke(app, ["images", "list", "--json", "onnxruntime-cpu"])
    assert [r["reference"] for r in json.loads(as_json.output)] == [
        "mlperf-bert/onnxruntime-cpu:0.1.0",
        "mlperf-bert/onnxruntime-cpu:latest",
    ]


def test_images_list_without_an_engine_is_one_sentence_and_no_retry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from cli_support import invoke

    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")  # the real SDK, no socket there
    result = invoke(["images", "list"])
    assert result.exit_code != 0
    (line,) = [ln for ln in result.output.splitlines() if ln.strip()]
    assert (
        f"cannot reach the Docker engine at unix://{tmp_path}/no-engine.sock to list images (no socket there)" in line
    )
    assert "start it" in line and "--runner local" not in line  # `images` has no --runner
    assert not [r for r in caplog.records if "retrying" in r.getMessage()]


def test_images_build_command_reports_errors_as_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    from cli_support import invoke

    result = invoke(["images", "build", "no-such-image"])
    assert result.exit_code == 2
    assert "unknown image 'no-such-image'; choose one of onnxruntime-cpu" in result.output


def test_format_helpers() -> None:
    assert images.format_size(None) == "-" and images.format_size(357_000_000) == "357 MB"
    assert images.format_size(2_500_000_000) == "2.50 GB"
    assert format_table([("A", "BB"), ("ccc", "d")]) == "A    BB\nccc  d"
    assert images.image_digest({"Id": "sha256:1", "RepoDigests": []}) == "sha256:1"
