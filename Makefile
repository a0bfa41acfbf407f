# controlplane: `make up` runs the whole system locally, `make test` runs every test.
# Both install what is missing first (Python venv, Consul, buf, grpcurl): see `make deps`.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.deps-stamp
CONSUL := tools/bin/consul
PROMETHEUS := tools/bin/prometheus
BUF_VERSION := 1.75.0
BUF := tools/npm/node_modules/.bin/buf
XDS_PROTOS := tools/xds-protos/.version
# Stock Node xDS clients for the polyglot test (tests/xds/test_node_client.py).
NODE_XDS := tools/node-xds/node_modules/@grpc/grpc-js-xds/package.json
PYTEST_ARGS ?=
# Control-plane replicas `make up` starts (the demo services use them all): make up REPLICAS=2
REPLICAS ?= 1
export REPLICAS
# How the demo services find each other: library (DiscoveryChannel) or xds (gRPC's xDS client): make up DISCOVERY=xds
DISCOVERY ?= library
export DEMO_DISCOVERY ?= $(DISCOVERY)
# make up TLS=1: a local CA, a certificate per process, mTLS everywhere and the authorization policy enforced
TLS ?=
export TLS

.PHONY: help deps proto proto-check lint test fuzz crash up down status logs bench clean

help:
	@echo "make up      install what is missing, generate code, start Consul, the control plane and the demo"
	@echo "             (REPLICAS=2: two control-plane replicas; Consul keeps its data in .run/consul)"
	@echo "make test    install what is missing, run every test (against a real Consul agent)"
	@echo "make down | status | logs | bench | fuzz | crash | lint | proto | deps | clean"

deps: $(STAMP) $(CONSUL) $(PROMETHEUS) $(BUF) $(XDS_PROTOS) $(NODE_XDS)
	@echo "deps: $$($(CONSUL) version | head -n 1); $$($(PROMETHEUS) --version 2>&1 | head -n 1); buf $$($(BUF) --version); $$($(VENV)/bin/grpcurl -version 2>&1); $$($(PY) --version)"

$(STAMP): pyproject.toml setup.py
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is needed (set PYTHON=...)")'
	@[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	CONTROLPLANE_DEV_INSTALL=1 $(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $@

$(CONSUL): scripts/install-consul.sh
	scripts/install-consul.sh

$(PROMETHEUS): scripts/install-prometheus.sh
	scripts/install-prometheus.sh

$(XDS_PROTOS): scripts/fetch-xds-protos.sh $(STAMP)
	scripts/fetch-xds-protos.sh

$(NODE_XDS):
	@command -v node >/dev/null || { echo "Node.js is required (the polyglot xDS test runs a stock grpc-js client): install node 18+" >&2; exit 1; }
	@echo "node $$(node --version): installing @grpc/grpc-js and @grpc/grpc-js-xds into tools/node-xds"
	npm install --silent --no-audit --no-fund --prefix tools/node-xds @grpc/grpc-js@1.14.7 @grpc/grpc-js-xds@1.14.1

$(BUF):
	npm install --silent --no-audit --no-fund --prefix tools/npm @bufbuild/buf@$(BUF_VERSION)

proto: $(STAMP)
	scripts/gen-proto.sh gen

# Fails when gen/ differs from what the protos generate.
proto-check: $(STAMP)
	scripts/gen-proto.sh "$$(mktemp -d)/gen" --compare gen

lint: deps
	$(BUF) lint
	@if git rev-parse --verify --quiet main >/dev/null && git cat-file -e main:buf.yaml 2>/dev/null; then \
	  echo "buf breaking against main ($$(git rev-parse --short main))"; \
	  $(BUF) breaking --against '.git#branch=main'; \
	else echo "buf breaking: no earlier commit on main to compare with"; fi
	$(VENV)/bin/ruff check .

test: deps
	$(PY) -m pytest $(PYTEST_ARGS)

# The generative suite at length: FUZZ_EXAMPLES requests per RPC (`make test` runs a few per RPC).
FUZZ_EXAMPLES ?= 300
fuzz: deps
	FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) FUZZ_REPORT=$${FUZZ_REPORT:-.run/fuzz-report.json} $(PY) -m pytest tests/fuzz tests/xds/test_ads_generated.py tests/config/test_schema_generated.py

# The crash campaign at length: CRASH_SECONDS of SIGKILLs during order traffic (`make test` runs 60 s).
CRASH_SECONDS ?= 300
crash: deps
	CRASH_SECONDS=$(CRASH_SECONDS) $(PY) -m pytest -s tests/crash

up: deps
	$(PY) scripts/devstack.py up

down:
	@if [ -x $(PY) ]; then $(PY) scripts/devstack.py down; else echo "nothing to stop"; fi

status: $(STAMP)
	$(PY) scripts/devstack.py status

logs:
	@$(PY) scripts/devstack.py logs

bench: deps
	$(PY) bench/run.py

clean: down
	rm -rf .run .traces gen.tmp *.egg-info
