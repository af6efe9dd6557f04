# The README's two commands are `make demo` and `make test`; everything else supports them.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint unit integration crds crds-check cluster-up cluster-down cluster-build \
        qdrant-up qdrant-down qdrant-real-build qdrant-real-up qdrant-cluster-up qdrant-real-down run bench clean down

# The real Qdrant is built from ../shared/vendor/qdrant when that exists; elsewhere QDRANT_BIN / QDRANT_URL
# point at one, or the real tier of the tests skips with a message saying how to get one.
QDRANT_VENDOR := $(wildcard ../shared/vendor/qdrant/qdrant-v*-src.tar.gz)
PORT ?= 6333
NODES ?= 3

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,devenv]'
	touch $(STAMP)

venv: $(STAMP)

lint: $(STAMP)
	$(VENV)/bin/ruff check
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

crds: $(STAMP)
	$(PY) -m collection_operator.cli crds --out crds

cluster-build:
	$(PYTHON) devenv/controlplane.py build

cluster-up: $(STAMP)
	$(PYTHON) devenv/controlplane.py up

cluster-down:
	$(PYTHON) devenv/controlplane.py down

qdrant-up: $(STAMP)
	$(PY) -m devenv.qdrant_dev up

qdrant-down: $(STAMP)
	$(PY) -m devenv.qdrant_dev down

qdrant-real-build:
ifneq ($(QDRANT_VENDOR),)
	$(PYTHON) devenv/qdrant_real.py build
else
	@echo "qdrant-real-build: ../shared/vendor/qdrant is absent; set QDRANT_BIN or QDRANT_URL for the real tier"
endif

qdrant-real-up:
	$(PYTHON) devenv/qdrant_real.py up --port $(PORT)

qdrant-cluster-up:
	$(PYTHON) devenv/qdrant_real.py cluster-up --nodes $(NODES) --port $(PORT)

qdrant-real-down:
	$(PYTHON) devenv/qdrant_real.py down

unit: $(STAMP)
	$(PY) -m pytest tests/unit -q

# The control plane and the real Qdrant are built (or taken from the cache) before pytest starts so their
# progress shows.
test: $(STAMP) cluster-build qdrant-real-build lint
	$(PY) -m pytest -q -ra

# The operator in the foreground against the cluster in KUBECONFIG (the local one by default).
run: $(STAMP)
	@if [ -z "$$KUBECONFIG" ]; then $(PYTHON) devenv/controlplane.py up; fi
	KUBECONFIG=$${KUBECONFIG:-.devenv/admin.kubeconfig} $(PY) -m collection_operator.cli run --verbose

demo: $(STAMP) cluster-build
	$(PY) -m devenv.demo

# Stop everything `make demo` started: operator, dev Qdrant, control plane.
down: $(STAMP)
	$(PY) -m devenv.demo down
	$(PY) -m devenv.qdrant_dev down
	$(PYTHON) devenv/qdrant_real.py down
	$(PYTHON) devenv/controlplane.py down

bench: $(STAMP)
	$(PY) -m bench

clean: cluster-down
	rm -rf .devenv
