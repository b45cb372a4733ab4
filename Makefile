# Two commands for a newcomer: `make demo` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
WORKDIR ?= imagerank-data

.PHONY: setup demo test test-fast bench clean

$(BIN)/imagerank: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(BIN)/imagerank

setup: $(BIN)/imagerank

demo: setup
	$(BIN)/imagerank demo --workdir $(WORKDIR)

test: setup
	$(BIN)/python -m pytest

test-fast: setup
	$(BIN)/python -m pytest -m "not slow"

bench: setup
	for b in benchmarks/bench_*.py; do $(BIN)/python -m benchmarks.$$(basename $$b .py) --quick || exit 1; done

clean:
	rm -rf $(WORKDIR) .pytest_cache
