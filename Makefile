# Two commands on a fresh machine: `make run` and `make test`. Everything else is set up by them.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
OUT ?= runs/jobs_ii

.PHONY: run test test-slow test-oldest constraints lint install bench clean docs

# Ranges in pyproject.toml; the exact tested versions of every package in constraints.txt.
$(BIN)/.deps: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt ".[spark,test]"
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

# Test files run on TEST_WORKERS processes (pytest-xdist; each file stays on one process, so
# its module fixtures are built once); TEST_WORKERS=0 runs them in this process.
TEST_WORKERS ?= 2
test: install lint
	$(BIN)/pytest -m "not slow" -n $(TEST_WORKERS) --dist loadfile --durations=15 tests

test-slow: install
	$(BIN)/pytest -m slow tests

# The Spark tests against the oldest supported pyspark (the Spark of the bundle's runtime,
# Databricks Runtime 17.3 LTS = Spark 4.0), in its own virtual environment: an API newer than the
# runtime's fails here, not on the cluster. Everything else stays at the tested versions.
OLDEST_VENV := .venv-oldest
OLDEST_PYSPARK ?= 4.0.1
test-oldest:
	test -x $(OLDEST_VENV)/bin/python || $(PYTHON) -m venv $(OLDEST_VENV)
	$(OLDEST_VENV)/bin/python -m pip install -q --upgrade pip
	grep -v -i '^pyspark==' constraints.txt > $(OLDEST_VENV)/constraints.txt
	$(OLDEST_VENV)/bin/python -m pip install -q -c $(OLDEST_VENV)/constraints.txt \
		".[spark,test]" "pyspark==$(OLDEST_PYSPARK)"
	rm -rf build
	$(OLDEST_VENV)/bin/python -c "import pyspark; assert pyspark.__version__ == '$(OLDEST_PYSPARK)', pyspark.__version__"
	$(OLDEST_VENV)/bin/pytest -m "spark and not slow" tests

# Regenerate constraints.txt from a fresh resolution of the ranges (then run make test).
constraints:
	rm -rf .venv-constraints && $(PYTHON) -m venv .venv-constraints
	.venv-constraints/bin/python -m pip install -q --upgrade pip
	.venv-constraints/bin/python -m pip install -q ".[spark,test]"
	{ sed -n '/^#/p' constraints.txt; .venv-constraints/bin/python -m pip freeze --exclude mlearner-dist; } > constraints.new
	mv constraints.new constraints.txt && rm -rf .venv-constraints build

bench: install
	$(BIN)/python benchmarks/run_scale.py --n 1000000

clean:
	rm -rf $(VENV) $(OLDEST_VENV) build runs .pytest_cache

docs: install
	$(BIN)/python -c "from mlearner_dist.config import keys_markdown; print(keys_markdown(), end='')" > docs/configuration.md
	$(BIN)/python -c "from mlearner_dist.result_schema import schema_markdown; print(schema_markdown(), end='')" > docs/result_schema.md
