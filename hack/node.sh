#!/usr/bin/env bash
# The real node of the test cluster: a kubelet that runs pods with containerd + runc on a
# bridge network, kube-proxy (nftables) for ClusterIP Services, CoreDNS for cluster names,
# and a relay that lets pods reach the API server through the `kubernetes` Service.
# hack/cluster.sh calls this; run it by hand only to debug.
#
#   hack/node.sh network-up     create the bridge and the forwarding guard (before the
#                               control plane starts: the API server's certificate and
#                               advertise address use the bridge address)
#   hack/node.sh up             start containerd, load the images, start the kubelet,
#                               kube-proxy, CoreDNS and the API relay; wait for the node
#   hack/node.sh load-images    (re)load the project's images into containerd
#   hack/node.sh down           stop all of it and remove every trace (processes, mounts,
#                               network namespaces, the bridge, nftables tables, cgroups)
#   hack/node.sh images         build the node's own images (pause, try-redis) if missing
#
# Everything the node creates is named after hack/node.env: the bridge, the pod and
# Service ranges, the node name. Pods get no default route (only the pod and Service
# ranges), and the nftables table `inet tickwork` drops anything forwarded between the
# bridge and any other interface, so no pod traffic ever leaves this machine.
# Needs root (network, mounts, cgroups), as containerd and the kubelet do.
set -euo pipefail

HACK_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=hack/lib.sh
source "${HACK_DIR}/lib.sh"
# shellcheck source=hack/node.env
source "${HACK_DIR}/node.env"

CLUSTER_DIR="${TICKWORK_CLUSTER_DIR:-${TW_REPO_ROOT}/.cluster}"
NODE_DIR="${CLUSTER_DIR}/node"
KWOK_PKI="${CLUSTER_DIR}/kwok/clusters/tickwork/pki"
ADMIN_KUBECONFIG="${CLUSTER_DIR}/kubeconfig"
LOG_DIR="${NODE_DIR}/logs"
PID_DIR="${NODE_DIR}/pids"
# containerd's image store outlives the cluster (a warm start imports nothing); its
# runtime state, sockets and every container live in NODE_DIR and go with `down`.
CONTAINERD_ROOT="${TW_CACHE}/containerd-root"
# Unix socket paths are limited to 107 bytes: keep them short, whatever the checkout path.
RUN_DIR="/run/tickwork-$(printf '%s' "${CLUSTER_DIR}" | sha256sum | cut -c1-8)"
CONTAINERD_SOCK="${RUN_DIR}/containerd.sock"
CGROUP_PARENT=tickwork
NFT_TABLE=tickwork
READY_TIMEOUT_SECONDS="${TICKWORK_NODE_TIMEOUT_SECONDS:-120}"
# The host's kernel settings the kubelet changes (it sets them for its pods); restored by down.
KERNEL_SETTINGS=(vm/overcommit_memory vm/panic_on_oom kernel/panic kernel/panic_on_oops
  kernel/keys/root_maxkeys kernel/keys/root_maxbytes)

node_say() { tw_say "node: $*"; }

ctr_k8s() { ctr --address "${CONTAINERD_SOCK}" --namespace k8s.io "$@"; }

kube() { "${TW_KUBECTL}" --kubeconfig "${ADMIN_KUBECONFIG}" --request-timeout=5s "$@"; }

# -- packages ----------------------------------------------------------------------------

