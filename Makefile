# The two commands of the README are `make demo` and `make test`; each sets itself up.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: setup demo test test-unit lint clean

$(BIN)/highway: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $@

setup: $(BIN)/highway
	$(BIN)/highway dev jars

demo: setup
	$(BIN)/highway demo

test: setup
	$(BIN)/pytest

test-unit: $(BIN)/highway
	$(BIN)/pytest tests/unit

lint: $(BIN)/highway
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/mypy core schemas connectors streams bench highway tests examples

clean:
	-$(BIN)/highway dev down
	rm -rf $(VENV) .highway
