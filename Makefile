# The two commands of the README: `make run` and `make test`.
PY := .venv/bin/python
PYTEST := $(PY) -m pytest

.PHONY: setup run test test-unit test-e2e test-faults bench lint format clean openapi

setup:
	@scripts/setup.sh

run: setup
	@$(PY) -m devtools.stack run

## The whole suite except the fault suite (which kills and restarts servers).
test:
	@scripts/setup.sh --browser
	@$(PYTEST) -q -p no:cacheprovider -m "not faults" tests

test-unit: setup
	@$(PYTEST) -q tests/unit

test-e2e: setup
	@$(PYTEST) -q -m "e2e" tests

## TARGETS R4, R5, R6: kills processes, restarts Redis and PostgreSQL, counts lost/doubled.
test-faults: setup
	@$(PYTEST) -q -p no:cacheprovider -m faults tests/faults

## Regenerate the OpenAPI document served at /openapi.json (tests fail while it is stale).
openapi: setup
	@$(PY) -m devtools.openapi --write

bench: setup
	@for script in bench/p*.py; do $(PY) $$script || exit 1; done

lint: setup
	@.venv/bin/ruff check .
	@.venv/bin/ruff format --check .

format: setup
	@.venv/bin/ruff format .
	@.venv/bin/ruff check --fix .

clean:
	rm -rf .run .pytest_cache .ruff_cache
