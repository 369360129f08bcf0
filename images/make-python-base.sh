#!/usr/bin/env bash
# Make a local stand-in for the official Python image from a Debian root filesystem.
#
#   images/make-python-base.sh IMAGE_NAME        e.g. docker.io/library/python:3.11-slim-bookworm
#
# Used by images/build.sh only when that image can be neither found in local storage nor
# pulled (no Docker Hub here). The result matches what the Dockerfiles rely on in the
# official image: Debian bookworm, Python 3.11 with venv and pip, `python`, `python3` and
# `pip` on PATH in /usr/local/bin, pip allowed to install system-wide (no EXTERNALLY-MANAGED
# marker), CA certificates, tzdata, netbase, LANG=C.UTF-8, no apt lists and no docs.
#
# The Debian mirror is the one this machine's apt uses (read from /etc/apt at run time).
# The root filesystem is cached as a tarball in $TICKWORK_CACHE/images (default
# ${XDG_CACHE_HOME:-~/.cache}/tickwork/images), keyed by this script's content, so a lost
# image store is rebuilt in seconds. Delete the tarball to refresh the Debian packages.
# Needs root (debootstrap, chroot) and buildah; buildah's storage driver and isolation come
# from STORAGE_DRIVER / BUILDAH_ISOLATION (images/build.sh sets vfs and chroot).
set -euo pipefail

IMAGE=${1:?usage: $0 IMAGE_NAME}
SUITE=bookworm
PACKAGES=python3,python3-venv,python3-pip,ca-certificates,tzdata,netbase
ARCH=$(dpkg --print-architecture)
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CACHE=${TICKWORK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/tickwork}/images
KEY=$(sha256sum "$HERE/make-python-base.sh" | cut -c1-12)
TARBALL=$CACHE/python-base-$SUITE-$ARCH-$KEY.tar.gz

log() { printf '== %s\n' "$*" >&2; }

