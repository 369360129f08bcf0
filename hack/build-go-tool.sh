#!/usr/bin/env bash
# Build one Go command-line tool from the Go module proxy, once, into a cache directory:
#
#   hack/build-go-tool.sh BINARY MODULE VERSION PACKAGE [ETC_DIR]
#
# builds PACKAGE (a main package of MODULE@VERSION) as the file BINARY.
# It is built in a small wrapper module that requires MODULE@VERSION (`go install pkg@version`
# would also ask the proxy for the module's version list, which it need not serve). With
# ETC_DIR, the module's ETC_DIR folder (chart-testing's default config files) is copied to
# etc/ beside BINARY. A binary already there is kept; a failed build leaves nothing behind.
set -euo pipefail

binary=$1 module=$2 version=$3 pkg=$4 etc=${5:-}
out_dir=$(dirname "${binary}") name=$(basename "${binary}")
if [[ -x "${binary}" && ( -z "${etc}" || -d "${out_dir}/etc" ) ]]; then
  exit 0
fi
command -v go >/dev/null || { echo "building ${name} needs the go command on PATH" >&2; exit 1; }

work="${out_dir}.work"
rm -rf "${work}"
mkdir -p "${work}" "${out_dir}"
trap 'rm -rf "${work}" "${out_dir}/.${name}.tmp"' EXIT
echo "== building ${name} ${version} (${module}) into ${out_dir}" >&2
(
  cd "${work}"
  go mod init "tickwork.local/tools/${name}" >/dev/null 2>&1
  go get "${module}@${version}" >/dev/null 2>&1 || go get "${module}@${version}"
  kind=$(go list -f '{{.Name}}' "${pkg}")
  [[ "${kind}" == main ]] || { echo "${pkg} is package ${kind}, not a command (package main)" >&2; exit 1; }
  CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS="${GOFLAGS:-} -mod=mod -trimpath" \
    go build -ldflags "-s -w" -o "${out_dir}/.${name}.tmp" "${pkg}"
  if [[ -n "${etc}" ]]; then
    src="$(go list -m -f '{{.Dir}}' "${module}")/${etc}"
    rm -rf "${out_dir:?}/etc"
    cp -R "${src}" "${out_dir}/etc"
    chmod -R u+w "${out_dir}/etc"
  fi
)
mv -f "${out_dir}/.${name}.tmp" "${binary}"
echo "== built ${binary}" >&2
