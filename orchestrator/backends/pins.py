"""An image folder's pins: the `ARG NAME=default` lines of its Dockerfile and the `${NAME}` requirement
lines that use them. The Docker build (orchestrator/containers/images.py) and the local runner's backend
venvs (orchestrator/runners/venvs.py) read the same pins through these two functions, so each version is
declared once.
"""

from __future__ import annotations

import re

from orchestrator.errors import ConfigError

_ARG_RE = re.compile(r"^\s*ARG\s+([A-Za-z_][A-Za-z0-9_]*)(?:=(.*))?\s*$")
_VAR_RE = re.compile(r"\$\{([A-Z0-9_]+)\}")


def parse_build_args(dockerfile_text: str) -> dict[str, str]:
    """The `ARG NAME=default` declarations (the first one with a value wins; quotes stripped)."""
    args: dict[str, str] = {}
    for line in dockerfile_text.splitlines():
        m = _ARG_RE.match(line)
        if m and m.group(2) is not None and m.group(1) not in args:
            args[m.group(1)] = m.group(2).strip().strip('"').strip("'")
    return args


def expand_requirements(text: str, args: dict[str, str], source: str = "requirements.txt") -> list[str]:
    """Requirement lines with `${NAME}` replaced by the build args, comments and blanks dropped."""
    lines: list[str] = []
    for raw in text.splitlines():
        line = raw.split(" #", 1)[0].strip() if not raw.lstrip().startswith("#") else ""
        if not line:
            continue

        def sub(m: re.Match[str]) -> str:
            name = m.group(1)
            if name not in args:
                raise ConfigError(
                    f"{source} uses ${{{name}}} but the Dockerfile declares no such build arg; add `ARG {name}=...`"
                )
            return args[name]

        lines.append(_VAR_RE.sub(sub, line))
    return lines
