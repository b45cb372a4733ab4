# Two commands for a newcomer: `make demo` and `make test`. Both set up .venv first (from the lock files);
# `make test` also installs the Debian packages the tests run (see system-deps).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
WORKDIR ?= imagerank-data
# Pinned versions for Python 3.11 on Linux: requirements.lock is what the image runs, requirements-test.lock
# adds the test tools at the same pins. Regenerate both with `make lock` after changing pyproject.toml.
LOCK      := requirements.lock
TEST_LOCK := requirements-test.lock
INSTALLED := $(VENV)/.installed
LOCK_PYTHON := 3.11

.PHONY: setup system-deps demo test test-fast bench lock clean

# Re-run only when pyproject.toml or a lock file changes: the lock, then the project itself without
# dependencies (editable), then `pip check` (a dependency missing from the lock fails here).
$(INSTALLED): pyproject.toml $(LOCK) $(TEST_LOCK)
	@$(PYTHON) -c 'import sys; v = "%d.%d" % sys.version_info[:2]; sys.exit(0 if v == "$(LOCK_PYTHON)" else \
	  f"the lock files pin versions for Python $(LOCK_PYTHON), but $(PYTHON) is Python {v}: run make PYTHON=python$(LOCK_PYTHON) ...")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r $(TEST_LOCK)
	$(BIN)/python -m pip install --quiet --no-deps -e .
	$(BIN)/python -m pip check
	touch $@

setup: $(INSTALLED)

# What the tests run besides Python packages, from Debian: redis-server (the online store), chromium (the
# report's browser checks) and postgresql. Installed when missing (as root: apt-get update once, then
# install); otherwise the command to run is printed and the target fails.
SYSTEM_DEPS_CHECK := \
	command -v redis-server >/dev/null 2>&1 || missing="$$missing redis-server"; \
	command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || missing="$$missing chromium"; \
	command -v pg_ctl >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || missing="$$missing postgresql"

system-deps:
	@missing=""; $(SYSTEM_DEPS_CHECK); \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then \
	  echo "make system-deps: missing$$missing; install with:" >&2; \
	  echo "  sudo apt-get update && sudo apt-get install -y$$missing" >&2; \
	  exit 1; \
	fi; \
	echo "make system-deps: installing$$missing (apt-get)" >&2; \
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	missing=""; $(SYSTEM_DEPS_CHECK); \
	if [ -n "$$missing" ]; then echo "make system-deps: still missing after apt-get install:$$missing" >&2; exit 1; fi

demo: setup
	$(BIN)/imagerank demo --workdir $(WORKDIR)

# The suite runs in TEST_PROCESSES pytest processes (pytest-xdist; whole modules per process, see tests/conftest.py);
# `make test TEST_PROCESSES=0` runs it in this one process.
TEST_PROCESSES ?= 2

test: system-deps setup
	$(BIN)/python -m pytest -n $(TEST_PROCESSES)

test-fast: system-deps setup
	$(BIN)/python -m pytest -n $(TEST_PROCESSES) -m "not slow"

bench: setup
	for b in benchmarks/bench_*.py; do $(BIN)/python -m benchmarks.$$(basename $$b .py) --quick || exit 1; done

# Re-resolve the lock files from pyproject.toml, with the uv version the test lock pins (not through
# `setup`, which fails while the lock misses a dependency pyproject.toml has gained).
lock:
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "$$(grep '^uv==' $(TEST_LOCK))"
	$(BIN)/python -m uv pip compile pyproject.toml --python-version $(LOCK_PYTHON) --python-platform linux \
	  --custom-compile-command "make lock" --quiet -o $(LOCK)
	$(BIN)/python -m uv pip compile pyproject.toml --extra test -c $(LOCK) --python-version $(LOCK_PYTHON) \
	  --python-platform linux --custom-compile-command "make lock" --quiet -o $(TEST_LOCK)

clean:
	rm -rf $(WORKDIR) .pytest_cache