# The first URI of an enabled apt source serving SUITE (SUITE-security with a suffix),
# from one-line .list files and deb822 .sources files.
apt_mirror() {
  local suite=$1
  {
    cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
      | awk -v s="$suite" '$1 == "deb" { i = 2; if ($2 ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
                                         if ($(i + 1) == s) print $i }'
    for f in /etc/apt/sources.list.d/*.sources; do
      [ -e "$f" ] || continue
      awk -v s="$suite" '
        BEGIN { RS = ""; FS = "\n" }
        { types = uris = suites = ""; enabled = 1
          for (n = 1; n <= NF; n++) {
            split($n, kv, ":[ \t]*"); k = tolower(kv[1]); v = substr($n, length(kv[1]) + 2)
            gsub(/^[ \t]+|[ \t]+$/, "", v)
            if (k == "types") types = v; else if (k == "uris") uris = v
            else if (k == "suites") suites = v; else if (k == "enabled" && tolower(v) == "no") enabled = 0
          }
          if (enabled && (" " types " ") ~ / deb / && (" " suites " ") ~ (" " s " ")) { split(uris, u, " "); print u[1] }
        }' "$f"
    done
  } | head -n1
}

make_rootfs() {
  local mirror security rootfs
  mirror=$(apt_mirror "$SUITE")
  [ -n "$mirror" ] || { echo "no apt source for Debian $SUITE in /etc/apt: cannot make the base image" >&2; exit 1; }
  security=$(apt_mirror "$SUITE-security")
  command -v debootstrap >/dev/null || { echo "debootstrap is missing (apt-get install debootstrap)" >&2; exit 1; }

  rootfs=$(mktemp -d "$CACHE/rootfs.XXXXXX")
  chmod 0755 "$rootfs"
  trap 'umount -R "'"$rootfs"'"/proc "'"$rootfs"'"/sys 2>/dev/null || true; rm -rf --one-file-system "'"$rootfs"'"' EXIT
  log "debootstrap --variant=minbase $SUITE (this machine's Debian mirror; a few minutes)"
  debootstrap --variant=minbase --include="$PACKAGES" --arch="$ARCH" "$SUITE" "$rootfs" "$mirror" \
    >"$CACHE/debootstrap.log" 2>&1 || { tail -n 30 "$CACHE/debootstrap.log" >&2; exit 1; }

  # Same sources as this machine (main, updates, security), so the image's apt works like
  # the official image's and this step can take the security updates.
  {
    printf 'Types: deb\nURIs: %s\nSuites: %s %s-updates\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
      "$mirror" "$SUITE" "$SUITE"
    if [ -n "$security" ]; then
      printf '\nTypes: deb\nURIs: %s\nSuites: %s-security\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
        "$security" "$SUITE"
    fi
  } >"$rootfs/etc/apt/sources.list.d/debian.sources"
  : >"$rootfs/etc/apt/sources.list"
  cp /etc/resolv.conf "$rootfs/etc/resolv.conf"
  # Like Debian's slim images: no docs, man pages or translations now or in later installs.
  cat >"$rootfs/etc/dpkg/dpkg.cfg.d/docker" <<'CFG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
CFG
  mount -t proc proc "$rootfs/proc"
  log "apt-get dist-upgrade inside the root filesystem (security updates)"
  chroot "$rootfs" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive \
    sh -euc 'apt-get update -q && apt-get -y -q -o Dpkg::Options::=--force-confold dist-upgrade
             apt-get clean' >"$CACHE/upgrade.log" 2>&1 || { tail -n 30 "$CACHE/upgrade.log" >&2; exit 1; }
  umount "$rootfs/proc"

  log "python, python3 and pip in /usr/local/bin; pip may install system-wide"
  rm -f "$rootfs"/usr/lib/python3*/EXTERNALLY-MANAGED
  local py='' candidate
  for candidate in "$rootfs"/usr/bin/python3.[0-9]*; do
    [[ ${candidate##*/} =~ ^python3\.[0-9]+$ ]] && { py=${candidate##*/}; break; }
  done
  [ -n "$py" ] || { echo "no python3.X in the root filesystem" >&2; exit 1; }
  for name in python python3 "$py"; do ln -sf "/usr/bin/$py" "$rootfs/usr/local/bin/$name"; done
  for name in pip pip3 "pip${py#python}"; do ln -sf /usr/bin/pip3 "$rootfs/usr/local/bin/$name"; done

  log "clean: apt lists, caches, logs, docs, device nodes"
  find "$rootfs/usr/share/doc" -mindepth 2 ! -name copyright ! -type d -delete 2>/dev/null || true
  find "$rootfs/usr/share/doc" -mindepth 1 -type d -empty -delete 2>/dev/null || true
  find "$rootfs/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
  (
    cd "${rootfs:?}"
    rm -rf usr/share/{man,info,groff,lintian,linda}/* var/lib/apt/lists/* var/cache/apt/*.bin \
      var/cache/apt/archives/*.deb var/cache/debconf/*-old var/lib/dpkg/*-old var/log/* \
      tmp/* var/tmp/* root/.cache dev/* etc/resolv.conf etc/hostname debootstrap
  )
  find "$rootfs/usr/lib" -name __pycache__ -type d -prune -exec rm -rf {} +
  : >"$rootfs/etc/machine-id"

  log "cache the root filesystem: $TARBALL"
  tar --numeric-owner --xattrs -C "$rootfs" -cf - . | gzip -1 >"$TARBALL.tmp"
  mv "$TARBALL.tmp" "$TARBALL"
  find "$CACHE" -maxdepth 1 -name "python-base-$SUITE-$ARCH-*.tar.gz" ! -path "$TARBALL" -delete
  rm -rf --one-file-system "$rootfs"
  trap - EXIT
}

mkdir -p "$CACHE"
exec 9>"$CACHE/python-base.lock"
flock 9
if [ ! -s "$TARBALL" ]; then
  make_rootfs
else
  log "root filesystem from the cache: $TARBALL"
fi

log "import as $IMAGE"
ctr=$(buildah from scratch)
trap 'buildah rm "'"$ctr"'" >/dev/null 2>&1 || true' EXIT
mnt=$(buildah mount "$ctr")
tar --numeric-owner --xattrs -C "$mnt" -xzpf "$TARBALL"
buildah umount "$ctr" >/dev/null
pyver=$(buildah run "$ctr" -- /usr/local/bin/python3 -c 'import platform; print(platform.python_version())')
buildah config \
  --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  --env LANG=C.UTF-8 \
  --env PYTHON_VERSION="$pyver" \
  --cmd '["python3"]' \
  --label org.opencontainers.image.description="Local stand-in for $IMAGE: Debian $SUITE minbase with Debian's Python $pyver (made by tickwork images/make-python-base.sh)" \
  --label org.opencontainers.image.base.name="debian:$SUITE" \
  "$ctr"
buildah commit --quiet --rm "$ctr" "$IMAGE" >/dev/null
trap - EXIT
log "made $IMAGE (Python $pyver)"
