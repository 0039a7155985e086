#!/usr/bin/env bash
# The wheels a GPU machine without a package registry needs beside its image (torch, transformers, ...) for
# the deployment parts, into .whl/ (ignored by git; carry it):
#     bash benchmarks/gpu_wheels.sh [PYTHON_VERSION]     # the GPU image's Python: 3.12 by default
# torchao 0.18 (quantized weights), fastjsonschema (result records), gemlite 0.6 (the W4A16 kernel: a pure
# Python sdist, built into a wheel here). Install there with
#     python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
#     export PYTHONPATH=/tmp/site
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${1:-3.12}
GET=(python3 -m pip download -q --no-deps --only-binary=:all: --python-version "$PY" --implementation cp -d .whl)
mkdir -p .whl
"${GET[@]}" --platform manylinux2014_x86_64 fastjsonschema==2.22.3
"${GET[@]}" --platform manylinux_2_28_x86_64 torchao==0.18.0
src=$(mktemp -d)
python3 -m pip download -q --no-deps --no-binary=:all: -d "$src" gemlite==0.6.0.post2
python3 -m pip wheel -q --no-deps -w .whl "$src"/gemlite-0.6.0.post2.tar.gz
rm -rf "$src"
ls -l .whl
