# owf-magics: `make demo` and `make test` work on a fresh Debian machine with Python 3.11 and make.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.setup-stamp
EXTRAS ?= dev

.PHONY: setup demo test lint typecheck unit bench lab clean

setup: $(STAMP)

$(STAMP): pyproject.toml scripts/ensure-system-deps.sh
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[$(EXTRAS)]'
	@scripts/ensure-system-deps.sh
	@touch $@

demo: setup
	$(BIN)/owf validate --no-warnings examples/
	$(BIN)/owf plan examples/research-digest.yaml
	$(BIN)/owf run examples/research-digest.yaml --input topic="OpenWorkflow LangGraph"

lint: setup
	$(BIN)/ruff check owf_magics tests bench
	$(BIN)/ruff format --check owf_magics tests bench

typecheck: setup
	$(BIN)/mypy

unit: setup
	$(BIN)/pytest

test: setup
	$(BIN)/ruff check owf_magics tests bench
	$(BIN)/mypy
	$(BIN)/pytest
	$(BIN)/owf validate examples/

bench: setup
	@$(BIN)/python -c "import langgraph" 2>/dev/null || $(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	$(BIN)/python bench/run.py

lab: setup
	@test -x $(BIN)/jupyter-lab || $(BIN)/python -m pip install --quiet 'jupyterlab>=4.2'
	$(BIN)/jupyter lab notebooks/

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
