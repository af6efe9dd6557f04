# The README's two commands are `make demo` and `make test`; everything else supports them.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test lint unit integration crds docs crds-check cluster-up cluster-down cluster-build gohelpers argocd-cm \
        qdrant-up qdrant-down qdrant-real-build qdrant-real-up qdrant-cluster-up qdrant-real-down run bench clean down \
        chart-sync go-tools image image-tools faults-table node-tools node-build node-up node-down s3-up s3-down

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
	$(VENV)/bin/ruff format --check
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports
	@unformatted=$$(gofmt -l tests/gohelpers); if [ -n "$$unformatted" ]; then echo "gofmt needed: $$unformatted"; exit 1; fi

crds: $(STAMP)
	$(PY) -m collection_operator.cli crds --out crds
	$(MAKE) chart-sync

# The chart's copies of the CRDs and of the monitoring bundle's rules and dashboard (a chart cannot read files
# outside itself); tests/unit/test_chart.py fails while one is stale.
chart-sync: $(STAMP)
	$(PY) -m devenv.chart_sync

# helm and promtool from the Go module proxy, cached like the control plane.
go-tools:
	$(PYTHON) devenv/gotools.py build

docs: $(STAMP)
	$(PY) -m collection_operator.cli docs --out docs/api-reference.md

cluster-build:
	$(PYTHON) devenv/controlplane.py build

# The Go test helpers (kstatus, Argo CD's Lua VM), cached by version like the control plane.
gohelpers:
	$(PYTHON) devenv/gohelpers.py build

# Every kind's health.lua copied from manifests/argocd/health.lua, and the argocd-cm snippet rendered with the
# resource actions (manifests/argocd/resource_customizations/*/*/actions/).
argocd-cm:
	$(PYTHON) devenv/argocd_cm.py

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

# SeaweedFS, a real S3 server on loopback (CONTRIBUTING.md "S3 (SeaweedFS)"); weed is built by go-tools.
S3_PORT ?= 8333
s3-up:
	$(PYTHON) devenv/seaweed.py up --port $(S3_PORT)

s3-down:
	$(PYTHON) devenv/seaweed.py down

unit: $(STAMP)
	$(PY) -m pytest tests/unit -q

# The control plane, real Qdrant, Go helpers, tools and the image are built (or taken from the cache) before
# pytest starts so progress shows; without buildah and mmdebstrap (not root, no apt) the image tests are skipped.
# One run covers both Qdrant tiers (QDRANT_TIERS defaults to dev,real): everything against the dev server (and
# the tests of a real 3-node cluster), and every tier-parametrized test again against a real single node.
# TEST_WORKERS pytest-xdist workers run files side by side, each with its own control plane and servers: the
# suite mostly waits on the operator and Qdrant, not on the CPU. The slowest tests are listed at the end.
TEST_WORKERS ?= 4
test: $(STAMP) cluster-build qdrant-real-build gohelpers go-tools image-tools node-tools node-build lint
	@if command -v buildah >/dev/null && command -v mmdebstrap >/dev/null; then $(MAKE) --no-print-directory image; fi
	$(PY) -m pytest -q -ra -n $(TEST_WORKERS) --dist loadfile --durations=25

integration: $(STAMP) cluster-build
	$(PY) -m pytest -q -ra tests/integration

# The operator image from Debian packages with buildah: CONTRIBUTING.md "Image". Cached under ~/.cache.
image: $(STAMP) image-tools
	$(PY) devenv/image.py build

# buildah and mmdebstrap from apt when missing and we may install them (CI: a fresh machine, as root).
image-tools:
	@if ! command -v buildah >/dev/null || ! command -v mmdebstrap >/dev/null; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends buildah mmdebstrap; \
	  else echo "buildah/mmdebstrap missing and not root with apt: image tests will be skipped"; fi; \
	fi

# A real node beside a control plane of its own (CONTRIBUTING "A real node"): Pods run here, from images built
# here. containerd, runc, conntrack and the CNI plugins from apt when missing and we may install them.
node-tools:
	@if ! command -v containerd >/dev/null || ! command -v runc >/dev/null || ! command -v conntrack >/dev/null \
	    || [ ! -x /usr/lib/cni/bridge ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
	      containerd runc conntrack containernetworking-plugins iptables; \
	  else echo "containerd/runc/CNI missing and not root with apt: the node tests will be skipped"; fi; \
	fi

node-build: cluster-build
	$(PYTHON) devenv/node.py build

node-up: $(STAMP) node-tools node-build image-tools qdrant-real-build
	$(PYTHON) devenv/node.py up

node-down:
	$(PYTHON) devenv/node.py down

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
	$(PYTHON) devenv/seaweed.py down
	$(PYTHON) devenv/controlplane.py down

# The results table of the last tests/faults run (tests/faults/RESULTS.json) into CONTRIBUTING.md.
faults-table: $(STAMP)
	$(PY) -m tests.faults.table

bench: $(STAMP) go-tools
	$(PY) -m bench

clean: cluster-down
	rm -rf .devenv
