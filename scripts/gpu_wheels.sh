#!/usr/bin/env bash
# Fetch as wheels what `benchmarks/gpu_check.py` needs beyond the GPU image's packages (Python
# 3.12 with torch, transformers, accelerate, peft, safetensors, pytest): pydantic, typer, rich
# and their dependencies, for CPython 3.12 on x86-64 Linux, into wheels/ (ignored by git, a
# few MiB). On the GPU machine, without network:
#   pip install --no-index --find-links wheels pydantic typer rich
#   pip install --no-deps --no-build-isolation -e .   # or nothing: gpu_check.py uses src/
#   python benchmarks/gpu_check.py --out "$OUT/gpu_check.json"
set -euo pipefail
cd "$(dirname "$0")/.."
dest=${1:-wheels}
.venv/bin/pip download -q -c .ci/constraints.txt --dest "$dest" --only-binary=:all: \
    --implementation cp --python-version 3.12 --abi cp312 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    "pydantic>=2.6" "typer>=0.12" "rich>=13.0"
du -sh "$dest"
