#!/usr/bin/env bash
# The deployment ladder goals (issue 16) on one CUDA GPU, in one command:
#     bash benchmarks/deployment_gpu.sh results/<device>-<date>-deployment [PART]
# NVILA-8B (and its scaled-only variant and VILA1.5-8B baseline), bf16 activations, batch 1, one 1920x1080
# image + 64 text tokens and one 64-frame video, 128 new tokens.
#   check    pytest tests/test_quantize_cuda.py tests/test_engines_cuda.py: each CUDA format's bytes, logits and
#            compiled ids, the CUDA graphs' ids, nvJPEG's pixels (tiny model)
#   kernels  benchmarks/int4_kernels.py: bf16 vs tinygemm vs gemlite per Qwen2-7B linear, M = 1 and 3137 (~3 min)
#   w4a16    the goals' two rungs alone (bf16 and W4A16 LLM on the default kernel), image, round-to-nearest scales
#            (speed does not depend on them; the CPU checkpoint measures their quality): a 15-minute session's run
#   image    the whole ladder for the image request, compiled engine, W4A16 on gemlite where installed
#   video    the same for the 64-frame video request
#   tinygemm the W4A16 rung on tinygemm in our compiled engine (the kernel choice, measured)
#   lmhead   the W4A16 rung with an int4 LM head too (--lm-head quantized: 0.8 GB less read per step)
#   peer     transformers' generate(cache_implementation="static") on the same weights, bf16 and W4A16 on
#            tinygemm: the "transformers + torchao int4" peer of the goals (its prefill of 3,137 tokens on
#            tinygemm took 1.57 s on an H100)
#   all      (default) every part but w4a16, then the report. PART may list several: check,kernels
# Needs torchao 0.18 and, for the gemlite kernel, gemlite 0.6 (pure Python on Triton); where the machine has
# no registry, carry their wheels (bash benchmarks/gpu_wheels.sh puts them in .whl/).
# Time: a quantized NVILA-8B rung takes minutes (quantizing, compiling, its bf16 quality reference); the
# whole ladder needs well over 30 minutes. Each part fits one 10-minute command except image and video:
# split those with --rung by hand where commands are capped.
set -euo pipefail
OUT=${1:?usage: deployment_gpu.sh OUT_DIR [all|check|kernels|w4a16|image|video|tinygemm|lmhead|peer][,...]}
PART=${2:-all}
NB="python3 -m nvila_bench"
COMMON=(--preset nvila-8b --device cuda --image 1920x1080 --video-frames 64 --prompt-tokens 64 --new-tokens 128 --min-seconds 2)
PARTS=(check kernels w4a16 image video tinygemm lmhead peer)
for p in ${PART//,/ }; do
  [[ $p == all || " ${PARTS[*]} " == *" $p "* ]] || { echo "deployment_gpu.sh: unknown part $p (known: all ${PARTS[*]})" >&2; exit 2; }
done
run() { [[ ,$PART, == *,all,* && $1 != w4a16 || ,$PART, == *,"$1",* ]]; }
go() { local name=$1; shift; "$@" || echo "deployment_gpu.sh: $name exited $?; going on" >&2; }  # a failed part costs no other
mkdir -p "$OUT"
if run w4a16 || run image || run video || run tinygemm || run lmhead || run peer; then  # the suites' rooflines need them
  [[ -f "$OUT/ceilings.json" ]] || $NB ceilings --device cuda --out "$OUT"
fi
run check && { python3 -m pytest -q tests/test_quantize_cuda.py tests/test_engines_cuda.py 2>&1 | tee "$OUT/check.log" || echo "check failed: $OUT/check.log"; }
run kernels && go kernels python3 benchmarks/int4_kernels.py "$OUT"
run w4a16 && go w4a16 $NB run deployment "${COMMON[@]}" --media image --engine compiled --rung bf16 --rung w4a16-llm --scales none --out "$OUT"
run image && go image $NB run deployment "${COMMON[@]}" --media image --engine compiled --out "$OUT"
run video && go video $NB run deployment "${COMMON[@]}" --media video --engine compiled --out "$OUT"
run tinygemm && go tinygemm $NB run deployment "${COMMON[@]}" --media image --engine compiled --rung w4a16-llm --int4-kernel tinygemm --out "$OUT"
run lmhead && go lmhead $NB run deployment "${COMMON[@]}" --media image --engine compiled --rung w4a16-llm --lm-head quantized --out "$OUT"
run peer && go peer $NB run deployment "${COMMON[@]}" --media image --engine hf-static --rung bf16 --rung w4a16-llm --int4-kernel tinygemm --out "$OUT"
[[ ! -f "$OUT/results.jsonl" ]] || go report $NB report "$OUT/results.jsonl" --out "$OUT/report.html"
