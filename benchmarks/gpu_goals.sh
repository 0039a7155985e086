#!/usr/bin/env bash
# The fast-inference goals (issue 15) on one CUDA GPU, in one command:
#     bash benchmarks/gpu_goals.sh results/<device>-<date> [PART[,PART...]]
# H100, bf16, batch 1, random weights, one 1920x1080 image + 64 text tokens, 128 new tokens:
#   check     pytest tests/test_engines_cuda.py (CUDA graphs give eager's ids, nvJPEG's pixels), into check.log
#   prefill   NVILA-8B and NVILA-Lite-2B: GPU preprocessing with the compiled, eager and hf-static engines
#   decode    NVILA-8B, engines compiled / hf-static / hf-generate / eager side by side (same weights, context)
#   cpu       the CPU (PIL) preprocessing baseline of the prefill, eager
#   file      NVILA-8B prefill of a real 1920x1080 JPEG (--image-file): decoding it (nvJPEG) inside TTFT
#   aa        five pairs of one prefill and one decode point through `gate --threshold 5%`
#   probe     benchmarks/decode_variants.py: the LLM prefill variants (transformers' eager forward vs the
#             compiled engine's, with and without a graph) and the compiled vision tower, with their kernels
#   all       (default) every part but probe; after any part, the HTML report and the goals table (goals.md)
# Needs the package installed (pip install -e .) and a CUDA GPU; `aa` and the report read records, which needs
# fastjsonschema (benchmarks/gpu_wheels.sh fetches its wheel: the GPU image lacks it). With 10-minute commands,
# run it in parts, e.g. check,prefill then decode,file then aa (benchmarks/NOTES.md, "The next GPU session").
set -euo pipefail
OUT=${1:?usage: gpu_goals.sh OUT_DIR [all|check|prefill|decode|cpu|file|aa|probe][,...]}
PART=${2:-all}
NB="python3 -m nvila_bench"
COMMON=(--device cuda --image 1920x1080 --prompt-tokens 64 --min-seconds 2 --out "$OUT")
PARTS=(check prefill decode cpu file aa probe)
for p in ${PART//,/ }; do
  [[ $p == all || " ${PARTS[*]} " == *" $p "* ]] || { echo "gpu_goals.sh: unknown part $p (known: all ${PARTS[*]})" >&2; exit 2; }
done
run() { [[ ,$PART, == *,all,* && $1 != probe || ,$PART, == *,"$1",* ]]; }
go() { local name=$1; shift; "$@" || echo "gpu_goals.sh: $name exited $?; going on" >&2; }  # a failed part costs no other
READS=1; python3 -c "import fastjsonschema" 2>/dev/null || READS=0
if run aa && (( ! READS )); then echo "gpu_goals.sh: part aa runs the gate, which reads records with fastjsonschema: install it (benchmarks/gpu_wheels.sh)" >&2; exit 2; fi
mkdir -p "$OUT"
[[ -f "$OUT/ceilings.json" ]] || $NB ceilings --device cuda --out "$OUT"  # the suites' rooflines need them
run check && { python3 -m pytest -q tests/test_engines_cuda.py 2>&1 | tee "$OUT/check.log" || echo "check failed: $OUT/check.log"; }
run prefill && go prefill $NB run prefill --preset nvila-8b --preset nvila-lite-2b --preprocess gpu --engine compiled --engine eager --engine hf-static "${COMMON[@]}"
run decode && go decode $NB run decode --preset nvila-8b --new-tokens 128 --engine compiled --engine hf-static --engine hf-generate --engine eager "${COMMON[@]}"
run cpu && go cpu $NB run prefill --preset nvila-8b --preset nvila-lite-2b --preprocess cpu --engine eager "${COMMON[@]}"
if run file; then
  python3 -c "import sys, numpy as np; from PIL import Image; rng = np.random.default_rng(0); Image.fromarray(rng.integers(0, 256, (68, 120, 3), dtype=np.uint8)).resize((1920, 1080), Image.BICUBIC).save(sys.argv[1], quality=90)" "$OUT/street.jpg"
  go file $NB run prefill --preset nvila-8b --image-file "$OUT/street.jpg" --preprocess gpu --engine compiled --device cuda --prompt-tokens 64 --min-seconds 2 --out "$OUT"
fi
if run aa; then
  python3 benchmarks/aa_pairs.py "$OUT/aa" --suite decode --preset nvila-lite-2b --pairs 5 2>&1 | tee "$OUT/aa-decode.txt" || echo "aa decode: aa_pairs.py failed, or a pair was not compared ($OUT/aa-decode.txt)"
  python3 benchmarks/aa_pairs.py "$OUT/aa" --suite prefill --preset nvila-lite-2b --pairs 5 2>&1 | tee "$OUT/aa-prefill.txt" || echo "aa prefill: aa_pairs.py failed, or a pair was not compared ($OUT/aa-prefill.txt)"
fi
run probe && go probe python3 benchmarks/decode_variants.py "$OUT/probe" prefill:nvila-8b:eager,fast,fast-graph vision:layers,fast,fast-noepilogue prefill:nvila-lite-2b:eager,fast kernels
if [[ -f "$OUT/results.jsonl" ]]; then
  if (( READS )); then
    go report $NB report "$OUT/results.jsonl" --out "$OUT/report.html"
    go goals python3 benchmarks/goals.py "$OUT" --write  # the goals met, missed or unmeasured: OUT/goals.md
  else
    echo "no report or goals table: reading records needs fastjsonschema (run them where it is installed)"
  fi
fi
