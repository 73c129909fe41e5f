#!/usr/bin/env bash
# A Kubernetes control plane and node for the tests of the Kubernetes executor, built once from
# Debian's source package (no prebuilt kube-apiserver or kubelet is installable here): etcd,
# containerd, runc and the CNI plugins are Debian packages; kube-apiserver,
# kube-controller-manager, kube-scheduler and kubelet (v1.20.2) are built with Debian's Go into a
# cache outside the checkout, reused while it exists (about 10 minutes on 2 cores when absent).
#   scripts/kubernetes.sh          install and build what is missing; prints the binaries' folder
# The cache: $PRIMAGE_KUBE_CACHE, default /var/cache/primage/kubernetes-1.20.2 (root) or
# ~/.cache/primage/kubernetes-1.20.2. Nothing here starts a service: the tests do (tests/kube.py).
set -euo pipefail
VERSION=1.20.2
SOURCE_VERSION=1.20.5+really1.20.2
if [ "$(id -u)" = 0 ]; then default=/var/cache/primage/kubernetes-$VERSION
else default=${XDG_CACHE_HOME:-$HOME/.cache}/primage/kubernetes-$VERSION; fi
K=${PRIMAGE_KUBE_CACHE:-$default}
BIN=$K/bin
WHAT=(kube-apiserver kube-controller-manager kube-scheduler kubelet)
missing=()
command -v etcd >/dev/null || missing+=(etcd-server)
command -v containerd >/dev/null || missing+=(containerd)
command -v runc >/dev/null || missing+=(runc)
[ -x /usr/lib/cni/loopback ] || missing+=(containernetworking-plugins)
command -v gcc >/dev/null || missing+=(gcc libc6-dev)
command -v openssl >/dev/null || missing+=(openssl)
command -v ip >/dev/null || missing+=(iproute2)
command -v iptables >/dev/null || missing+=(iptables)
built=true
for b in "${WHAT[@]}"; do [ -x "$BIN/$b" ] || built=false; done
if ! $built; then
  command -v go >/dev/null || missing+=(golang-go)
  command -v rsync >/dev/null || missing+=(rsync)
  command -v jq >/dev/null || missing+=(jq)
fi
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "not root: the Kubernetes tests need ${missing[*]} (sudo apt-get install ${missing[*]})" >&2
    exit 1
  fi
  echo "installing ${missing[*]} (Debian packages) for the Kubernetes tests" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Debian's containerd package starts a daemon of its own; the tests run theirs.
if command -v systemctl >/dev/null && systemctl is-active --quiet containerd 2>/dev/null; then
  systemctl stop containerd >/dev/null 2>&1 || true
fi
if ! $built; then
  echo "building Kubernetes $VERSION from Debian's source package into $K (once; about 10 min)" >&2
  mkdir -p "$K"/{src,apt/lists/partial,apt/cache/archives/partial,gocache,gotmp,home}
  if [ ! -d "$K/src/kubernetes-$VERSION" ]; then
    mirror=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
    mirror=${mirror:-http://deb.debian.org/debian}
    codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")
    echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror $codename main" > "$K/apt/src.list"
    O=(-o Dir::Etc::SourceList="$K/apt/src.list" -o Dir::Etc::SourceParts=/dev/null
       -o Dir::State::Lists="$K/apt/lists" -o Dir::Cache="$K/apt/cache")
    apt-get "${O[@]}" update -qq
    (cd "$K/src" && apt-get "${O[@]}" source --download-only -qq kubernetes >/dev/null \
      && tar xzf "kubernetes_$SOURCE_VERSION.orig.tar.gz")
  fi
  (cd "$K/src/kubernetes-$VERSION" \
    && GOCACHE=$K/gocache GOPROXY=off GOTMPDIR=$K/gotmp HOME=$K/home GOFLAGS=-mod=vendor \
       make WHAT="cmd/kube-apiserver cmd/kube-controller-manager cmd/kube-scheduler cmd/kubelet" \
            KUBE_BUILD_PLATFORMS=linux/amd64 >"$K/build.log" 2>&1) \
    || { tail -30 "$K/build.log" >&2; exit 1; }
  mkdir -p "$BIN.new"
  for b in "${WHAT[@]}"; do cp "$K/src/kubernetes-$VERSION/_output/bin/$b" "$BIN.new/"; done
  # The pod sandbox ("pause") image's program, from the same source.
  gcc -Os -static -DVERSION=v3.4.1-local -o "$BIN.new/pause" \
    "$K/src/kubernetes-$VERSION/build/pause/linux/pause.c"
  rm -rf "$BIN" && mv "$BIN.new" "$BIN"
  # The source and Go's caches are 4 GB: keep only the binaries.
  rm -rf "$K/src" "$K/gocache" "$K/gotmp" "$K/home"
fi
echo "$BIN"
