# `make bench` (issue 14): Tickwork next to its peers, same Redis, same machine, same run.
# The peers (bench/peers.env) are installed once, each into a virtual environment of its own
# under $(TICKWORK_CACHE)/bench/NAME-VERSION/; the Go controller-runtime baseline of the
# operator (bench/baselines/go-reconciler) is built once into a directory named by the hash of
# its source. bench/systems.py computes the same paths (keep the two in step).
# `make bench BENCH_ARGS="--only lateness --repeats 1"` runs a part; the harness writes
# bench/RESULTS.md.

include $(dir $(lastword $(MAKEFILE_LIST)))../bench/peers.env

BENCH_DIR := $(TICKWORK_CACHE)/bench
BENCH_ARGS ?=
PEER_APS3 := $(BENCH_DIR)/apscheduler-$(APSCHEDULER3_VERSION)
PEER_APS4 := $(BENCH_DIR)/apscheduler-$(APSCHEDULER4_VERSION)
PEER_CELERY := $(BENCH_DIR)/celery-$(CELERY_VERSION)-redbeat-$(REDBEAT_VERSION)
PEER_ARQ := $(BENCH_DIR)/arq-$(ARQ_VERSION)
PY_SPY_HOME := $(BENCH_DIR)/py-spy-$(PY_SPY_VERSION)
# Tickwork itself runs from a venv holding just what the worker image installs (its lock,
# images/locks/worker.txt), this tree's code on PYTHONPATH: the process the bench measures is
# the one a worker pod runs, without the dev venv's extras (aiohttp alone adds ~10 MiB: svcs
# imports its aiohttp integration whenever aiohttp is installed).
RUNTIME_LOCK := $(abspath $(dir $(lastword $(MAKEFILE_LIST)))../images/locks/worker.txt)
TICKWORK_RUNTIME := $(BENCH_DIR)/tickwork-runtime-$(shell sha256sum < $(RUNTIME_LOCK) | cut -c1-12)
GO_BASELINE_SRC := $(abspath $(dir $(lastword $(MAKEFILE_LIST)))../bench/baselines/go-reconciler)
GO_BASELINE_HASH := $(shell cat $(GO_BASELINE_SRC)/go.mod $(GO_BASELINE_SRC)/go.sum $(GO_BASELINE_SRC)/main.go 2>/dev/null | sha256sum | cut -c1-12)
GO_BASELINE := $(BENCH_DIR)/go-reconciler-$(GO_BASELINE_HASH)/go-reconciler

.PHONY: bench bench-peers bench-go-baseline bench-micro

# One venv per peer: $(call peer_venv,DIR,REQUIREMENTS...)
define peer_venv
	@test -x $(1)/bin/python || $(PYTHON) -m venv $(1)
	@$(1)/bin/python -m pip install --quiet --disable-pip-version-check $(2)
	@touch $(1)/.installed
endef

$(PEER_APS3)/.installed: bench/peers.env
	$(call peer_venv,$(PEER_APS3),apscheduler==$(APSCHEDULER3_VERSION) redis)

$(PEER_APS4)/.installed: bench/peers.env
	$(call peer_venv,$(PEER_APS4),apscheduler==$(APSCHEDULER4_VERSION))

$(PEER_CELERY)/.installed: bench/peers.env
	$(call peer_venv,$(PEER_CELERY),celery[redis]==$(CELERY_VERSION) celery-redbeat==$(REDBEAT_VERSION))

$(PEER_ARQ)/.installed: bench/peers.env
	$(call peer_venv,$(PEER_ARQ),arq==$(ARQ_VERSION))

$(PY_SPY_HOME)/.installed: bench/peers.env
	$(call peer_venv,$(PY_SPY_HOME),py-spy==$(PY_SPY_VERSION))

$(TICKWORK_RUNTIME)/.installed: $(RUNTIME_LOCK)
	$(call peer_venv,$(TICKWORK_RUNTIME),--no-deps --require-hashes -r $(RUNTIME_LOCK))

bench-peers: $(PEER_APS3)/.installed $(PEER_APS4)/.installed $(PEER_CELERY)/.installed $(PEER_ARQ)/.installed $(PY_SPY_HOME)/.installed $(TICKWORK_RUNTIME)/.installed ## install the benchmark's peers (APScheduler 3 and 4, Celery + RedBeat, arq), py-spy and Tickwork's runtime-only venv (cached)

$(GO_BASELINE):
	@command -v go >/dev/null || { echo "the Go baseline needs the go command on PATH" >&2; exit 1; }
	@echo "== building the Go controller-runtime baseline into $(dir $@)" >&2
	@mkdir -p $(dir $@)
	@cd $(GO_BASELINE_SRC) && CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS="-mod=mod -trimpath -buildvcs=false" \
	  go build -ldflags "-s -w" -o $(dir $@).go-reconciler.tmp . && mv -f $(dir $@).go-reconciler.tmp $@

bench-go-baseline: $(GO_BASELINE) ## build the operator's Go controller-runtime baseline (cached)

# The operator part needs a control plane: a running one is used (and left running), else one
# with kwok nodes only is started for the run and stopped after it.
bench: venv redis-server bench-peers bench-go-baseline cluster-build ## Tickwork next to its peers in one run; writes bench/RESULTS.md (25-30 minutes)
	@started=0; \
	if ! hack/cluster.sh status >/dev/null 2>&1; then TICKWORK_REAL_NODE=0 hack/cluster.sh up; started=1; fi; \
	trap 'if [[ $$started == 1 ]]; then hack/cluster.sh down; fi' EXIT; \
	nice -n 10 $(BIN)/python bench/harness.py $(BENCH_ARGS)

# The smoke versions (tests/integration/test_bench_peers.py) run the peers too.
test-deps: bench-peers bench-go-baseline

bench-micro: venv redis-server ## the runtime's own micro-benchmarks (bench/bench_*.py; print numbers)
	@for b in bench/bench_*.py; do echo "== $$b"; $(BIN)/python $$b; done
