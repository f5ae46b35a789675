# etlguard developer tasks. `make` runs lint and the tests; `make demo` is the one-minute tour.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: all check demo test lint format services dbt airflow chromium reliability clean

all: check

check: lint test

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

# The main job on the embedded default (DuckDB): nothing to start, nothing to configure. The
# second half runs the example dbt pipeline under guard, with dbt-duckdb from scripts/setup-dbt.
demo: $(BIN)/.installed
	scripts/setup-dbt dbt-duckdb
	$(BIN)/etlguard demo --dbt .venvs/dbt-duckdb/bin/dbt --project examples/warehouse

# Starts MariaDB (installs it if missing), builds the dbt and Airflow virtualenvs, installs
# headless Chromium for the report test, runs the whole suite in parallel: one pytest-xdist
# worker per core, at most 4 (TEST_WORKERS=0 runs it in pytest's own process). What a test
# must do to run beside the others is in tests/conftest.py's docstring.
TEST_WORKERS ?= auto
test: $(BIN)/.installed services dbt airflow chromium
	$(BIN)/pytest -q -n $(TEST_WORKERS) --maxprocesses=4 --dist loadgroup --durations=25

reliability: $(BIN)/.installed services
	scripts/reliability-report

services:
	scripts/services

dbt:
	scripts/setup-dbt

airflow:
	scripts/setup-airflow

chromium:
	scripts/setup-chromium

# lint-imports checks the layers of docs/architecture.md (contracts in pyproject.toml); CI runs
# them too, through tests/test_architecture.py.
lint: $(BIN)/.installed
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	$(BIN)/mypy
	$(BIN)/lint-imports

format: $(BIN)/.installed
	$(BIN)/ruff format src tests benchmarks
	$(BIN)/ruff check --fix src tests benchmarks

clean:
	rm -rf $(VENV) .venvs .pytest_cache .mypy_cache .ruff_cache
