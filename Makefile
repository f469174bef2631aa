# Two commands on a fresh machine: `make run` and `make test` (see README.md).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: run test lint bench venv clean

# The venv is rebuilt only when pyproject.toml changes; pip's wheel cache keeps
# llama-cpp-python from being compiled again.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $@

venv: $(STAMP)

run: $(STAMP)
	$(BIN)/fleetdeck

lint: $(STAMP)
	$(BIN)/ruff check console tests bench sample_traces
	$(BIN)/ruff format --check console tests bench sample_traces
	$(BIN)/mypy
	$(BIN)/lint-imports

test: lint
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(BIN)/python bench/ingest.py

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
