# modeldeploy: the one developer entry point. `make help` lists the targets.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha256sum | cut -c1-12)
CLUSTER_DIR := .cluster
export KUBECONFIG ?= $(CURDIR)/$(CLUSTER_DIR)/kubeconfig

.PHONY: help install tools mlflow image cluster-up cluster-down cluster-status run stop test test-unit \
	test-serving test-native test-integration lint lock audit release-image bench bench-serving bench-serving-quick bench-drift bench-pipeline bench-operator bench-rollback bench-e2e clean

help: ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	@command -v $(PY) >/dev/null || { echo "error: $(PY) not found; install Python >= 3.11" >&2; exit 2; }
	@command -v go >/dev/null || { echo "error: go not found; install Go >= 1.26 (it builds the control plane)" >&2; exit 2; }
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	rm -f $(VENV)/.installed-*; touch $@

install: $(STAMP) ## create .venv with the project and its dev tools

tools: ## Debian packages for the real node, then the control plane, real node, kubectl and helm from Go modules (cached outside the repo)
	bash tools/host-packages.sh
	bash tools/build.sh

mlflow: $(STAMP) ## the MLflow tracking server the registry tests start (own venv, cached by pin)
	bash tools/mlflow/install.sh $(CURDIR)/$(BIN)/python

image: $(STAMP) ## build serving_image/Dockerfile with buildah on a local base (cached OCI archive)
	bash tools/host-packages.sh
	$(BIN)/python scripts/images.py serving

cluster-up: $(STAMP) ## start the local Kubernetes 1.36 control plane (KWOK nodes + one real node running the serving image; MODELDEPLOY_REAL_NODE=0: KWOK only)
	bash tools/host-packages.sh
	$(BIN)/python scripts/cluster.py up --dir $(CLUSTER_DIR)

cluster-down: ## stop the local control plane and remove its state
	@if [ -x $(BIN)/python ]; then $(BIN)/python scripts/cluster.py down --dir $(CLUSTER_DIR); \
	else rm -rf $(CLUSTER_DIR); fi

cluster-status: $(STAMP)
	$(BIN)/python scripts/cluster.py status --dir $(CLUSTER_DIR)

run: cluster-up ## cluster + CRD + operator + the example model, a prediction (V=2|3: a canary)
	$(BIN)/python scripts/run_local.py --dir $(CLUSTER_DIR) $(if $(V),--version $(V))

stop: ## stop the operator started by `make run`
	$(BIN)/python scripts/run_local.py --dir $(CLUSTER_DIR) --stop

test: $(STAMP) tools mlflow ## the whole suite: unit, serving, integration (starts the control plane), then serving again on the native modules
	$(BIN)/pytest tests
	$(MAKE) test-native

test-native: $(STAMP) ## tests/serving on the native modules the serving image runs (scripts/native.py builds them)
	MODELDEPLOY_TEST_NATIVE=1 PYTHONPATH=$$($(BIN)/python scripts/native.py) $(BIN)/pytest tests/serving

test-unit: $(STAMP)
	$(BIN)/pytest tests/unit

test-serving: $(STAMP)
	$(BIN)/pytest tests/serving

test-integration: $(STAMP) tools mlflow
	$(BIN)/pytest tests/integration

lint: $(STAMP) ## ruff + mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

lock: $(STAMP) ## re-pin the serving image's dependencies with hashes (UPGRADE=1: newest allowed)
	$(BIN)/python scripts/lock.py $(if $(UPGRADE),--upgrade)

audit: $(STAMP) ## known vulnerabilities in the image's locked set (pip-audit; ignore list in serving_image/audit-ignore.toml)
	$(BIN)/python scripts/audit.py $(AUDIT_FLAGS)

# The published image: built by Docker from the same Dockerfile on the official Python base, which
# must be pinned by digest (a re-pushed tag would change what the image is built on); its SBOM
# goes beside it in dist/.
RELEASE_IMAGE ?= ghcr.io/modeldeploy/modeldeploy:$(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
release-image: $(STAMP) ## the release image (needs PYTHON_IMAGE=python:3.11.13-slim-bookworm@sha256:<digest> and BUILD_IMAGE=python:3.11.13-bookworm@sha256:<digest>) and its SBOM
	@for image in "$(PYTHON_IMAGE)" "$(BUILD_IMAGE)"; do [[ "$$image" =~ ^[^@[:space:]]+@sha256:[0-9a-f]{64}$$ ]] || { \
	  echo "error: release-image needs both bases pinned by digest:" \
	       "PYTHON_IMAGE=python:3.11.13-slim-bookworm@sha256:<64 hex>" \
	       "BUILD_IMAGE=python:3.11.13-bookworm@sha256:<64 hex> (docs/security.md)" >&2; exit 2; }; done
	docker build -f serving_image/Dockerfile --build-arg PYTHON_IMAGE=$(PYTHON_IMAGE) \
	  --build-arg BUILD_IMAGE=$(BUILD_IMAGE) -t $(RELEASE_IMAGE) .
	mkdir -p dist
	$(BIN)/python scripts/lock.py --runtime-lock dist/runtime.lock
	$(BIN)/cyclonedx-py requirements --pyproject pyproject.toml --output-reproducible \
	  --output-file dist/modeldeploy-$(notdir $(subst :,-,$(RELEASE_IMAGE))).cdx.json dist/runtime.lock

bench: bench-serving bench-operator bench-rollback ## all benchmarks (JSON in bench/results/)

bench-serving-quick: $(STAMP) ## a 4-minute smoke run of the serving benchmark
	$(BIN)/python bench/serving/run.py --quick

bench-serving: $(STAMP)
	$(BIN)/python bench/serving/run.py

bench-drift: $(STAMP) ## drift counting on vs off: req/s at 8 and 64 connections, memory (QUICK=1: a smoke run)
	$(BIN)/python bench/serving/drift.py $(if $(QUICK),--quick)

bench-pipeline: $(STAMP) ## a DataFrame pipeline: us vs MLServer (PandasCodec) and KServe (dict instances) (QUICK=1: a smoke run)
	$(BIN)/python bench/serving/pipeline.py $(if $(QUICK),--quick)

bench-operator: $(STAMP) tools
	$(BIN)/python bench/operator/run.py

bench-rollback: $(STAMP) tools
	$(BIN)/python bench/rollback/run.py

bench-e2e: $(STAMP) tools ## the real node: cluster-up warm (COLD=1: also cold), rollback, apply → prediction, drops at 200 req/s
	$(BIN)/python bench/e2e/run.py $(if $(COLD),--cold)

clean: cluster-down
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
