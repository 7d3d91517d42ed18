"""Write what follows from the registry: each image's Dockerfile, compose's services, the CI matrix.

    python -m orchestrator.backends.render           # rewrite the generated files
    python -m orchestrator.backends.render --check   # list the stale ones, exit 1 if any (what CI's tests do)

Docker has no include, so each `images/<key>/Dockerfile` is rendered from the shared skeleton
(images/common/Dockerfile.skeleton) and the target's fragment (images/<key>/Dockerfile.in): the fragment
declares the target's base and version build args and adds lines to the venv stage (after `# @venv`) and
to the final image (after `# @final`); the skeleton holds the stages every image shares and the pins every
image shares. Each stage redeclares exactly the build args it uses, so a version is declared once.

compose/docker-compose.yml and .github/workflows/ci.yml are hand-written apart from one region each
(between the BEGIN and END lines), which is rendered from TARGETS.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
import tomllib
from collections.abc import Iterable
from pathlib import Path

from orchestrator import __version__
from orchestrator.assets.catalogue import load_catalogue
from orchestrator.backends import TARGETS, Target
from orchestrator.errors import ConfigError
from orchestrator.paths import REPO_ROOT

log = logging.getLogger(__name__)

SKELETON = Path("images/common/Dockerfile.skeleton")
FRAGMENT = "Dockerfile.in"
COMPOSE = Path("compose/docker-compose.yml")
CI = Path(".github/workflows/ci.yml")
COMMAND = "python -m orchestrator.backends.render"
BEGIN = f"# BEGIN rendered by `{COMMAND}` from orchestrator/backends: edit the registry, not this block"
END = "# END rendered"
VENV_MARK = "# @venv"
FINAL_MARK = "# @final"
# The fragment names the base: the runtime stage and the wheelhouse download need them.
REQUIRED_ARGS = ("BASE_IMAGE", "PYTHON_VERSION", "GLIBC_VERSION")
# Never in the venv stage: a new commit or version of this project must not rebuild the venv.
_NOT_IN_VENV = {"GIT_SHA", "MLPERF_BERT_VERSION"}

_ARG_DEFAULT = re.compile(r"^ARG ([A-Z0-9_]+)=", re.MULTILINE)
_USE = re.compile(r"\$\{([A-Z0-9_]+)\}")
_LOADGEN_PIN = re.compile(r"^mlcommons-loadgen==(\S+)$")


def image_keys(repo_root: Path = REPO_ROOT) -> list[str]:
    """The registry targets that have an image fragment, in registry order."""
    return [key for key in TARGETS if (repo_root / "images" / key / FRAGMENT).is_file()]


def loadgen_pin(repo_root: Path = REPO_ROOT) -> str:
    """The harness's LoadGen pin, from pyproject.toml (its seeds are tied to a round: one pin everywhere)."""
    project = tomllib.loads((repo_root / "pyproject.toml").read_text())["project"]
    for dep in project["dependencies"]:
        found = _LOADGEN_PIN.match(dep.replace(" ", ""))
        if found:
            return found.group(1)
    raise ConfigError("pyproject.toml pins no mlcommons-loadgen==X; pin it there, the images take it from there")


def split_fragment(text: str, source: str) -> tuple[str, str, str]:
    """The fragment's head (header and build args), its venv-stage lines and its final-stage lines."""
    parts: dict[str, list[str]] = {"head": [], "venv": [], "final": []}
    part = "head"
    for line in text.splitlines():
        if line.strip() in (VENV_MARK, FINAL_MARK):
            new = "venv" if line.strip() == VENV_MARK else "final"
            if parts[new] or (new == "venv" and part == "final"):
                raise ConfigError(
                    f"{source}: `{line.strip()}` is out of place; write `{VENV_MARK}` then `{FINAL_MARK}`, each once"
                )
            part = new
            continue
        parts[part].append(line)
    head, venv, final = ("\n".join(parts[p]).strip("\n") for p in ("head", "venv", "final"))
    return head, venv, final


def _declared(text: str) -> list[str]:
    return _ARG_DEFAULT.findall(text)


