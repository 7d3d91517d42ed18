#!/bin/sh
# Shared build steps of every image (POSIX sh: bases differ: python slim, Debian, Ubuntu/NGC, ROCm).
#
#   harness-setup.sh runtime   check the base's Python (and glibc) match what the wheelhouse was made
#                              for, and add the non-root user
#   harness-setup.sh venv      make /opt/venv from the wheelhouse with no network: pip itself comes from
#                              the wheelhouse too, so the base needs neither pip nor ensurepip
#
# Inputs are the build args, which Docker exposes to RUN as environment variables:
# PYTHON_VERSION, GLIBC_VERSION, IMAGE_UID, VENV_SYSTEM_SITE (1: see the base's packages, e.g. tensorrt).
set -eu

build=/tmp/build
venv=/opt/venv

die() { echo "harness-setup: $*" >&2; exit 1; }

runtime() {
  if ! command -v python3 >/dev/null 2>&1; then
    # Only a base without Python gets here; apt needs a Debian/Ubuntu mirror, so say what to do offline.
    if command -v apt-get >/dev/null 2>&1 && apt-get update >/dev/null 2>&1; then
      DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3 >/dev/null
      rm -rf /var/lib/apt/lists/*
    else
      die "the base image has no python3 and no package mirror is reachable; use a base with python3 (bash .ci/docker-setup.sh makes one) or build with --allow-network"
    fi
  fi
  have=$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
  [ "$have" = "$PYTHON_VERSION" ] || die "the base image has Python $have but the wheelhouse is for $PYTHON_VERSION; pass --build-arg PYTHON_VERSION=$have"
  if [ -n "${GLIBC_VERSION:-}" ] && command -v getconf >/dev/null 2>&1; then
    glibc=$(getconf GNU_LIBC_VERSION | awk '{print $2}')
    # The wheelhouse holds manylinux wheels up to GLIBC_VERSION: the base must have at least that.
    python3 - "$glibc" "$GLIBC_VERSION" <<'PY' || die "the base image has glibc $glibc, older than the wheelhouse's $GLIBC_VERSION; pass --build-arg GLIBC_VERSION=$glibc"
import sys
have, want = (tuple(int(p) for p in v.split(".")[:2]) for v in sys.argv[1:3])
sys.exit(0 if have >= want else 1)
PY
  fi
  if ! getent passwd mlperf >/dev/null 2>&1; then
    useradd --uid "${IMAGE_UID:-10001}" --user-group --create-home --shell /bin/sh mlperf
  fi
}

venv() {
  flags="--without-pip"
  [ "${VENV_SYSTEM_SITE:-0}" = "1" ] && flags="$flags --system-site-packages"
  # shellcheck disable=SC2086
  python3 -m venv $flags "$venv"
  pipwhl=$(ls "$build"/wheelhouse/pip-*.whl 2>/dev/null | head -n 1)
  [ -n "$pipwhl" ] || die "the wheelhouse has no pip wheel; prepare it with mlperf-bert images build"
  # Option lines (--find-links URL, --extra-index-url) served the host's download only.
  grep -v '^[[:space:]]*-' "$build/requirements.txt" > "$build/requirements.offline.txt"
  # pip expands ${VAR} in requirements files from the environment: the version build args.
  "$venv/bin/python" "$pipwhl/pip" install --no-index --find-links "$build/wheelhouse" \
    --no-cache-dir --disable-pip-version-check --no-warn-script-location --quiet \
    -r "$build/requirements.offline.txt"
  "$venv/bin/python" -m pip freeze --all > "$venv/requirements.freeze.txt"
}

case "${1:-}" in
  runtime) runtime ;;
  venv) venv ;;
  *) die "usage: harness-setup.sh runtime|venv" ;;
esac