# Debian packages the node needs, installed only when a command is missing, without
# starting their services (containerd's own unit stays off: we run our own instance).
ensure_packages() {
  local missing=() pair cmd pkg
  for pair in containerd:containerd runc:runc socat:socat nft:nftables ip:iproute2 conntrack:conntrack \
    /usr/lib/cni/bridge:containernetworking-plugins openssl:openssl gcc:gcc; do
    cmd="${pair%%:*}" pkg="${pair#*:}"
    if [[ "${cmd}" == /* ]]; then [[ -x "${cmd}" ]] && continue; else command -v "${cmd}" >/dev/null && continue; fi
    missing+=("${pkg}")
  done
  [[ -e /usr/lib/x86_64-linux-gnu/libc.a || -e /usr/lib/libc.a ]] || missing+=(libc6-dev)
  (( ${#missing[@]} )) || return 0
  node_say "installing Debian packages: ${missing[*]}"
  local policy=/usr/sbin/policy-rc.d created_policy=false
  if [[ ! -e "${policy}" ]]; then
    printf '#!/bin/sh\n# tickwork: do not start services during this install\nexit 101\n' >"${policy}"
    chmod 0755 "${policy}"
    created_policy=true
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q --no-install-recommends "${missing[@]}" >"${TW_CACHE}/logs/node-apt.log" 2>&1 \
    || { apt-get update -q >>"${TW_CACHE}/logs/node-apt.log" 2>&1 \
      && apt-get install -y -q --no-install-recommends "${missing[@]}" >>"${TW_CACHE}/logs/node-apt.log" 2>&1; } \
    || { ${created_policy} && rm -f "${policy}"; node_say "apt-get install failed; see ${TW_CACHE}/logs/node-apt.log"; exit 1; }
  ${created_policy} && rm -f "${policy}"
  # Debian's containerd unit may have started anyway where systemd runs: ours is separate.
  if [[ -d /run/systemd/system ]]; then systemctl disable --now containerd.service >/dev/null 2>&1 || true; fi
}

# -- network -----------------------------------------------------------------------------

cmd_network_up() {
  ensure_packages
  mkdir -p "${NODE_DIR}"
  if ! ip link show "${NODE_BRIDGE}" >/dev/null 2>&1; then
    ip link add "${NODE_BRIDGE}" type bridge
  elif [[ ! -e "${NODE_DIR}/bridge.owner" ]]; then
    # Another checkout's cluster (or a crash) left it: only one real node per machine.
    local other
    other="$(cat "/run/tickwork-bridge.owner" 2>/dev/null || echo unknown)"
    if [[ "${other}" != "${CLUSTER_DIR}" && -d "${other}/node" ]]; then
      node_say "bridge ${NODE_BRIDGE} belongs to the cluster in ${other}; stop it first (make cluster-down there)"
      exit 1
    fi
  fi
  echo "${CLUSTER_DIR}" >/run/tickwork-bridge.owner
  touch "${NODE_DIR}/bridge.owner"
  ip addr replace "${NODE_IP}/${POD_CIDR#*/}" dev "${NODE_BRIDGE}"
  ip link set "${NODE_BRIDGE}" up
  # Forward (route) only what comes in on the bridge: pod -> Service -> pod. The global
  # switch (net.ipv4.ip_forward) stays as it was.
  sysctl -q -w "net.ipv4.conf.${NODE_BRIDGE}.forwarding=1"
  # The guard: nothing is forwarded between the bridge and another interface.
  nft -f - <<EOF
table inet ${NFT_TABLE}
delete table inet ${NFT_TABLE}
table inet ${NFT_TABLE} {
  comment "tickwork real node (hack/node.sh): pod traffic stays on ${NODE_BRIDGE}"
  chain forward {
    type filter hook forward priority filter - 10; policy accept;
    iifname "${NODE_BRIDGE}" oifname != "${NODE_BRIDGE}" counter drop
    oifname "${NODE_BRIDGE}" iifname != "${NODE_BRIDGE}" counter drop
  }
}
EOF
}

# -- certificates and configuration -------------------------------------------------------

# sign_cert NAME SUBJECT [SAN]: a key and a certificate signed by the control plane's CA.
sign_cert() {
  local name="$1" subject="$2" san="${3:-}" ext
  local dir="${NODE_DIR}/pki"
  [[ -s "${dir}/${name}.crt" ]] && return 0
  mkdir -p "${dir}"
  ext="$(mktemp)"
  {
    echo "basicConstraints=CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    echo "extendedKeyUsage=clientAuth,serverAuth"
    [[ -z "${san}" ]] || echo "subjectAltName=${san}"
  } >"${ext}"
  openssl req -new -newkey rsa:2048 -nodes -subj "${subject}" \
    -keyout "${dir}/${name}.key" -out "${dir}/${name}.csr" 2>/dev/null
  openssl x509 -req -in "${dir}/${name}.csr" -CA "${KWOK_PKI}/ca.crt" -CAkey "${KWOK_PKI}/ca.key" \
    -CAcreateserial -days 365 -extfile "${ext}" -out "${dir}/${name}.crt" 2>/dev/null
  rm -f "${ext}" "${dir}/${name}.csr"
  chmod 0600 "${dir}/${name}.key"
}

# write_kubeconfig NAME USER: a kubeconfig for the API server on 127.0.0.1 with NAME's cert.
write_kubeconfig() {
  local name="$1" user="$2" server
  server="$(kube config view --minify -o jsonpath='{.clusters[0].cluster.server}')"
  cat >"${NODE_DIR}/${name}.kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
  - name: tickwork
    cluster: {server: "${server}", certificate-authority: "${KWOK_PKI}/ca.crt"}
users:
  - name: ${user}
    user: {client-certificate: "${NODE_DIR}/pki/${name}.crt", client-key: "${NODE_DIR}/pki/${name}.key"}
contexts:
  - name: tickwork
    context: {cluster: tickwork, user: ${user}}
current-context: tickwork
EOF
  chmod 0600 "${NODE_DIR}/${name}.kubeconfig"
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

write_configs() {
  mkdir -p "${NODE_DIR}/cni/net.d" "${NODE_DIR}/cni/ipam" "${NODE_DIR}/kubelet" "${NODE_DIR}/pod-logs" \
    "${NODE_DIR}/containerd-state" "${CONTAINERD_ROOT}" "${RUN_DIR}" "${LOG_DIR}" "${PID_DIR}"
  sign_cert kubelet "/O=system:nodes/CN=system:node:${NODE_NAME}" "IP:${NODE_IP},DNS:${NODE_NAME}"
  sign_cert kube-proxy "/CN=system:kube-proxy"
  write_kubeconfig kubelet "system:node:${NODE_NAME}"
  write_kubeconfig kube-proxy system:kube-proxy

  cat >"${NODE_DIR}/containerd.toml" <<EOF
# Generated by hack/node.sh: the real node's own containerd (not the system's).
version = 2
root = "${CONTAINERD_ROOT}"
state = "${NODE_DIR}/containerd-state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]
[grpc]
  address = "${CONTAINERD_SOCK}"
[ttrpc]
  address = "${CONTAINERD_SOCK}.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "${PAUSE_IMAGE}"
  # root here lacks CAP_SYS_RESOURCE: never lower a sandbox's oom_score_adj below ours.
  restrict_oom_score_adj = true
  # Pod network namespaces under the state directory (not /var/run/netns): down finds them.
  netns_mounts_under_state_dir = true
  disable_apparmor = true
  enable_selinux = false
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "${NODE_DIR}/cni/net.d"
    max_conf_num = 1
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = ""
EOF

  # No default route in the pods: only the pod range (on the bridge) and the Service range.
  cat >"${NODE_DIR}/cni/net.d/10-tickwork.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "tickwork",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "${NODE_BRIDGE}",
      "isGateway": false,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "${NODE_DIR}/cni/ipam",
        "ranges": [[{"subnet": "${POD_CIDR}", "rangeStart": "${POD_RANGE_START}", "gateway": "${NODE_IP}"}]],
        "routes": [{"dst": "${SERVICE_CIDR}", "gw": "${NODE_IP}"}]
      }
    }
  ]
}
EOF

  printf 'nameserver %s\nsearch %s\n' "${NODE_IP}" "${CLUSTER_DOMAIN}" >"${NODE_DIR}/resolv.conf"
  local kubelet_port healthz_port
  kubelet_port="$(free_port)"
  healthz_port="$(free_port)"
  cat >"${NODE_DIR}/kubelet.yaml" <<EOF
