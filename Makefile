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
	$(BIN)/python bench/cpu_per_entry.py
	$(BIN)/python bench/consumer.py
	$(BIN)/python bench/async_write.py
	$(BIN)/python bench/idempotency_async.py

# The wheel and sdist, checked the way PyPI will read them.
dist: $(STAMP)
	rm -rf dist/*.whl dist/*.tar.gz
	$(BIN)/python -m build --outdir dist .
	$(BIN)/twine check --strict dist/*.whl dist/*.tar.gz

# Lambda layers of the core: resilient_aws and tenacity (the runtime ships boto3), compiled, one
# per Python version: dist/resilient-aws-layer-python3.X.zip for the venv's Python and for each
# interpreter in LAYER_PYTHONS (e.g. make layer LAYER_PYTHONS="python3.12 python3.13").
LAYER_PYTHONS ?=
layer: $(STAMP)
	$(BIN)/python scripts/build_layer.py --output 'dist/resilient-aws-layer-python{version}.zip' \
		--python $(BIN)/python $(foreach python,$(LAYER_PYTHONS),--python $(python))

# Mutation testing of the retry core and the batch engine (scripts/mutate.py): a few minutes on
# 2 cores, so not part of `make test`. Works on temporary copies: the tree is never modified.
.PHONY: mutate
mutate: $(STAMP)
	$(BIN)/python scripts/mutate.py

clean:
	rm -rf $(VENV) node_modules site dist build .mypy_cache .ruff_cache .pytest_cache