def _uses(*texts: str) -> set[str]:
    """The build args that lines other than comments name as ${NAME}."""
    code = [ln for text in texts for ln in text.splitlines() if not ln.lstrip().startswith("#")]
    return {name for line in code for name in _USE.findall(line)}


def _arg_lines(names: Iterable[str]) -> str:
    return "\n".join(f"ARG {name}" for name in names)


def render_dockerfile(target: Target, repo_root: Path = REPO_ROOT) -> str:
    folder = repo_root / "images" / target.key
    source = f"images/{target.key}/{FRAGMENT}"
    head, venv_lines, final_lines = split_fragment((folder / FRAGMENT).read_text(), source)
    skeleton = (repo_root / SKELETON).read_text()
    requirements = (folder / "requirements.txt").read_text()
    own, common = _declared(head), _declared(skeleton)
    twice = sorted({n for n in own if own.count(n) > 1} | (set(own) & set(common)))
    if twice:
        raise ConfigError(f"{source} declares {', '.join(twice)} a second time (see {SKELETON}); declare each once")
    missing = [name for name in REQUIRED_ARGS if name not in own]
    if missing:
        raise ConfigError(f"{source} declares no {', '.join(missing)}; add `ARG NAME=...` for the base image")
    order = own + common
    final_skeleton = skeleton.split("FROM runtime\n", 1)[1]
    venv_uses = _uses(requirements, venv_lines) | {"WHEELHOUSE"}
    final_uses = _uses(final_lines, final_skeleton)
    undeclared = sorted((venv_uses | final_uses) - set(order))
    if undeclared:
        raise ConfigError(
            f"{source} or its requirements.txt use {', '.join(undeclared)}, which no ARG declares; "
            f"add `ARG NAME=...` to {source}"
        )
    filled = {
        "@HEAD@": f"# GENERATED by `{COMMAND}` from {source} and {SKELETON}: edit those, then run it.\n{head}",
        "@VENV_ARGS@": _arg_lines(n for n in order if n in venv_uses and n not in _NOT_IN_VENV),
        "@VENV_LINES@": venv_lines,
        "@FINAL_ARGS@": _arg_lines(n for n in order if n in final_uses),
        "@FINAL_LINES@": final_lines,
        "@VERIFIED_LABEL@": "" if target.verified else ' \\\n      mlperf-bert.verified="false"',
        "@LOADGEN_VERSION@": loadgen_pin(repo_root),
        "@MLPERF_BERT_VERSION@": __version__,
        "@KEY@": target.key,
        "@BACKEND@": target.backend,
        "@DEVICE@": target.device,
    }
    lines = []
    for line in skeleton.splitlines():
        if line in filled and not filled[line]:
            continue  # an empty fragment part: no blank line inside the stage
        for token, value in filled.items():
            line = line.replace(token, value)
        lines.append(line)
    return "\n".join(lines) + "\n"


def _compose_service(target: Target) -> list[str]:
    key = target.key
    lines = []
    if not target.verified:
        lines.append(f"# Unverified: {target.notes}.")
    if target.gpu == "nvidia":
        lines.append("# Needs the NVIDIA Container Toolkit (the Docker runner's `--gpus all`).")
    if target.gpu == "amd":
        lines += [
            "# The runner adds the host's numeric groups of /dev/kfd and /dev/dri; here set MLPERF_BERT_RENDER_GID",
            "# to the render node's group (`stat -c %g /dev/dri/renderD128`); its default, 44, is the video",
            "# group of Debian and Ubuntu.",
        ]
    lines += [
        f"{key}:",
        "  <<: *harness",
        f"  profiles: [{key}, {'gpu' if target.gpu else 'cpu'}]",
        f"  image: {target.image}:latest",
        "  build:",
        "    context: ..",
        f"    dockerfile: images/{key}/Dockerfile",
        "    network: none",
    ]
    if target.gpu == "nvidia":
        lines += [
            "  deploy:",
            "    resources:",
            "      reservations:",
            "        devices:",
            "          - driver: nvidia",
            "            count: all",
            "            capabilities: [gpu]",
        ]
    if target.gpu == "amd":
        lines += [
            "  devices:",
            "    - /dev/kfd:/dev/kfd",
            "    - /dev/dri:/dev/dri",
            "  group_add:",
            "    - video",
            '    - "${MLPERF_BERT_RENDER_GID:-44}"',
        ]
    return lines


