# Two commands on a fresh machine: `make run` and `make test`. Everything else is set up by them.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
OUT ?= runs/jobs_ii

.PHONY: run test test-slow lint install bench clean docs

$(BIN)/.deps: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q ".[spark,test]"
	touch $@

# The package is installed (not editable) so the tests exercise what users install.
install: $(BIN)/.deps
	$(BIN)/python -m pip install -q --no-deps --force-reinstall .
	rm -rf build

run: install
	$(BIN)/mlearner run --config conf/jobs_ii.yaml --output $(OUT)

lint: $(BIN)/.deps
	$(BIN)/ruff check mlearner_dist jobs tests benchmarks
	$(BIN)/python tests/import_contract.py mlearner_dist

test: install lint
	$(BIN)/pytest -m "not slow" --durations=15 tests

test-slow: install
	$(BIN)/pytest -m slow tests

bench: install
	$(BIN)/python benchmarks/run_scale.py --n 1000000

clean:
	rm -rf $(VENV) build runs .pytest_cache

docs: install
	$(BIN)/python -c "from mlearner_dist.config import keys_markdown; print(keys_markdown(), end='')" > docs/configuration.md
	$(BIN)/python -c "from mlearner_dist.result_schema import schema_markdown; print(schema_markdown(), end='')" > docs/result_schema.md
