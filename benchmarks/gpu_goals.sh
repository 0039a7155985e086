#!/usr/bin/env bash
# The fast-inference goals (issue 15) on one CUDA GPU, in one command:
#     bash benchmarks/gpu_goals.sh results/<device>-<date>
# H100, bf16, batch 1, random weights, one 1920x1080 image + 64 text tokens, 128 new tokens:
#   check     pytest tests/test_engines_cuda.py (CUDA graphs give eager's ids, nvJPEG's pixels), into check.log
#   decode    NVILA-8B, engines compiled / hf-static / hf-generate / eager side by side (same weights, context)
#   prefill   NVILA-8B and NVILA-Lite-2B: GPU preprocessing with the compiled, eager and hf-static engines;
#             the CPU (PIL) preprocessing baseline
#   file      NVILA-8B prefill of a real 1920x1080 JPEG (--image-file): decoding it (nvJPEG) inside TTFT
#   A/A       five pairs of one prefill and one decode point through `gate --threshold 5%`
# then the HTML report of it all. Needs the package installed (pip install -e .) and a CUDA GPU.
set -euo pipefail
OUT=${1:?usage: gpu_goals.sh OUT_DIR}
NB="python3 -m nvila_bench"
COMMON=(--device cuda --image 1920x1080 --prompt-tokens 64 --min-seconds 2 --out "$OUT")
python3 -m pytest -q tests/test_engines_cuda.py 2>&1 | tee "$OUT/check.log" || echo "check failed: $OUT/check.log"
$NB ceilings --device cuda --out "$OUT"
$NB run decode --preset nvila-8b --new-tokens 128 --engine compiled --engine hf-static --engine hf-generate --engine eager "${COMMON[@]}"
$NB run prefill --preset nvila-8b --preset nvila-lite-2b --preprocess gpu --engine compiled --engine eager --engine hf-static "${COMMON[@]}"
$NB run prefill --preset nvila-8b --preset nvila-lite-2b --preprocess cpu --engine eager "${COMMON[@]}"
python3 -c "import sys, numpy as np; from PIL import Image; rng = np.random.default_rng(0); Image.fromarray(rng.integers(0, 256, (68, 120, 3), dtype=np.uint8)).resize((1920, 1080), Image.BICUBIC).save(sys.argv[1], quality=90)" "$OUT/street.jpg"
$NB run prefill --preset nvila-8b --image-file "$OUT/street.jpg" --preprocess gpu --engine compiled --device cuda --prompt-tokens 64 --min-seconds 2 --out "$OUT"
python3 benchmarks/aa_pairs.py "$OUT/aa" --suite decode --preset nvila-lite-2b --pairs 5 | tee "$OUT/aa-decode.txt"
python3 benchmarks/aa_pairs.py "$OUT/aa" --suite prefill --preset nvila-lite-2b --pairs 5 | tee "$OUT/aa-prefill.txt"
$NB report "$OUT/results.jsonl" --out "$OUT/report.html"