# Generated by hack/node.sh.
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: ${NODE_IP}
port: ${kubelet_port}
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: ${healthz_port}
tlsCertFile: ${NODE_DIR}/pki/kubelet.crt
tlsPrivateKeyFile: ${NODE_DIR}/pki/kubelet.key
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: ${KWOK_PKI}/ca.crt}
authorization: {mode: Webhook}
containerRuntimeEndpoint: unix://${CONTAINERD_SOCK}
imageServiceEndpoint: unix://${CONTAINERD_SOCK}
cgroupDriver: cgroupfs
cgroupRoot: /${CGROUP_PARENT}
failCgroupV1: false
failSwapOn: false
clusterDNS: [${NODE_IP}]
clusterDomain: ${CLUSTER_DOMAIN}
resolvConf: ${NODE_DIR}/resolv.conf
podLogsDir: ${NODE_DIR}/pod-logs
registerWithTaints:
  - {key: ${NODE_TAINT_KEY}, value: "true", effect: ${NODE_TAINT_EFFECT}}
maxPods: 110
serializeImagePulls: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: 100Mi, nodefs.available: 1%, imagefs.available: 1%, nodefs.inodesFree: 1%}
makeIPTablesUtilChains: false
nodeStatusReportFrequency: 10s
nodeStatusUpdateFrequency: 5s
syncFrequency: 10s
fileCheckFrequency: 0s
staticPodPath: ""
shutdownGracePeriod: 0s
localStorageCapacityIsolation: true
EOF

  local proxy_metrics proxy_healthz
  proxy_metrics="$(free_port)"
  proxy_healthz="$(free_port)"
  cat >"${NODE_DIR}/kube-proxy.yaml" <<EOF
