# Self-documenting Makefile: `make help` lists every target with its `##` comment.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
ARGS ?=
# `make test` runs the suite on WORKERS processes (pytest-xdist; each its own local Ray and
# endpoints), one test at a time from the queue (loadgroup: an xdist_group's tests together).
# `make test WORKERS=0` runs it in this one process.
WORKERS ?= 2
XDIST := -n $(WORKERS) --dist loadgroup

.DEFAULT_GOAL := help

help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}'

$(STAMP): pyproject.toml devkit/pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,dev]' -e ./devkit
	@touch $(STAMP)

venv: $(STAMP) ## Create .venv: the library (test and dev extras) and the devkit, both editable

test: $(STAMP) ## Run the whole test suite on WORKERS=2 processes (CI runs it after `make lint`)
	$(PY) -m pytest -q $(XDIST) $(ARGS)

test-fast: $(STAMP) ## Run the tests not marked slow (on WORKERS=2 processes)
	$(PY) -m pytest -q -m "not slow" $(XDIST) $(ARGS)

lint: $(STAMP) ## ruff check + format check + mypy (CI runs it)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

format: $(STAMP) ## Apply ruff's fixes and formatting
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

demo: $(STAMP) ## Generate a corpus, start the local Bedrock endpoint + S3, backfill every use case into embedded Qdrant, query it
	$(PY) -m nova_devkit.demo $(ARGS)

emulator: $(STAMP) ## Run the local Bedrock Runtime-compatible endpoint (and S3) in the foreground
	$(PY) -m nova_devkit.emulator $(ARGS)

bench: $(STAMP) ## Run the benchmarks (prints measured ratios)
	$(PY) -m benchmarks.run_all $(ARGS)

clean: ## Remove caches, run folders and demo data (keeps .venv)
	rm -rf .pytest_cache .mypy_cache .ruff_cache runs outputs demo_data

.PHONY: help venv test test-fast lint format demo emulator bench clean
