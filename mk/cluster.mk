# The test control plane (issue 5): upstream kube-apiserver, controller-manager,
# scheduler, etcd and kwok run as host processes; see hack/cluster.sh.
# Binaries are built once into $${XDG_CACHE_HOME:-$$HOME/.cache}/tickwork/.

CLUSTER_HACK := $(abspath $(dir $(lastword $(MAKEFILE_LIST)))../hack)

.PHONY: cluster-build cluster-up cluster-down cluster-status

cluster-build: ## Build (once) and cache the control-plane binaries, kubectl and helm
	@$(CLUSTER_HACK)/build-binaries.sh

cluster-up: ## Start (or reuse) the test control plane; kubeconfig in .cluster/kubeconfig
	@$(CLUSTER_HACK)/cluster.sh up

cluster-down: ## Stop the test control plane and remove its state (keeps the binary cache)
	@$(CLUSTER_HACK)/cluster.sh down

cluster-status: ## Exit 0 if the test control plane answers /readyz
	@$(CLUSTER_HACK)/cluster.sh status && echo "control plane is up (.cluster/kubeconfig)" || { echo "control plane is down"; exit 1; }
