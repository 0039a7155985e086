# Two commands on a fresh machine: `make run` (main job) and `make test` (test suite).
# Both create .venv when missing. torch is installed first, pinned to the CPU wheel this workplace keeps
# on disk, so no dependency can pull a multi-GB CUDA build; override with a supported release (2.11-2.13),
# e.g. `make TORCH=torch==2.11.0 ...` (PyPI's Linux wheels of torch are CUDA builds).
PYTHON ?= python3
VENV   ?= .venv
TORCH  ?= torch==2.13.0
EXTRA_PINS ?=
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test test-oldest clean

# lmms-eval (the accuracy suite's harness) declares torchvision, timm, av, openai, ... for models we never
# load, and PyPI's torchvision breaks beside the CPU torch: install it without its declared dependencies,
# plus what its evaluator imports (filelock<4: lmms-eval 0.7.3 patches filelock._api, gone in 4.x), and decord,
# which its peer-VLM adapters (qwen2_vl, qwen2_5_vl, llava_hf) import at the top and it does not declare (a
# wheel for x86-64 only). Those adapters also need torchvision (and qwen-vl-utils for Qwen): without it
# `run accuracy --checkpoint PEER_DIR` is refused in one line and the peer end-to-end tests skip.
LMMS_EVAL  ?= lmms-eval==0.7.3
LMMS_DEPS  := accelerate datasets evaluate loguru pytablewriter pytz sacrebleu tenacity pyyaml "filelock<4" \
	"decord>=0.6; platform_machine == 'x86_64'"

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	@# setuptools is the build backend pyproject.toml declares (>= 77 for its SPDX license); builds without
	@# isolation (the GPU image's install, tests/test_packaging.py) use the venv's, and torch 2.11 leaves 65.
	$(BIN)/python -m pip install -q --no-warn-conflicts "setuptools>=77" $(TORCH)
	@# --no-warn-conflicts: once lmms-eval is in the venv, every install would print ~30 "lmms-eval 0.7.3 requires
	@# ..., which is not installed" lines (pip logs them at CRITICAL, past -q). pip check below stays the gate.
	$(BIN)/python -m pip install -q --no-warn-conflicts -e '.[test]' $(TORCH) $(EXTRA_PINS)
	$(BIN)/python -m pip install -q --no-deps $(LMMS_EVAL)
	$(BIN)/python -m pip install -q --no-warn-conflicts $(LMMS_DEPS) $(TORCH) $(EXTRA_PINS)
	@# pip check must be clean, except for lmms-eval's deliberately skipped model extras and decord's only wheel,
	@# tagged cp36 (a ctypes wrapper of its own shared library: it imports and runs on Python 3.11)
	$(BIN)/python -m pip check > $(VENV)/pip-check.txt || true
	! grep -v -e '^lmms-eval ' -e '^No broken requirements' -e '^decord 0.6.0 is not supported on this platform$$' \
		$(VENV)/pip-check.txt
	touch $@

# The main job: model summary, this machine's GEMM / copy ceilings (for the roofline), the latency, training
# and fine-tuning memory suites and the quantized deployment ladder on the tiny (CPU-sized) presets, the
# training-cost estimate, a tiny model trained on the synthetic tasks and its accuracy (and the untrained
# one's) through lmms-eval
# -> $(OUT)/results.jsonl, and the HTML report -> $(OUT)/report.html
OUT   ?= out
TINY  := --preset nvila-tiny --preset nvila-lite-tiny --preset nvila-video-tiny --preset vila-tiny
PEER  := --preset qwen2-vl-tiny  # a peer VLM's tiny stand-in: the report's NVILA vs peer VLMs table
run: $(STAMP)
	$(BIN)/nvila-bench summary
	$(BIN)/nvila-bench ceilings --device cpu --dtype float32 --size 1024 --seconds 1 --out $(OUT)
	$(BIN)/nvila-bench run prefill $(TINY) $(PEER) --image 448x448 --out $(OUT)
	$(BIN)/nvila-bench run prefill $(TINY) $(PEER) --image 1920x1080 --out $(OUT)
	$(BIN)/nvila-bench run prefill $(TINY) --video-frames 8 --out $(OUT)
	$(BIN)/nvila-bench run decode $(TINY) $(PEER) --image 1920x1080 --new-tokens 32 --out $(OUT)
	$(BIN)/nvila-bench run scale-then-compress --tiny --image 1920x1080 --video-frames 32 --new-tokens 32 --out $(OUT)
	$(BIN)/nvila-bench run overhead --preset nvila-tiny --out $(OUT)
	$(BIN)/nvila-bench run train --preset nvila-tiny --stage projector --stage full --batch-size 2 --repeats 3 --out $(OUT)
	$(BIN)/nvila-bench run finetune-memory --preset nvila-tiny --recipe nvila --recipe full-full --repeats 3 --out $(OUT)
	$(BIN)/nvila-bench run deployment --preset nvila-tiny $(PEER) --image 448x448 --video-frames 8 --new-tokens 8 --repeats 3 --out $(OUT)
	$(BIN)/nvila-bench estimate training-cost --hardware h100-sxm --out $(OUT)
	$(BIN)/nvila-bench train-synthetic --preset vila-tiny --steps 120 --out $(OUT)/vila-tiny-synthetic
	$(BIN)/nvila-bench run accuracy --checkpoint $(OUT)/vila-tiny-synthetic --tasks synthetic --limit 60 --out $(OUT)
	$(BIN)/nvila-bench run accuracy --preset vila-tiny --tasks synthetic --limit 60 --out $(OUT)
	$(BIN)/nvila-bench report $(OUT)/results.jsonl --out $(OUT)/report.html
	@echo "open $(OUT)/report.html"

