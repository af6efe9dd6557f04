# The README's two commands are `make demo` and `make test`; everything else supports them.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint unit integration crds docs crds-check cluster-up cluster-down cluster-build \
        qdrant-up qdrant-down run bench clean down image image-tools

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

docs: $(STAMP)
	$(PY) -m collection_operator.cli docs --out docs/api-reference.md

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

# The control plane and the image are built (or taken from the cache) before pytest starts so their
# progress shows; without buildah and mmdebstrap (not root, no apt) the image tests are skipped.
test: $(STAMP) cluster-build image-tools lint
	@if command -v buildah >/dev/null && command -v mmdebstrap >/dev/null; then $(MAKE) --no-print-directory image; fi
	$(PY) -m pytest -q -ra

# The operator image from Debian packages with buildah: README "Image". Cached under ~/.cache.
image: $(STAMP) image-tools
	$(PY) devenv/image.py build

# buildah and mmdebstrap from apt when missing and we may install them (CI: a fresh machine, as root).
image-tools:
	@if ! command -v buildah >/dev/null || ! command -v mmdebstrap >/dev/null; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends buildah mmdebstrap; \
	  else echo "buildah/mmdebstrap missing and not root with apt: image tests will be skipped"; fi; \
	fi

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

bench: $(STAMP)
	$(PY) -m bench

clean: cluster-down
	rm -rf .devenv
