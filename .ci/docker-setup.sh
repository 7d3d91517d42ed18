#!/usr/bin/env bash
# Make a Docker engine and a local base image available, from Debian packages only.
#
# Idempotent and fast when already done: installs docker.io + debootstrap only when absent, starts
# dockerd in the background only when no engine answers, and bootstraps the base image only when it
# is missing. CI and the development machines reach no container registry, so the images are built
# FROM a Debian bookworm root made by debootstrap and imported with `docker import` (bookworm's
# python3 is 3.11, the same minor version as the python:3.11-slim default base).
#
#   bash .ci/docker-setup.sh            # engine + base image
#   BASE_IMAGE=name:tag bash .ci/docker-setup.sh
set -euo pipefail

BASE_IMAGE="${BASE_IMAGE:-mlperf-bert/base:bookworm}"
DEBIAN_SUITE="${DEBIAN_SUITE:-bookworm}"
DEBIAN_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
# python3 + venv + pip are baked in so the image build itself needs no Debian mirror.
BASE_PACKAGES="${BASE_PACKAGES:-python3,python3-venv,python3-pip,ca-certificates}"
DOCKERD_LOG="${DOCKERD_LOG:-/var/log/dockerd.log}"
SOCKET="${DOCKER_SOCKET:-/var/run/docker.sock}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

log() { printf '[docker-setup] %s\n' "$*" >&2; }

# Prefer the Debian client when both exist: it matches the engine installed here.
DOCKER=docker
[ -x /usr/bin/docker ] && DOCKER=/usr/bin/docker

engine_up() { $DOCKER info >/dev/null 2>&1; }

install_packages() {
  local missing=()
  command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
  command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
  command -v docker-compose >/dev/null 2>&1 || missing+=(docker-compose)
  if [ "${#missing[@]}" -gt 0 ]; then
    log "installing ${missing[*]} from Debian"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    [ -x /usr/bin/docker ] && DOCKER=/usr/bin/docker
  fi
}

start_engine() {
  if engine_up; then
    log "engine already running"
    return
  fi
  log "starting dockerd (log: $DOCKERD_LOG)"
  # setsid: the engine outlives this script (and the CI step that ran it).
  $SUDO setsid dockerd >>"$DOCKERD_LOG" 2>&1 < /dev/null &
  for _ in $(seq 1 120); do
    if [ -S "$SOCKET" ] && engine_up; then
      log "engine up: $($DOCKER version --format '{{.Server.Version}}')"
      return
    fi
    sleep 0.5
  done
  log "dockerd did not answer on $SOCKET within 60 s; last lines of $DOCKERD_LOG:"
  tail -n 20 "$DOCKERD_LOG" >&2 || true
  exit 1
}

bootstrap_base() {
  if $DOCKER image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
    log "base image $BASE_IMAGE already present"
    return
  fi
  local root
  root="$(mktemp -d /var/tmp/mlperf-bert-rootfs.XXXXXX)"
  trap '$SUDO rm -rf "$root"' RETURN
  log "debootstrap $DEBIAN_SUITE (minbase + $BASE_PACKAGES) from $DEBIAN_MIRROR"
  $SUDO debootstrap --variant=minbase --include="$BASE_PACKAGES" "$DEBIAN_SUITE" "$root" "$DEBIAN_MIRROR" \
    >"$root.log" 2>&1 || { tail -n 30 "$root.log" >&2; exit 1; }
  rm -f "$root.log"
  # Trim what an image never needs: apt lists and caches, docs, man pages.
  $SUDO rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb \
    "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/*
  log "importing as $BASE_IMAGE"
  $SUDO tar -C "$root" -c . | $DOCKER import \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["/bin/bash"]' \
    --message "debootstrap --variant=minbase $DEBIAN_SUITE + $BASE_PACKAGES" \
    - "$BASE_IMAGE" >/dev/null
  log "base image $BASE_IMAGE ready ($($DOCKER image inspect --format '{{.Size}}' "$BASE_IMAGE") bytes)"
}

install_packages
start_engine
bootstrap_base
