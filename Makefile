# tessellum — developer entry points. Every target is idempotent.
PYTHON ?= python3.11
SHELL  := /bin/bash
.SHELLFLAGS := -o pipefail -c
# this machine's pip.conf lists local wheel folders that may not exist: drop that noise
QUIET_PIP := 2>&1 | { grep -v '^WARNING: Location' || true; }
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: all setup system venv demo test lint bench clean-world

all: test

system:            ## Debian packages the test servers need (nginx, PostgreSQL+PostGIS, redis)
	@bash scripts/setup-system.sh

$(STAMP): pyproject.toml setup.py src/tessellum/_kernels.c
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON)"; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -U pip $(QUIET_PIP)
	$(PY) -m pip install -q -e ".[dev]" $(QUIET_PIP)
	@# torch's CPU build (a local wheel on this machine kind); optional: torch tests skip without it
	$(PY) -m pip install -q "torch==2.13.0" $(QUIET_PIP) || echo "torch==2.13.0 not installable: torch tests will skip"
	@touch $(STAMP)

venv: $(STAMP)     ## the virtual environment with tessellum and its test dependencies

setup: system venv

demo: setup        ## the main job end to end on the demo world
	$(PY) -m tessellum.demo

test: setup        ## the whole test suite
	$(PY) -m pytest -q

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

bench: setup       ## benchmarks side by side against the peers (prints ratios)
	$(PY) -m benchmarks.run

clean-world:
	rm -rf .cache/world
