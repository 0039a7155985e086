#!/usr/bin/env bash
# One lent-GPU session in one command: the parts below in priority order, each under its own timeout taken
# from the budget left, so a hang or a slow compile costs only its own part.
#     bash benchmarks/gpu_session.sh OUT [BUDGET_S] [PART[,PART...]]
# BUDGET_S (default 540): the seconds this script may take; the machine's start is outside it, so give the
#   device call a timeout_s ~20 s longer. PART: only these parts (a rerun of the failed ones), in table order.
# On the device (carry .whl from benchmarks/gpu_wheels.sh; the tool returns at most 8 files from $OUT):
#     BUNDLE=$OUT bash benchmarks/gpu_session.sh /tmp/session 540
#   BUNDLE: after every part, goals.md, report.html and the whole OUT as session.tar.gz are copied there.
# First: the carried wheels (WHEELS, default .whl/) into a private site, the package (pip install -e .), and
# the GPU, driver, torch, triton, torchao and gemlite versions (OUT/versions.txt). Then each part with NEED
# and CEILING seconds: it starts only if NEED seconds (its first record) are left, and is cut at
# min(CEILING, left), where left = BUDGET_S - seconds spent - RESERVE (the last goals.md and report). The
# times are planned from the logged setup times (benchmarks/NOTES.md, "One GPU session");
# GPU_SESSION_PACE=P scales them all to P% (the tests use 1). A part writes its records as it goes, so a cut
# part keeps its finished points. After every part, cut or not: OUT/goals.md (benchmarks/goals.py: issue 15's
# and 16's goals, the versions, the parts' outcomes in OUT/parts.txt) and OUT/report.html. Each part's output
# is in OUT/logs/PART.log. A new part is one `part` line.
set -uo pipefail
ME=gpu_session.sh
die() { echo "$ME: error: $*" >&2; exit 2; }
say() { echo "$ME: $*"; }
(( $# >= 1 && $# <= 3 )) && [[ -n $1 ]] || die "usage: gpu_session.sh OUT [BUDGET_S] [PART[,PART...]]"

POINT="--device cuda --image 1920x1080 --prompt-tokens 64 --preprocess gpu --min-seconds 2"
DECODE="--new-tokens 128 $POINT"
LADDER="--preset nvila-8b --media image --scales none $DECODE"  # speed does not depend on the scales
# NVILA-8B beside Qwen2-VL-7B and Qwen2.5-VL-7B in one run per part (the report pairs a run's records): issue 30
PEERS="--preset nvila-8b --preset qwen2-vl-7b --preset qwen2.5-vl-7b --scales none $DECODE"
AA="python3 benchmarks/aa_pairs.py --preset nvila-lite-2b --pairs 5 --processes 2"
nb() { python3 -m nvila_bench "$@" --out "$OUT"; }
NAMES=()
declare -A NEED CEILING COMMAND
part() { NAMES+=("$1"); NEED[$1]=$2; CEILING[$1]=$3; COMMAND[$1]=$4; }
# name         need ceiling  command (bash -c under `timeout`; nb: python3 -m nvila_bench ... --out "$OUT")
part ceilings      15  40 'nb ceilings --device cuda'
part decode        65 130 'nb run decode --preset nvila-8b --engine compiled --engine hf-static $DECODE'
part ttft          70 100 'nb run prefill --preset nvila-8b --engine compiled $POINT'
part w4a16        110 270 'nb run deployment $LADDER --engine compiled --rung bf16 --rung w4a16-llm'
part torchao-peer 170 210 'nb run deployment $LADDER --engine hf-static --rung w4a16-llm --int4-kernel tinygemm'
part vila-prefill  45  70 'nb run prefill --preset vila1.5-8b --engine compiled $POINT'
part vila-decode   50  80 'nb run decode --preset vila1.5-8b --engine compiled $DECODE'
part lite          55  80 'nb run prefill --preset nvila-lite-2b --engine compiled $POINT'
part w8a8-vision  140 180 'nb run deployment $LADDER --engine compiled --rung w8a8-vit-int8'
part aa-decode    110 480 '$AA "$OUT/aa" --suite decode | tee "$OUT/aa-decode.txt"'
part aa-prefill   110 480 '$AA "$OUT/aa" --suite prefill | tee "$OUT/aa-prefill.txt"'
part check         60 240 'python3 -m pytest -q tests/test_engines_cuda.py tests/test_quantize_cuda.py'
part peer-bf16    110 360 'nb run deployment $PEERS --media image --engine compiled --rung bf16'
part peer-w4a16   130 420 'nb run deployment $PEERS --media image --engine compiled --rung w4a16-llm'
part peer-hf-bf16 100 360 'nb run deployment $PEERS --media image --engine hf-static --rung bf16'
part peer-hf-w4a16 170 500 'nb run deployment $PEERS --media image --engine hf-static --rung w4a16-llm'
part peer-video   150 500 'nb run deployment $PEERS --media video --video-frames 64 --engine compiled --rung w4a16-llm'

known() { local n; for n in "${NAMES[@]}"; do [[ $n == "$1" ]] && return 0; done; return 1; }
number() {  # NAME VALUE LOW HIGH
  [[ $2 =~ ^[0-9]{1,6}$ ]] && (( 10#$2 >= $3 && 10#$2 <= $4 )) || die "$1 must be a whole number in $3..$4, got '$2'"
}
BUDGET=${2:-540}
number BUDGET_S "$BUDGET" 1 100000
PACE=${GPU_SESSION_PACE:-100}
number GPU_SESSION_PACE "$PACE" 1 1000
BUDGET=$((10#$BUDGET)) PACE=$((10#$PACE))
WANT=()
if (( $# == 3 )); then  # read splits without globbing: a part named '*' stays '*'
  [[ -n $3 && $3 != ,* && $3 != *, && $3 != *,,* ]] || die "an empty part name in '$3' (known: ${NAMES[*]})"
  IFS=, read -r -a WANT <<< "$3"
  for w in "${WANT[@]}"; do known "$w" || die "unknown part '$w' (known: ${NAMES[*]})"; done
fi
wanted() {
  local w
  (( ${#WANT[@]} == 0 )) && return 0
  for w in "${WANT[@]}"; do [[ $w == "$1" ]] && return 0; done
  return 1
}

mkdir -p -- "$1" && OUT=$(cd -- "$1" && pwd) || die "cannot make the folder '$1'"
if [[ -n ${BUNDLE:-} ]]; then
  mkdir -p -- "$BUNDLE" && BUNDLE=$(cd -- "$BUNDLE" && pwd) || die "cannot make the folder BUNDLE='$BUNDLE'"
  [[ $BUNDLE/ != "$OUT"/* ]] || die "BUNDLE ($BUNDLE) must lie outside OUT ($OUT): it receives OUT as a tarball"
fi
cd "$(dirname "$0")/.." || die "no repository root"
mkdir -p "$OUT/logs"
export OUT POINT DECODE LADDER PEERS AA PYTHONUNBUFFERED=1
export -f nb
paced() { echo $(( ($1 * PACE + 99) / 100 )); }
RESERVE=$(paced 20) KILL=$(paced 10)
pending=1  # parts.txt has lines goals.md does not show yet
note() { say "$*"; echo "$*" >> "$OUT/parts.txt"; pending=1; }
echo "session $(date -u +%Y-%m-%dT%H:%M:%SZ): budget ${BUDGET} s, pace ${PACE}%, parts ${3:-all}" >> "$OUT/parts.txt"

# ---- the wheels, the package, the versions ---------------------------------------------------------------
WHEELS=${WHEELS:-.whl}
if compgen -G "$WHEELS/*.whl" > /dev/null; then
  SITE=${TMPDIR:-/tmp}/nvila-session-site
  if timeout -k "$KILL" "$(paced 120)" python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
      --upgrade --target "$SITE" "$WHEELS"/*.whl; then
    export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
  else
    note "wheels: the install from $WHEELS failed; going on without them"
  fi
else
  say "no wheels in $WHEELS/: their install skipped (torchao, gemlite, fastjsonschema: bash benchmarks/gpu_wheels.sh)"
fi
timeout -k "$KILL" "$(paced 120)" python3 -m pip install -q --no-deps --no-build-isolation -e . \
  || note "package: pip install -e . failed; going on with what is importable"
timeout -k "$KILL" "$(paced 60)" python3 benchmarks/goals.py "$OUT" --versions || note "versions: not printed"
READS=1
python3 -c "import fastjsonschema" 2> /dev/null || READS=0
(( READS )) || note "no goals.md or report: reading records needs fastjsonschema (carry .whl: benchmarks/gpu_wheels.sh)"

# ---- after every part: the goals, the report, the bundle -------------------------------------------------
write_goals() {
  pending=0
  (( READS )) || return 0
  local limit=$(( BUDGET - SECONDS < $(paced 60) ? BUDGET - SECONDS : $(paced 60) ))
  (( limit > 0 )) || { say "no time left to write goals.md"; return 0; }
  timeout -k "$KILL" "$limit" python3 benchmarks/goals.py "$OUT" --write --report > "$OUT/logs/goals.log" 2>&1 \
    || say "goals.md / report.html not written: see $OUT/logs/goals.log"
  [[ -z ${BUNDLE:-} ]] && return 0
  cp -f "$OUT/goals.md" "$OUT/report.html" "$BUNDLE/" 2> /dev/null
  tar -czf "$BUNDLE/.session.tar.gz" -C "$(dirname "$OUT")" "$(basename "$OUT")" \
    && mv -f "$BUNDLE/.session.tar.gz" "$BUNDLE/session.tar.gz"
}

# ---- the parts, in priority order ------------------------------------------------------------------------
note "setup: ${SECONDS} s"
failed=0
for name in "${NAMES[@]}"; do
  if [[ $name == ceilings && ! -f $OUT/ceilings.json ]]; then
    wanted ceilings || say "ceilings: measured all the same (OUT has none; the MBU goal needs the run's copy rate)"
  elif [[ $name == ceilings ]]; then
    say "ceilings: kept $OUT/ceilings.json"; continue
  else
    wanted "$name" || continue
  fi
  left=$(( BUDGET - SECONDS - RESERVE )) need=$(paced "${NEED[$name]}") ceiling=$(paced "${CEILING[$name]}")
  if (( left < need )); then
    note "$name: skipped, needs ${need} s to its first record and ${left} s are left"; failed=1; continue
  fi
  limit=$(( ceiling < left ? ceiling : left )) start=$SECONDS
  say "$name: up to ${limit} s (${left} s left)"
  timeout -k "$KILL" "$limit" bash -o pipefail -c "${COMMAND[$name]}" 2>&1 | tee "$OUT/logs/$name.log"
  code=${PIPESTATUS[0]}
  case $code in
    0) note "$name: ok in $(( SECONDS - start )) s" ;;
    124|137) note "$name: cut at its timeout of ${limit} s; its finished points are kept"; failed=1 ;;
    *) note "$name: exited $code after $(( SECONDS - start )) s (OUT/logs/$name.log)"; failed=1 ;;
  esac
  write_goals
done
(( pending )) && write_goals  # the skips since the last write
[[ -f $OUT/goals.md ]] && cat "$OUT/goals.md"
exit $failed
