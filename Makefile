# owf-magics: `make demo` and `make test` work on a fresh Debian machine with Python 3.11 and make.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.setup-stamp
EXTRAS ?= dev

# notebooks/ run under nbval: the golden one compares every output (strict), the others only run (lax)
GOLDEN   := notebooks/03-logic-steps.ipynb
NOTEBOOKS := $(filter-out $(GOLDEN),$(wildcard notebooks/*.ipynb))
NBVAL    := -p no:cacheprovider --nbval-current-env

.PHONY: setup demo test lint typecheck unit notebooks golden bench lab clean

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
	$(BIN)/python -m owf_magics.notebook.nbrun notebooks/01-tour.ipynb --live-values --show demo-run --show demo-trace

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
	$(BIN)/pytest $(NBVAL) --nbval-lax $(NOTEBOOKS)
	$(BIN)/pytest $(NBVAL) --nbval $(GOLDEN)
	$(BIN)/owf validate examples/

notebooks: setup
	$(BIN)/pytest $(NBVAL) --nbval-lax $(NOTEBOOKS)
	$(BIN)/pytest $(NBVAL) --nbval $(GOLDEN)

# regenerate the golden notebook's outputs headlessly (deterministic mode), after a deliberate change
golden: setup
	$(BIN)/python -m owf_magics.notebook.nbrun $(GOLDEN) --write

bench: setup
	@$(BIN)/python -c "import langgraph" 2>/dev/null || $(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	$(BIN)/python bench/run.py
	$(BIN)/python bench/notebook_bench.py

lab: setup
	@test -x $(BIN)/jupyter-lab || $(BIN)/python -m pip install --quiet 'jupyterlab>=4.2'
	$(BIN)/jupyter lab notebooks/

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
