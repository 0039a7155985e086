# Two commands on a fresh machine: `make run` (main job) and `make test` (test suite).
# Both create .venv when missing. torch is installed first, pinned to the CPU wheel this workplace keeps
# on disk, so no dependency can pull a multi-GB CUDA build; override with `make TORCH=torch==2.14.1 ...`.
PYTHON ?= python3
VENV   ?= .venv
TORCH  ?= torch==2.13.0
EXTRA_PINS ?=
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test test-oldest clean

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH)
	$(BIN)/python -m pip install -q -e '.[test]' $(TORCH) $(EXTRA_PINS)
	$(BIN)/python -m pip check
	touch $@

run: $(STAMP)
	$(BIN)/nvila-bench summary

test: $(STAMP)
	$(BIN)/python -m pytest -q

# The lowest transformers we declare (the GPU image's), in a venv of its own.
test-oldest:
	$(MAKE) test VENV=.venv-oldest EXTRA_PINS="transformers==5.17.0"

clean:
	rm -rf .venv .venv-oldest build *.egg-info
