# equivision: `make demo` and `make test` each create .venv and install everything on a fresh machine.
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.equivision-installed
DEMO_DIR ?= demo_out
PYTEST_ARGS ?=

.PHONY: setup demo test test-fast lint format bench-render clean

$(STAMP): pyproject.toml scripts/setup.sh
	bash scripts/setup.sh
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	DEMO_DIR=$(DEMO_DIR) bash scripts/demo.sh

test: $(STAMP)
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-2} $(BIN)/python -m pytest -q $(PYTEST_ARGS)

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow" $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check equivision tests scripts hubconf.py
	$(BIN)/ruff format --check equivision tests scripts hubconf.py

format: $(STAMP)
	$(BIN)/ruff format equivision tests scripts hubconf.py
	$(BIN)/ruff check --fix equivision tests scripts hubconf.py

bench-render: $(STAMP)
	$(BIN)/equivision bench render --out bench_render.json

clean:
	rm -rf $(VENV) $(DEMO_DIR) .pytest_cache *.egg-info
