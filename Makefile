# refetch: `make run` starts the example app, `make test` runs every check.
SHELL := /bin/bash
PYTHON ?= python3
UV := $(shell command -v uv 2>/dev/null || echo "$(PYTHON) -m uv")
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: run test lint typecheck pytest bench bench-full clean

$(VENV)/.synced: pyproject.toml uv.lock
	@$(UV) --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet uv
	$(UV) sync --locked
	@touch $@

run: $(VENV)/.synced
	$(PY) -m examples.timer

lint: $(VENV)/.synced
	$(VENV)/bin/ruff check refetch tests examples bench
	$(VENV)/bin/ruff format --check refetch tests examples bench

typecheck: $(VENV)/.synced
	$(VENV)/bin/mypy

pytest: $(VENV)/.synced
	$(VENV)/bin/pytest -q

test: lint typecheck pytest

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
