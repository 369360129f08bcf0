# The test control plane (issue 5): upstream kube-apiserver, controller-manager,
# scheduler, etcd and kwok run as host processes; see hack/cluster.sh.
# Binaries are built once into $${XDG_CACHE_HOME:-$$HOME/.cache}/tickwork/.

CLUSTER_HACK := $(abspath $(dir $(lastword $(MAKEFILE_LIST)))../hack)

.PHONY: cluster-build cluster-up cluster-down cluster-status

cluster-build: ## Build (once) and cache the cluster binaries (control plane, kubelet, kube-proxy, CoreDNS, Prometheus), kubectl, helm
	@$(CLUSTER_HACK)/build-binaries.sh

cluster-up: ## Start (or reuse) the test cluster and its real node; kubeconfig in .cluster/kubeconfig
	@$(CLUSTER_HACK)/cluster.sh up

cluster-down: ## Stop the test cluster and remove every trace (keeps the binary and image caches)
	@$(CLUSTER_HACK)/cluster.sh down

cluster-status: ## Exit 0 if the test control plane answers /readyz
	@$(CLUSTER_HACK)/cluster.sh status && echo "control plane is up (.cluster/kubeconfig)" || { echo "control plane is down"; exit 1; }

# The real node's own images (its pod sandbox, the try-it Redis), built once with buildah
# on the base image `make images` makes; hack/node.sh up loads them and the project's images
# into the node's containerd.
.PHONY: node-images node-load-images
node-images: images ## build the real node's pause and try-it Redis images (buildah; once)
	@$(CLUSTER_HACK)/node.sh images

node-load-images: ## load the images `make images` built into the running real node
	@$(CLUSTER_HACK)/node.sh load-images

test-deps: node-images