# Triton (for its CPU interpreter) and gemlite, for tests/test_gemlite_interpreted.py alone: outside the venvs
# (Triton is 1 GB and changes what torch and torchao do where it is importable), shared by both of them.
# Triton 3.9: 3.6's interpreter (the GPU image's Triton, gemlite's floor) fails on gemlite's kernels.
TRITON_SITE := .triton-interpreter
$(TRITON_SITE)/.installed: | $(STAMP)
	$(BIN)/python -m pip install -q --no-deps --target $(TRITON_SITE) triton==3.9.0 gemlite==0.6.0.post2
	touch $@

PYTEST_ARGS ?=
test: $(STAMP) $(TRITON_SITE)/.installed
	$(BIN)/ruff format --check --quiet .
	$(BIN)/ruff check --quiet .
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

# The lowest torch and transformers we declare, the GPU image's (torch 2.11, transformers 5.17), in a venv of its
# own: the compiled engine leans on inductor and FlexAttention, which change between torch releases. PyPI has
# torch 2.11 only as a CUDA build (about 3 GB with its CUDA libraries); it runs the tests on the CPU, with the
# Triton 3.6 it depends on importable in that venv, as on the GPU image (the interpreter test's 3.9 stays apart).
# It leaves out the tests whose subject no torch or transformers release changes (each venv resolves the same
# pandas, jinja2, click, ...): 10 minutes rather than 13-14 on 2 cores with a cold compile cache, as CI has:
# - the report, dashboard, gate, results files and the sweep runner's worker isolation;
# - gemlite in Triton 3.9's CPU interpreter: beside torch 2.11 a pairing no machine has (the GPU image pairs it
#   with Triton 3.6, whose interpreter cannot run gemlite's kernels); torch 2.11 compiling a gemlite model is
#   left to the GPU test (tests/test_quantize_cuda.py).
# This venv also has the GPU image's torchvision (0.26, which PyPI builds to match torch 2.11; no torchvision works
# beside the CPU torch 2.13), so the peer VLMs' torchvision paths run here: transformers' video and tensor image
# processors, and lmms-eval's Qwen2-VL / LLaVA-OneVision adapters (with qwen-vl-utils and PyAV) end to end.
OLDEST_PINS := transformers==5.17.0 torchvision==0.26.0 qwen-vl-utils av
SAME_ON_EVERY_TORCH := test_report.py test_report_engines.py test_report_ladder.py test_report_ladder_trust.py \
	test_browser.py test_gate.py test_results_io.py test_sweep.py test_gemlite_interpreted.py
test-oldest:
	NVILA_BENCH_TORCHVISION=1 $(MAKE) test VENV=.venv-oldest TORCH=torch==2.11.0 EXTRA_PINS="$(OLDEST_PINS)" \
		PYTEST_ARGS="$(SAME_ON_EVERY_TORCH:%=--ignore=tests/%)"

clean:
	rm -rf .venv .venv-oldest $(TRITON_SITE) build *.egg-info
