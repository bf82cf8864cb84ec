# Everything a fresh clone needs: `make demo` and `make test` install what they use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
NODE_STAMP := node_modules/.installed-stamp

.PHONY: demo test lint typecheck unit docs bench emulators dist layer clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

emulators: $(NODE_STAMP)

demo: $(STAMP)
	$(BIN)/resilient-aws demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy
	$(BIN)/mypy --strict tests/typing

docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

unit: $(STAMP)
	$(BIN)/python -m pytest tests/unit -q

test: $(STAMP) $(NODE_STAMP) lint typecheck docs
	$(BIN)/python -m pytest -q

bench: $(STAMP) $(NODE_STAMP)
	$(BIN)/python bench/retry_overhead.py
	$(BIN)/python bench/batch_send.py
	$(BIN)/python bench/dynamodb_scan.py
	$(BIN)/python bench/dynamodb_write.py
	$(BIN)/python bench/pressure.py
	$(BIN)/python bench/idempotency.py
	$(BIN)/python bench/outbox.py
	$(BIN)/python bench/redrive.py

# The wheel and sdist, checked the way PyPI will read them.
dist: $(STAMP)
	rm -rf dist/*.whl dist/*.tar.gz
	$(BIN)/python -m build --outdir dist .
	$(BIN)/twine check --strict dist/*.whl dist/*.tar.gz

# A Lambda layer of the core: resilient_aws and tenacity (the runtime ships boto3).
layer: $(STAMP)
	$(BIN)/python scripts/build_layer.py --output dist/resilient-aws-layer.zip

clean:
	rm -rf $(VENV) node_modules site dist build .mypy_cache .ruff_cache .pytest_cache
