#!/usr/bin/env bash
# Build and run the Metaserve image with rootful podman on a Debian 12 host that reaches apt's mirror
# and a Python package index but no image registry (so no python:3.11-slim to pull).
#
#   deploy/container/podman.sh build [TAG]     # the base (once), then the Dockerfile; prints size and time
#   deploy/container/podman.sh podman ARGS...  # podman with this host's runtime settings (run, exec, rmi ...)
#
# Environment (defaults in brackets):
#   METASERVE_CONTAINER_WORK  [/var/tmp/metaserve-container]  containers.conf and the build's pip settings
#   METASERVE_CONTAINER_BASE  [localhost/python:3.11-slim]    the base image; built with mmdebstrap if absent
#   METASERVE_APT_MIRROR      [the first Debian mirror in apt's sources]
# Where a registry is reachable, `docker build -t metaserve .` needs none of this.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
PROJECT=$(cd "$HERE/../.." && pwd)
WORK=${METASERVE_CONTAINER_WORK:-/var/tmp/metaserve-container}
BASE=${METASERVE_CONTAINER_BASE:-localhost/python:3.11-slim}
mkdir -p "$WORK"

need_tools() {
  command -v podman >/dev/null && command -v mmdebstrap >/dev/null && command -v runc >/dev/null && return 0
  [ "$(id -u)" = 0 ] || { echo "podman, mmdebstrap and runc are missing; install them as root" >&2; exit 3; }
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman buildah mmdebstrap runc uidmap >/dev/null
}

# Runtime settings: podman's default RLIMIT_NOFILE/NPROC (1048576) exceed what an unprivileged VM
# may set, and crun refuses hybrid cgroups; runc with cgroupfs and limits within the hard ones works.
write_conf() {
  local nofile nproc
  nofile=$(ulimit -Hn); [ "$nofile" = unlimited ] && nofile=1048576
  nproc=$(ulimit -Hu); { [ "$nproc" = unlimited ] || [ "$nproc" -gt 32768 ]; } && nproc=32768
  cat >"$WORK/containers.conf" <<EOF
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
EOF
}

# A python:3.11-slim stand-in: Debian bookworm's python3 (3.11), minimal, no apt lists.
build_base() {
  podman image exists "$BASE" && return 0
  local mirror=${METASERVE_APT_MIRROR:-}
  if [ -z "$mirror" ]; then
    mirror=$(grep -rhoE "^(URIs:|deb) +[a-z]+://[^ ]+/debian/?" /etc/apt/sources.list /etc/apt/sources.list.d/ \
             2>/dev/null | awk '{print $2}' | head -1 || true)
  fi
  mirror=${mirror:-http://deb.debian.org/debian}
  mirror=${mirror%/}
  mmdebstrap --quiet --variant=minbase --aptopt='Apt::Install-Recommends "false"' \
    --include=python3,python3-pip,python3-venv,python-is-python3,ca-certificates \
    --customize-hook='rm -f "$1"/usr/lib/python3*/EXTERNALLY-MANAGED; rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*' \
    bookworm "$WORK/base.tar" "deb $mirror bookworm main" "deb $mirror bookworm-updates main" \
    "deb ${mirror%/debian}/debian-security bookworm-security main"
  podman import --change 'ENV LANG=C.UTF-8' --change 'CMD ["python3"]' "$WORK/base.tar" "$BASE" >/dev/null
  rm -f "$WORK/base.tar"
}

# pip inside the build, mounted at /etc/xdg/pip for the RUN steps only (nothing of it stays in the
# image): the host's index, its CA bundle and its local wheel folder (where the CPU torch wheel is);
# TORCH_INDEX_URL points the Dockerfile's torch step at the host's index (PyTorch's is unreachable).
pip_mounts() {
  local pipd="$WORK/pip" wheels cert
  mkdir -p "$pipd/wheels"  # the wheel folder's mount point inside this read-only mount
  INDEX=$(pip config get global.index-url 2>/dev/null || echo https://pypi.org/simple)
  cert=$(pip config get global.cert 2>/dev/null || echo /etc/ssl/certs/ca-certificates.crt)
  cp "$cert" "$pipd/ca.crt"
  wheels=$(pip config get global.find-links 2>/dev/null | awk '{print $1}' || true)
  printf '[global]\nextra-index-url = %s\nfind-links = /etc/xdg/pip/wheels\ncert = /etc/xdg/pip/ca.crt\ntimeout = 60\n' \
    "$INDEX" >"$pipd/pip.conf"
  MOUNTS=(-v "$pipd:/etc/xdg/pip:ro")
  if [ -n "$wheels" ] && [ -d "$wheels" ]; then MOUNTS+=(-v "$wheels:/etc/xdg/pip/wheels:ro"); fi
}

export CONTAINERS_CONF="$WORK/containers.conf"
case "${1:-}" in
  build)
    tag=${2:-localhost/metaserve:latest}
    need_tools
    write_conf
    t0=$(date +%s)
    build_base
    t1=$(date +%s)
    pip_mounts
    podman build --quiet --format docker --network=host --from "$BASE" "${MOUNTS[@]}" \
      --build-arg TORCH_INDEX_URL="$INDEX" -t "$tag" "$PROJECT" >/dev/null
    t2=$(date +%s)
    echo "base: $((t1 - t0)) s, image: $((t2 - t1)) s, size: $(podman image inspect "$tag" --format '{{.Size}}') bytes"
    ;;
  podman)
    shift
    [ -f "$CONTAINERS_CONF" ] || write_conf
    exec podman "$@"
    ;;
  *)
    sed -n '2,12p' "$0" >&2
    exit 2
    ;;
esac
