# Shared by hack/*.sh: pinned versions and where the cached binaries live.
# tests/e2e/conftest.py computes the same paths (keep the two in step).
# shellcheck shell=bash

TW_HACK_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck disable=SC2034 # used by the scripts that source this file
TW_REPO_ROOT="$(cd "${TW_HACK_DIR}/.." && pwd)"
# shellcheck source=hack/versions.env
source "${TW_HACK_DIR}/versions.env"
# shellcheck source=hack/node.env
source "${TW_HACK_DIR}/node.env"

TW_CACHE="${XDG_CACHE_HOME:-${HOME}/.cache}/tickwork"
TW_KUBE_APISERVER="${TW_CACHE}/kubernetes-${KUBERNETES_VERSION}/kube-apiserver"
TW_KUBE_CONTROLLER_MANAGER="${TW_CACHE}/kubernetes-${KUBERNETES_VERSION}/kube-controller-manager"
TW_KUBE_SCHEDULER="${TW_CACHE}/kubernetes-${KUBERNETES_VERSION}/kube-scheduler"
TW_KUBELET="${TW_CACHE}/kubernetes-${KUBERNETES_VERSION}/kubelet"
TW_KUBE_PROXY="${TW_CACHE}/kubernetes-${KUBERNETES_VERSION}/kube-proxy"
TW_COREDNS="${TW_CACHE}/coredns-${COREDNS_VERSION}/coredns"
# Prometheus with Kubernetes service discovery (Debian's 2.42 has none).
TW_PROMETHEUS="${TW_CACHE}/prometheus-${PROMETHEUS_MODULE_VERSION}/prometheus"
TW_ETCD="${TW_CACHE}/etcd-${ETCD_VERSION}/etcd"
TW_KWOK="${TW_CACHE}/kwok-${KWOK_VERSION}/kwok"
TW_KWOKCTL="${TW_CACHE}/kwok-${KWOK_VERSION}/kwokctl"
TW_KUBECTL="${TW_CACHE}/kubectl-layer-${KUBECTL_LAYER_VERSION}/kubectl"
TW_HELM="${TW_CACHE}/kubectl-layer-${KUBECTL_LAYER_VERSION}/helm"
TW_ALL_BINARIES=(
  "${TW_KUBE_APISERVER}" "${TW_KUBE_CONTROLLER_MANAGER}" "${TW_KUBE_SCHEDULER}"
  "${TW_KUBELET}" "${TW_KUBE_PROXY}" "${TW_COREDNS}" "${TW_PROMETHEUS}"
  "${TW_ETCD}" "${TW_KWOK}" "${TW_KWOKCTL}" "${TW_KUBECTL}" "${TW_HELM}"
)

tw_say() { printf '[tickwork] %s\n' "$*" >&2; }

tw_elapsed() { printf '%dm%02ds' $(($1 / 60)) $(($1 % 60)); }

tw_missing_binaries() {
  local b
  for b in "${TW_ALL_BINARIES[@]}"; do
    [[ -x "${b}" ]] || printf '%s\n' "${b}"
  done
}

tw_all_binaries_present() {
  [[ -z "$(tw_missing_binaries)" ]]
}