# Generated by hack/node.sh: nftables mode, rules only in the tables "ip/ip6 kube-proxy".
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: nftables
hostnameOverride: ${NODE_NAME}
clientConnection: {kubeconfig: ${NODE_DIR}/kube-proxy.kubeconfig}
clusterCIDR: ${POD_CIDR}
bindAddress: 127.0.0.1
metricsBindAddress: 127.0.0.1:${proxy_metrics}
healthzBindAddress: 127.0.0.1:${proxy_healthz}
nodePortAddresses: [${NODE_IP}/32]
# Leave the host's conntrack settings alone.
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
EOF

  local dns_ready
  dns_ready="$(free_port)"
  echo "${dns_ready}" >"${NODE_DIR}/coredns.ready-port"
  cat >"${NODE_DIR}/Corefile" <<EOF
# Generated by hack/node.sh: cluster names only; nothing is forwarded off this machine.
.:53 {
  bind ${NODE_IP}
  errors
  ready 127.0.0.1:${dns_ready}
  kubernetes ${CLUSTER_DOMAIN} in-addr.arpa ip6.arpa {
    kubeconfig ${ADMIN_KUBECONFIG}
    pods insecure
    fallthrough in-addr.arpa ip6.arpa
    ttl 5
  }
  cache 5
}
EOF
}

# -- processes ---------------------------------------------------------------------------

# start NAME CMD...: run CMD in the background (its own session, so a Ctrl-C of the caller
# does not reach it), log to LOG_DIR/NAME.log, pid in PID_DIR/NAME.pid.
start() {
  local name="$1"
  shift
  if [[ -s "${PID_DIR}/${name}.pid" ]] && kill -0 "$(cat "${PID_DIR}/${name}.pid")" 2>/dev/null; then
    return 0
  fi
  setsid "$@" >>"${LOG_DIR}/${name}.log" 2>&1 </dev/null 9>&- &
  echo $! >"${PID_DIR}/${name}.pid"
}

running() { [[ -s "${PID_DIR}/$1.pid" ]] && kill -0 "$(cat "${PID_DIR}/$1.pid")" 2>/dev/null; }

# stop NAME [SECONDS]: SIGTERM, then SIGKILL after SECONDS (default 10).
stop() {
  local name="$1" wait_s="${2:-10}" pid i
  [[ -s "${PID_DIR}/${name}.pid" ]] || return 0
  pid="$(cat "${PID_DIR}/${name}.pid")"
  if kill -0 "${pid}" 2>/dev/null; then
    kill -TERM "${pid}" 2>/dev/null || true
    for ((i = 0; i < wait_s * 10; i++)); do
      kill -0 "${pid}" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "${pid}" 2>/dev/null || true
  fi
  rm -f "${PID_DIR}/${name}.pid"
}

wait_until() {
  local what="$1" deadline=$((SECONDS + READY_TIMEOUT_SECONDS))
  shift
  until "$@" >/dev/null 2>&1; do
    if (( SECONDS >= deadline )); then
      node_say "timed out waiting for ${what}; logs in ${LOG_DIR}"
      exit 1
    fi
    sleep 0.3
  done
}

