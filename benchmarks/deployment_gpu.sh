#!/usr/bin/env bash
# The deployment ladder goals (issue 16) on one CUDA GPU, in one command:
#     bash benchmarks/deployment_gpu.sh results/<device>-<date>-deployment
# NVILA-8B (and its scaled-only variant and VILA1.5-8B baseline), bf16 activations, batch 1, one 1920x1080
# image + 64 text tokens and one 64-frame video, 128 new tokens; every rung with the compiled engine and with
# transformers' generate(cache_implementation="static") on the same quantized weights (the
# "transformers + torchao" peer). Needs torchao 0.18 (carry its wheel where the image lacks it:
# pip download --no-deps torchao==0.18.0) and the package installed (pip install -e .).
# Time: on an H100 a quantized NVILA-8B rung's first record took over 280 s (quantizing, compiling, and its bf16
# quality reference); the whole ladder (7 rungs x 2 requests x 2 engines) needs well over 30 minutes. Where a
# machine is lent for less, run it in parts: --rung NAME (repeatable) and --media image|video.
set -euo pipefail
OUT=${1:?usage: deployment_gpu.sh OUT_DIR}
NB="python3 -m nvila_bench"
$NB ceilings --device cuda --out "$OUT"
$NB run deployment --preset nvila-8b --device cuda --image 1920x1080 --video-frames 64 --prompt-tokens 64 \
    --new-tokens 128 --engine compiled --engine hf-static --min-seconds 2 --out "$OUT"
$NB report "$OUT/results.jsonl" --out "$OUT/report.html"
