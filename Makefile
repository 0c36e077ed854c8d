# Two commands do everything on a fresh machine with Python 3.11:
#   make run    creates .venv, installs, migrates and runs the portal with the sandbox API
#   make test   the whole test suite: lint, types, then pytest (needs Redis and PostgreSQL)
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
# The suite runs in the production shape by default; both servers run on every dev/CI machine.
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/portal
TEST_BROKER_URL ?= redis://127.0.0.1:6379/0

.PHONY: run test lint imports types migrations pytest bench reliability clean screenshots

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=24"
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $@

run: $(VENV)/.installed
	$(PY) scripts/dev_run.py

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

# The allowed arrows between the parts of importer/: the contracts are in pyproject.toml
# ([tool.importlinter]) and drawn in docs/ARCHITECTURE.md.
imports: $(VENV)/.installed
	$(VENV)/bin/lint-imports

# mypy's Django plugin loads the settings, and the tests run on the local defaults: both mean
# DEBUG=1 (the settings default to production, DEBUG=0, so that a forgotten variable fails closed).
types: $(VENV)/.installed
	DEBUG=$${DEBUG:-1} $(VENV)/bin/mypy snapshots_portal importer sandbox

# A model change without its migration fails here, not on the next deploy.
migrations: $(VENV)/.installed
	DEBUG=$${DEBUG:-1} $(PY) manage.py makemigrations --check --dry-run

pytest: $(VENV)/.installed
	DEBUG=$${DEBUG:-1} \
	DATABASE_URL=$${DATABASE_URL:-$(TEST_DATABASE_URL)} \
	CELERY_BROKER_URL=$${CELERY_BROKER_URL:-$(TEST_BROKER_URL)} \
	$(PY) scripts/run_tests.py $(PYTEST_ARGS)

test: lint types migrations pytest

# Reliability and security scenarios at full size (about 10 minutes): the figures are printed and
# written to docs/RELIABILITY.md; exits non-zero when one misses its target. Needs redis-server and
# PostgreSQL's server binaries (it starts private ones). BENCH_ARGS="--help" lists the sizes.
reliability: $(VENV)/.installed
	$(PY) -m bench.reliability $(BENCH_ARGS)

# Performance figures beside their targets, written to docs/PERFORMANCE.md; exits non-zero when a
# target is missed.
bench: $(VENV)/.installed
	$(PY) -m bench.performance $(BENCH_ARGS)

# The README's screenshots, into docs/screenshots/ (needs Debian's chromium).
screenshots: $(VENV)/.installed
	$(PY) scripts/screenshots.py

clean:
	rm -rf $(VENV) var