api_port() { kube config view --minify -o jsonpath='{.clusters[0].cluster.server}' | sed 's/.*://'; }

node_ready() {
  [[ "$(kube get node "${NODE_NAME}" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')" == True ]]
}

dns_ready() { curl -fsS "http://127.0.0.1:$(cat "${NODE_DIR}/coredns.ready-port")/ready"; }

save_kernel_settings() {
  [[ -e "${NODE_DIR}/kernel-settings" ]] && return 0
  local s
  for s in "${KERNEL_SETTINGS[@]}"; do
    [[ -e "/proc/sys/${s}" ]] && printf '%s %s\n' "${s}" "$(cat "/proc/sys/${s}")"
  done >"${NODE_DIR}/kernel-settings"
}

make_cgroups() {
  local c
  for c in /sys/fs/cgroup/*/; do
    [[ -d "${c}" && ! -L "${c%/}" && "${c}" != */unified/ ]] || continue
    mkdir -p "${c}${CGROUP_PARENT}"
  done
  # cpuset children start empty: copy the parent's CPUs and memory nodes.
  if [[ -d /sys/fs/cgroup/cpuset/${CGROUP_PARENT} ]]; then
    cat /sys/fs/cgroup/cpuset/cpuset.cpus >"/sys/fs/cgroup/cpuset/${CGROUP_PARENT}/cpuset.cpus"
    cat /sys/fs/cgroup/cpuset/cpuset.mems >"/sys/fs/cgroup/cpuset/${CGROUP_PARENT}/cpuset.mems"
  fi
}

# Containers left in containerd's store by a crash: their state is gone, remove them.
forget_containers() {
  local id
  for id in $(ctr_k8s containers ls -q 2>/dev/null); do
    ctr_k8s tasks kill -s KILL "${id}" >/dev/null 2>&1 || true
    ctr_k8s tasks delete -f "${id}" >/dev/null 2>&1 || true
    ctr_k8s containers delete "${id}" >/dev/null 2>&1 || true
  done
}

containerd_ready() { ctr_k8s version; }

cmd_up() {
  [[ -s "${ADMIN_KUBECONFIG}" ]] || { node_say "no control plane (${ADMIN_KUBECONFIG}); run hack/cluster.sh up"; exit 1; }
  ip link show "${NODE_BRIDGE}" >/dev/null 2>&1 || cmd_network_up
  cmd_images
  write_configs
  save_kernel_settings
  make_cgroups
  local start_s=${SECONDS}
  # Pods reach the API server through the `kubernetes` Service, whose endpoint is
  # NODE_IP:<port> (the API server's advertise address); the API server itself listens on
  # 127.0.0.1 only, so this relay carries the TLS stream from the bridge address to it.
  start api-relay socat "TCP-LISTEN:$(api_port),bind=${NODE_IP},reuseaddr,fork" "TCP:127.0.0.1:$(api_port)"
  start containerd containerd --config "${NODE_DIR}/containerd.toml"
  wait_until "containerd" containerd_ready
  forget_containers
  cmd_load_images
  start kubelet "$(dirname "${TW_KUBE_APISERVER}")/kubelet" \
    --config="${NODE_DIR}/kubelet.yaml" --kubeconfig="${NODE_DIR}/kubelet.kubeconfig" \
    --root-dir="${NODE_DIR}/kubelet" --cert-dir="${NODE_DIR}/pki" \
    --hostname-override="${NODE_NAME}" --node-ip="${NODE_IP}" \
    --node-labels="${NODE_LABEL_KEY}=${NODE_LABEL_VALUE}"
  start kube-proxy "$(dirname "${TW_KUBE_APISERVER}")/kube-proxy" --config="${NODE_DIR}/kube-proxy.yaml"
  start coredns "${TW_COREDNS}" -conf "${NODE_DIR}/Corefile"
  wait_until "the node ${NODE_NAME} to be Ready" node_ready
  wait_until "CoreDNS" dns_ready
  node_say "${NODE_NAME} Ready in $(tw_elapsed $((SECONDS - start_s))) (pods on ${POD_CIDR}, Services on ${SERVICE_CIDR})"
}

