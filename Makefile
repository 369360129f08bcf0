# Tickwork — every target bootstraps what it needs, idempotently.
# Caches live outside the repository (pip's cache, $(TICKWORK_CACHE)).

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TICKWORK_CACHE ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/tickwork
export TICKWORK_CACHE

# pytest arguments, e.g. `make test PYTEST_ARGS="-k lease"`
PYTEST_ARGS ?=

.PHONY: help venv lint test test-unit demo demo-intro demo-down demo-quick chaos clean

help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | sort | awk 'BEGIN{FS=":.*?## "}{printf "  %-16s %s\n",$$1,$$2}'

$(BIN)/.installed: pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade 'pip>=25.1'
	$(BIN)/python -m pip install --quiet -e '.[operator]' --group dev
	@touch $@

venv: $(BIN)/.installed ## create .venv with the package and the dev tools (dependency group dev)

lint: venv hadolint ## hadolint, ruff, mypy --strict, import-linter
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy worker_runtime operator/worker_operator
	$(BIN)/lint-imports

test-unit: venv ## unit tests only (no servers)
	$(BIN)/pytest tests/unit -q $(PYTEST_ARGS)

# The e2e tests (the local cluster) and the others (each with its own Redis, Prometheus and
# processes on free ports) share nothing, so they run side by side; the e2e report follows.
# Exit code 5 (no test matched PYTEST_ARGS' -k in one stream) is not a failure.
test: lint test-deps ## lint, then every test (unit and integration beside e2e)
	@log="$$(mktemp)"; e2e=""; trap 'test -n "$$e2e" && kill "$$e2e" 2>/dev/null; rm -f "$$log"' EXIT; \
	$(BIN)/pytest -q -ra -p no:cacheprovider tests/e2e $(PYTEST_ARGS) >"$$log" 2>&1 & e2e=$$!; \
	rc=0; $(BIN)/pytest -q -ra tests/unit tests/integration $(PYTEST_ARGS) || rc=$$?; \
	e2e_rc=0; wait "$$e2e" || e2e_rc=$$?; e2e=""; \
	echo "== tests/e2e (ran alongside)"; cat "$$log"; \
	test "$$rc" -eq 5 && rc=0; test "$$e2e_rc" -eq 5 && e2e_rc=0; \
	test "$$rc" -eq 0 && test "$$e2e_rc" -eq 0

# `make demo` says first how long it takes, then builds (or reuses) what it needs.
demo-intro:
	@echo "demo: the operator (helm install), a Redis, Prometheus and the example worker's 3 pods"
	@echo "demo: on the local cluster's real node. A first run on a new 2-core machine builds"
	@echo "demo: the cluster's binaries and the images: about 25-35 minutes; later runs: about 1 minute."

demo: demo-intro venv cluster-build images node-images ## the whole product on the local cluster: operator, Redis, Prometheus, 3 worker pods, failover (Ctrl-C stops; DEMO_SECONDS=N bounds it)
	$(BIN)/python hack/demo.py

demo-down: venv ## remove what `make demo` made and stop what it started (after a crash)
	$(BIN)/python hack/demo.py down

demo-quick: venv redis-server ## the example worker in two local processes sharing a Redis lease (no cluster; seconds)
	examples/demo.sh

chaos: venv redis-server ## the long chaos run: 10,000 ticks under random kills
	TICKWORK_CHAOS_TICKS=$${TICKWORK_CHAOS_TICKS:-10000} $(BIN)/pytest tests/integration/test_chaos.py -q -s
	TICKWORK_HA_KILLS=$${TICKWORK_HA_KILLS:-20} $(BIN)/pytest -q -s \
	  tests/integration/test_redis_sentinel.py tests/integration/test_redis_cluster.py

clean: ## remove the venv and local state (caches outside the repo stay)
	-@test ! -d .demo || $(BIN)/python hack/demo.py down
	-@test ! -d .cluster || hack/cluster.sh down
	rm -rf $(VENV) .cluster .demo .demo-quick .mypy_cache .ruff_cache .pytest_cache

# Extra targets (servers, control plane, operator, monitoring) live in mk/.
-include mk/*.mk

# test-deps collects every mk/ file's prerequisites for the test servers.
test-deps: venv cluster-build
