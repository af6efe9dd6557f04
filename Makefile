# The README's two commands are `make demo` and `make test`; everything else supports them.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint unit integration crds crds-check cluster-up cluster-down cluster-build \
        qdrant-up qdrant-down run bench clean down faults-table

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

unit: $(STAMP)
	$(PY) -m pytest tests/unit -q

# The control plane is built (or taken from the cache) before pytest starts so its progress shows.
test: $(STAMP) cluster-build lint
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
	$(PYTHON) devenv/controlplane.py down

# The results table of the last tests/faults run (tests/faults/RESULTS.json) into the README.
faults-table: $(STAMP)
	$(PY) -m tests.faults.table

bench: $(STAMP)
	$(PY) -m bench

clean: cluster-down
	rm -rf .devenv