# -- images ------------------------------------------------------------------------------

buildah_() { STORAGE_DRIVER="${STORAGE_DRIVER:-vfs}" BUILDAH_ISOLATION="${BUILDAH_ISOLATION:-chroot}" buildah "$@"; }

cmd_images() {
  ensure_packages
  if ! buildah_ inspect --type image "${PAUSE_IMAGE}" >/dev/null 2>&1; then
    node_say "building ${PAUSE_IMAGE}"
    local tmp ctr_id
    tmp="$(mktemp -d)"
    gcc -O2 -static -o "${tmp}/pause" "${HACK_DIR}/node/pause.c"
    ctr_id="$(buildah_ from scratch)"
    buildah_ copy "${ctr_id}" "${tmp}/pause" /pause >/dev/null
    buildah_ config --entrypoint '["/pause"]' --user 65535:65535 \
      --label org.opencontainers.image.description="tickwork real node: pod sandbox" "${ctr_id}"
    buildah_ commit --quiet --rm "${ctr_id}" "${PAUSE_IMAGE}" >/dev/null
    rm -rf "${tmp}"
  fi
  if ! buildah_ inspect --type image "${TRY_REDIS_IMAGE}" >/dev/null 2>&1; then
    if ! buildah_ inspect --type image docker.io/library/python:3.11-slim-bookworm >/dev/null 2>&1; then
      node_say "the base image python:3.11-slim-bookworm is missing; run make images first"
      exit 1
    fi
    node_say "building ${TRY_REDIS_IMAGE}"
    local ca=/etc/ssl/certs/ca-certificates.crt
    buildah_ bud --quiet --format docker --pull=never --layers \
      ${ca:+--volume "$(readlink -f "${ca}"):/etc/ssl/certs/ca-certificates.crt:ro"} \
      -f "${HACK_DIR}/node/try-redis.Dockerfile" -t "${TRY_REDIS_IMAGE}" "${HACK_DIR}/node" >/dev/null
  fi
}

# The images pods on the real node use, as buildah name -> the name the kubelet asks for
# (a name without a registry means docker.io to the kubelet).
node_images() {
  local version
  version="$(python3 -c 'import tomllib; print(tomllib.load(open("'"${TW_REPO_ROOT}"'/pyproject.toml", "rb"))["project"]["version"])')"
  printf '%s %s\n' \
    "${PAUSE_IMAGE}" "${PAUSE_IMAGE}" \
    "${TRY_REDIS_IMAGE}" "${TRY_REDIS_IMAGE}" \
    "localhost/tickwork/operator:${version}" "docker.io/tickwork/operator:${version}" \
    "localhost/tickwork/worker:${version}" "docker.io/tickwork/worker:${version}" \
    "localhost/tickwork/example-worker:${version}" "docker.io/tickwork/example-worker:${version}"
}

# Import each image whose buildah ID differs from the one recorded on containerd's copy.
cmd_load_images() {
  local src dst id have tmp loaded=0
  tmp="$(mktemp -d "${TW_CACHE}/work/images.XXXXXX")"
  while read -r src dst; do
    id="$(buildah_ inspect --type image --format '{{.FromImageID}}' "${src}" 2>/dev/null || true)"
    if [[ -z "${id}" ]]; then
      node_say "image ${src} is not built (make images); pods using ${dst} will not start"
      continue
    fi
    have="$(ctr_k8s images ls "name==${dst}" 2>/dev/null | awk 'NR > 1 {print $NF}' | tr ',' '\n' \
      | sed -n 's/^tickwork.dev\/buildah-id=//p')"
    [[ "${have}" == "${id}" ]] && continue
    node_say "loading ${dst}"
    buildah_ push --quiet "${src}" "docker-archive:${tmp}/image.tar:${dst}" >/dev/null
    ctr_k8s images import --no-unpack=false "${tmp}/image.tar" >/dev/null
    ctr_k8s images label "${dst}" "tickwork.dev/buildah-id=${id}" >/dev/null
    rm -f "${tmp}/image.tar"
    loaded=$((loaded + 1))
  done < <(node_images)
  rm -rf "${tmp}"
  (( loaded == 0 )) || node_say "loaded ${loaded} image(s) into containerd"
}

