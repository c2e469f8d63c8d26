# refetch: `make run` starts the example app, `make test` runs every check.
SHELL := /bin/bash
PYTHON ?= python3
UV := $(shell command -v uv 2>/dev/null || echo "$(PYTHON) -m uv")
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: run run-example test lint typecheck pytest js-test ui ui-client-check generate-client e2e bench bench-full clean package-check
UI := portal/ui

$(VENV)/.synced: pyproject.toml uv.lock
	@$(UV) --version >/dev/null 2>&1 || $(PYTHON) -m pip install --quiet uv
	$(UV) sync --locked
	@touch $@

# The reference portal on http://127.0.0.1:8000 and its simulated external APIs on :3000.
run: $(VENV)/.synced $(UI)/dist/index.html
	$(PY) -m portal.simulator & SIM=$$!; trap "kill $$SIM 2>/dev/null" EXIT INT TERM; $(PY) -m portal

# The smallest app: notifies `progress` on a timer (examples/timer.py).
run-example: $(VENV)/.synced
	$(PY) -m examples.timer

lint: $(VENV)/.synced
	$(VENV)/bin/ruff check refetch portal tests examples bench
	$(VENV)/bin/ruff format --check refetch portal tests examples bench

typecheck: $(VENV)/.synced
	$(VENV)/bin/mypy
	$(VENV)/bin/mypy portal

# The browser tests (Playwright's sync API, Debian's chromium) run in a pytest process of
# their own: Playwright leaves an event loop behind that the asyncio tests cannot share.
pytest: $(VENV)/.synced $(UI)/dist/index.html
	$(VENV)/bin/pytest -q --ignore=tests/e2e
	$(VENV)/bin/pytest -q tests/e2e -m e2e

js/node_modules/.installed: js/package.json js/package-lock.json
	cd js && npm ci --no-audit --no-fund
	@touch $@

js/dist/index.js: js/node_modules/.installed $(shell find js/src -name "*.ts" -o -name "*.tsx")
	cd js && npm run build

# The JS package: types, unit tests, and integration tests against the real Python server.
js-test: js/dist/index.js $(VENV)/.synced
	cd js && npm run typecheck && REFETCH_REQUIRE_SERVER=1 npm test

$(UI)/node_modules/.installed: $(UI)/package.json $(UI)/package-lock.json
	cd $(UI) && npm ci --no-audit --no-fund
	@touch $@

# The UI links ../../js, so the package is built first.
$(UI)/dist/index.html: $(UI)/node_modules/.installed js/dist/index.js $(shell find $(UI)/src -type f 2>/dev/null) $(UI)/index.html $(UI)/vite.config.ts
	cd $(UI) && npm run build

ui: $(UI)/dist/index.html

# Regenerate the typed API client and the schema tags (src/refetch-tags.ts) from the portal's OpenAPI schema.
generate-client: $(UI)/node_modules/.installed $(VENV)/.synced
	cd $(UI) && npm run generate

# Fails when the committed client or schema tags are out of date with the backend.
ui-client-check: $(UI)/node_modules/.installed $(VENV)/.synced
	cd $(UI) && npm run check-client

e2e: $(VENV)/.synced $(UI)/dist/index.html
	$(VENV)/bin/pytest tests/e2e -m e2e -q

# The published package as a user gets it: sdist + wheel, a fresh venv, import, CLI, mypy --strict.
package-check: $(VENV)/.synced
	UV="$(UV)" scripts/package-check

test: lint typecheck ui-client-check pytest js-test package-check

# Benchmarks (not part of `make test`): refetch against a naive baseline, in one invocation.
bench: $(VENV)/.synced
	$(PY) bench/run.py --profile quick

bench-full: $(VENV)/.synced
	$(PY) bench/run.py --profile full

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
