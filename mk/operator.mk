# The operator (issue 6): the generated CRD and a local run against the test control plane.
# The CRD's one source is operator/worker_operator/crd.py; never edit the YAML by hand.

OPERATOR_KUBECONFIG ?= $(or $(KUBECONFIG),$(CURDIR)/.cluster/kubeconfig)
OPERATOR_ARGS ?= --no-leader-election

.PHONY: manifests manifests-check operator-crd operator-run

manifests: venv ## regenerate the CRD into charts/tickwork/crds/ (and, with the chart, manifests/)
	$(BIN)/python -m worker_operator.manifests write --root $(CURDIR)

manifests-check: venv ## fail when the generated CRD files are stale (run `make manifests`)
	$(BIN)/python -m worker_operator.manifests check --root $(CURDIR)

operator-crd: venv ## apply the CRD to the cluster of $KUBECONFIG (default: the test control plane)
	@source hack/lib.sh && "$${TW_KUBECTL}" --kubeconfig "$(OPERATOR_KUBECONFIG)" \
	  apply --server-side --field-manager=tickwork-make -f charts/tickwork/crds/
	@source hack/lib.sh && "$${TW_KUBECTL}" --kubeconfig "$(OPERATOR_KUBECONFIG)" \
	  wait --for=condition=Established --timeout=60s crd/backgroundworkers.tickwork.dev

operator-run: operator-crd ## run the operator in the foreground against $KUBECONFIG
	KUBECONFIG="$(OPERATOR_KUBECONFIG)" $(BIN)/tickwork-operator $(OPERATOR_ARGS)

test-deps: manifests-check