# -- down --------------------------------------------------------------------------------

# The network namespaces of this node's pod sandboxes (from their OCI specs).
sandbox_netns() {
  local id
  for id in $(ctr_k8s containers ls -q 2>/dev/null); do
    ctr_k8s containers info "${id}" 2>/dev/null \
      | python3 -c 'import json, sys
spec = json.load(sys.stdin).get("Spec") or {}
for ns in (spec.get("linux") or {}).get("namespaces") or []:
    if ns.get("type") == "network" and ns.get("path"):
        print(ns["path"])' || true
  done | sort -u
}

cmd_down() {
  mkdir -p "${PID_DIR}"
  # Pods first, the way the kubelet stops them (SIGTERM, CNI teardown), while it still can.
  if running kubelet && [[ -s "${ADMIN_KUBECONFIG}" ]]; then
    kube delete pods --all-namespaces --field-selector "spec.nodeName=${NODE_NAME}" \
      --grace-period=1 --wait=false >/dev/null 2>&1 || true
    local i
    for ((i = 0; i < 40; i++)); do
      [[ -z "$(ctr_k8s tasks ls -q 2>/dev/null)" ]] && break
      sleep 0.25
    done
  fi
  stop kubelet 10
  stop kube-proxy 5
  stop coredns 5
  stop api-relay 2
  local netns=()
  if running containerd; then
    mapfile -t netns < <(sandbox_netns)
    forget_containers
  fi
  stop containerd 10
  # Shims whose containerd is gone (they carry our socket's address on their command line).
  pkill -KILL -f "containerd-shim-runc-v2 .*-address ${CONTAINERD_SOCK}" 2>/dev/null || true
  # kube-proxy's tables and our guard, when the network is this cluster's.
  local own_network=false
  [[ -e "${NODE_DIR}/bridge.owner" ]] && own_network=true
  if ${own_network}; then
    nft delete table ip kube-proxy 2>/dev/null || true
    nft delete table ip6 kube-proxy 2>/dev/null || true
    nft delete table inet "${NFT_TABLE}" 2>/dev/null || true
  fi
  # Mounts below the node's state (pod volumes, rootfs, shm) and the containerd root.
  local m
  while read -r m; do
    umount -l "${m}" 2>/dev/null || true
  done < <(awk '{print $2}' /proc/self/mounts | grep -E "^(${NODE_DIR}|${CONTAINERD_ROOT}|${RUN_DIR})/" | sort -r)
  local ns
  for ns in "${netns[@]}"; do
    [[ -n "${ns}" ]] || continue
    umount -l "${ns}" 2>/dev/null || true
    rm -f "${ns}"
  done
  if ${own_network} && ip link show "${NODE_BRIDGE}" >/dev/null 2>&1; then
    ip link delete "${NODE_BRIDGE}"
    rm -f /run/tickwork-bridge.owner
  fi
  # The kubelet's cgroups (deepest first), once their processes are gone.
  local c
  for c in /sys/fs/cgroup/*/"${CGROUP_PARENT}"; do
    [[ -d "${c}" ]] || continue
    find "${c}" -depth -type d -exec rmdir {} \; 2>/dev/null || true
  done
  # The kernel settings the kubelet changed.
  if [[ -s "${NODE_DIR}/kernel-settings" ]]; then
    local key value
    while read -r key value; do
      echo "${value}" >"/proc/sys/${key}" 2>/dev/null || true
    done <"${NODE_DIR}/kernel-settings"
  fi
  # The kubelet's links to pod logs.
  find /var/log/containers -maxdepth 1 -type l -lname "${NODE_DIR}/*" -delete 2>/dev/null || true
  rm -rf "${NODE_DIR}" "${RUN_DIR}"
}

case "${1:-}" in
  network-up) cmd_network_up ;;
  up) cmd_up ;;
  down) cmd_down ;;
  images) cmd_images ;;
  load-images) cmd_load_images ;;
  *)
    echo "usage: $0 network-up|up|down|images|load-images" >&2
    exit 2
    ;;
esac