def render_compose_services(keys: Iterable[str]) -> str:
    blocks = ["\n".join(_compose_service(TARGETS[key])) for key in keys]
    return "\n\n".join(blocks)


def _fetch_needed(model: str) -> bool:
    """Whether CI must download the model (an embedded one is in the checkout)."""

    return load_catalogue().get(model, "model").embedded is None


def _yaml_runs_on(runs_on: str | tuple[str, ...]) -> str:
    return runs_on if isinstance(runs_on, str) else f"[{', '.join(runs_on)}]"


def render_ci_matrix(keys: Iterable[str]) -> str:
    lines: list[str] = []
    for key in keys:
        target = TARGETS[key]
        job = target.ci
        if job is None:
            continue
        lines += [
            f"- image: {key}",
            f"  backend: {target.backend}",
            f"  device: {target.device}",
            f"  runs-on: {_yaml_runs_on(job.runs_on)}",
            f'  model: "{job.model or ""}"',
            f"  fetch: {'true' if job.model and _fetch_needed(job.model) else 'false'}",
            f"  queries: {job.query_count}",
            f'  tests: "{" ".join(job.container_tests)}"',
        ]
    return "\n".join(lines)


def replace_region(text: str, body: str, source: str) -> str:
    """`text` with the lines between BEGIN and END replaced by `body`, indented like the BEGIN line."""
    lines = text.splitlines(keepends=True)
    begins = [i for i, ln in enumerate(lines) if ln.strip() == BEGIN]
    ends = [i for i, ln in enumerate(lines) if ln.strip() == END]
    if len(begins) != 1 or len(ends) != 1 or ends[0] < begins[0]:
        raise ConfigError(f"{source} needs one `{BEGIN}` line and one `{END}` line after it; restore them")
    indent = lines[begins[0]][: len(lines[begins[0]]) - len(lines[begins[0]].lstrip())]
    inner = [f"{indent}{ln}".rstrip() + "\n" if ln.strip() else "\n" for ln in body.splitlines()]
    return "".join(lines[: begins[0] + 1] + inner + lines[ends[0] :])


def rendered_files(repo_root: Path = REPO_ROOT) -> dict[Path, str]:
    """Every generated file (absolute path) and the text it must have."""
    keys = image_keys(repo_root)
    out = {repo_root / "images" / key / "Dockerfile": render_dockerfile(TARGETS[key], repo_root) for key in keys}
    compose, ci = repo_root / COMPOSE, repo_root / CI
    out[compose] = replace_region(compose.read_text(), render_compose_services(keys), str(COMPOSE))
    out[ci] = replace_region(ci.read_text(), render_ci_matrix(keys), str(CI))
    return out


def stale_files(repo_root: Path = REPO_ROOT) -> list[Path]:
    return [path for path, text in rendered_files(repo_root).items() if not path.is_file() or path.read_text() != text]


def write_files(repo_root: Path = REPO_ROOT) -> list[Path]:
    """Rewrite the stale generated files; the ones written."""
    written = []
    for path, text in rendered_files(repo_root).items():
        if not path.is_file() or path.read_text() != text:
            path.write_text(text)
            written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=COMMAND, description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="list stale generated files and exit 1 if any")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        if args.check:
            stale = stale_files()
            for path in stale:
                log.error("%s is stale; run `%s`", path.relative_to(REPO_ROOT), COMMAND)
            return 1 if stale else 0
        written = write_files()
        for path in written:
            log.info("wrote %s", path.relative_to(REPO_ROOT))
        if not written:
            log.info("every generated file is up to date")
        return 0
    except ConfigError as exc:
        log.error("%s", exc)
        return 2


if __name__ == "__main__":
    sys.exit(main())
