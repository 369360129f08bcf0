#!/usr/bin/env bash
# Build hack/kstatus (a small main on sigs.k8s.io/cli-utils' kstatus) once, into a cache
# directory outside the repository:
#
#   hack/build-kstatus.sh BINARY
#
# The sources are copied to BINARY's .work directory and built there (go.sum is made there,
# from the Go module proxy); a binary newer than hack/kstatus/ is kept; a failed build leaves
# nothing behind.
set -euo pipefail

binary=$1
src="$(cd "$(dirname "${BASH_SOURCE[0]}")/kstatus" && pwd)"
out_dir=$(dirname "${binary}") name=$(basename "${binary}")
if [[ -x "${binary}" && ! "${src}/main.go" -nt "${binary}" && ! "${src}/go.mod" -nt "${binary}" ]]; then
  exit 0
fi
command -v go >/dev/null || { echo "building ${name} needs the go command on PATH" >&2; exit 1; }
work="${out_dir}.work"
rm -rf "${work}"
mkdir -p "${work}" "${out_dir}"
trap 'rm -rf "${work}" "${out_dir}/.${name}.tmp"' EXIT
echo "== building ${name} (hack/kstatus) into ${out_dir}" >&2
cp "${src}/main.go" "${src}/go.mod" "${work}/"
(
  cd "${work}"
  go mod tidy >/dev/null 2>&1 || go mod tidy
  CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS="${GOFLAGS:-} -mod=mod -trimpath" \
    go build -ldflags "-s -w" -o "${out_dir}/.${name}.tmp" .
)
mv -f "${out_dir}/.${name}.tmp" "${binary}"
echo "== built ${binary}" >&2
