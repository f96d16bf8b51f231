#!/usr/bin/env bash
# The GPU check on the GPU machine (docs/gpu.md): the report and the log go to the folder given, else $OUT.
#     bash scripts/gpu_check.sh "$OUT"              # .gpu_carry/ (scripts/gpu_carry.sh) carried along
#     bash scripts/gpu_check.sh "$OUT" --steps setup,experiment_bf16   # some steps only (setup always runs)
set -u
out=${1:-${OUT:-outputs/gpu_check}}
shift || true
export PYTHONUNBUFFERED=1
exec "${PYTHON:-python3}" "$(dirname "$0")/gpu_check.py" --out "$out" "$@"
