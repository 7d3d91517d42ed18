#!/usr/bin/env bash
# The GPU device check (benchmarks/gpu_check.py): --plan anywhere, --fetch-wheels here, no flag on the GPU
# machine. On the device tool: carry benchmarks/.gpu-wheels and run `bash benchmarks/gpu_check.sh --out $OUT`
# with timeout_s=330 (the check stops starting steps after 270 s), which leaves a rerun within 15 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
exec "${PYTHON:-python3}" benchmarks/gpu_check.py "$@"
