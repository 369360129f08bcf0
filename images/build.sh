#!/usr/bin/env bash
# Build the Tickwork images with buildah; no Docker engine needed. `make images` runs this.
#
#   tickwork/worker:<version>          images/worker/Dockerfile    (base for worker images)
#   tickwork/operator:<version>        images/operator/Dockerfile
#   tickwork/example-worker:<version>  examples/Dockerfile         (FROM tickwork/worker)
# each also tagged :dev. <version> is pyproject.toml's.
#
# The Dockerfiles are the ones a Docker user builds; their `FROM` image (the official
# Python image) is taken from local storage, else pulled, else — where Docker Hub cannot be
# reached — made locally from a Debian root filesystem by images/make-python-base.sh and
# tagged with the very name the Dockerfiles use.
#
# Environment: STORAGE_DRIVER (default vfs), BUILDAH_ISOLATION (default chroot),
# TICKWORK_CACHE (the base root filesystem cache), BUILDAH_BUD_FLAGS (extra `bud` flags,
# e.g. --no-cache), PYTHON (reads the version; default python3), TICKWORK_BUILD_CA_BUNDLE
# (the CA bundle RUN steps trust; default this machine's /etc/ssl/certs/ca-certificates.crt).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
export STORAGE_DRIVER=${STORAGE_DRIVER:-vfs}
export BUILDAH_ISOLATION=${BUILDAH_ISOLATION:-chroot}
DOCKERFILES=(images/worker/Dockerfile images/operator/Dockerfile examples/Dockerfile)

log() { printf '== %s\n' "$*" >&2; }

# One build at a time on this machine: a build prunes what the images no longer need, which
# would pull layers from under a build running beside it.
LOCK_DIR=${TICKWORK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tickwork}/images
mkdir -p "$LOCK_DIR"
exec 9>"$LOCK_DIR/build.lock"
if ! flock --nonblock 9; then
  log "another image build is running; waiting for it"
  flock 9
fi

# Debian packages, installed only when their command is missing.
ensure_command() {
  local cmd=$1 pkg=$2 sudo=
  command -v "$cmd" >/dev/null && return 0
  [ "$(id -u)" = 0 ] || sudo=sudo
  log "installing $pkg (Debian package)"
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$pkg" >/dev/null 2>&1 || {
    $sudo apt-get update -q >/dev/null
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$pkg" >/dev/null
  }
}

# docker.io/library/python:3.11-slim-bookworm for python:3.11-slim-bookworm, as Docker reads it.
qualified() {
  local name=$1 first=${1%%/*}
  if [[ $name != */* ]]; then
    name=docker.io/library/$name
  elif [[ $first != *.* && $first != *:* && $first != localhost ]]; then
    name=docker.io/$name
  fi
  printf '%s\n' "$name"
}

ensure_base_image() {
  local image=$1
  if buildah inspect --type image "$image" >/dev/null 2>&1; then
    log "base image $image: in local storage"
  elif timeout 60 buildah pull --quiet --retry 0 "$image" >/dev/null 2>&1; then
    log "base image $image: pulled"
  else
    log "base image $image: cannot be pulled; making it from a Debian root filesystem"
    ensure_command debootstrap debootstrap
    "$ROOT/images/make-python-base.sh" "$image"
  fi
}

ensure_command buildah buildah
VERSION=$("${PYTHON:-python3}" -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')
# The OCI revision label: the commit checked out (with -dirty when the tree has changes).
REVISION=$(git rev-parse HEAD 2>/dev/null || echo unknown)
if [[ "${REVISION}" != unknown && -n "$(git status --porcelain 2>/dev/null)" ]]; then
  REVISION="${REVISION}-dirty"
fi

# The external base images: every FROM that is not a stage name or a build argument.
mapfile -t bases < <(for f in "${DOCKERFILES[@]}"; do
  awk 'toupper($1) == "FROM" {
      img = ""; for (i = 2; i <= NF; i++) if ($i !~ /^--/) { img = $i; break }
      if (img !~ /^\$/ && !(tolower(img) in stage)) print img
      if (toupper($(NF - 1)) == "AS") stage[tolower($NF)] = 1
    }' "$f"
done | sort -u)
for base in "${bases[@]}"; do ensure_base_image "$(qualified "$base")"; done

# shellcheck disable=SC2206 # word-splitting of the extra flags is intended
BUD=(buildah bud --layers --force-rm --format docker --pull=never --build-arg "VERSION=$VERSION" --build-arg "REVISION=$REVISION" ${BUILDAH_BUD_FLAGS:-})
# RUN steps reach PyPI trusting what this machine trusts (a TLS-inspecting proxy's CA, say):
# its CA bundle is mounted over the image's for each step and never becomes part of a layer.
CA_BUNDLE=${TICKWORK_BUILD_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}
if [ -s "$CA_BUNDLE" ]; then
  BUD+=(--volume "$(readlink -f "$CA_BUNDLE"):/etc/ssl/certs/ca-certificates.crt:ro")
fi
build() {
  local name=$1 dockerfile=$2; shift 2
  # The builder stage gets a tag of its own, so that pruning below keeps its layer cache.
  if grep -qiE '^FROM .* AS builder$' "$dockerfile"; then
    log "build $name-builder:$VERSION (the builder stage, kept as layer cache)"
    "${BUD[@]}" "$@" --target builder -f "$dockerfile" -t "$name-builder:$VERSION" .
  fi
  log "build $name:$VERSION ($dockerfile)"
  "${BUD[@]}" "$@" -f "$dockerfile" -t "$name:$VERSION" -t "$name:dev" .
}
build tickwork/worker images/worker/Dockerfile
build tickwork/operator images/operator/Dockerfile
build tickwork/example-worker examples/Dockerfile --build-arg BASE_IMAGE=tickwork/worker --build-arg "BASE_TAG=$VERSION"

# With vfs every layer is a full copy: drop the layers no tagged image needs any more (those
# of earlier builds), so repeated builds do not fill the disk.
buildah rmi --prune >/dev/null 2>&1 || true

log "images (uncompressed size)"
buildah images --format '{{.Name}}:{{.Tag}}  {{.Size}}' \
  | awk -v v=":$VERSION" '$1 ~ "^localhost/tickwork/" && $1 !~ /-builder:/ && index($1, v) == length($1) - length(v) + 1 { printf "  %-44s %s %s\n", $1, $2, $3 }' | sort
