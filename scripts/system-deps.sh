#!/usr/bin/env bash
# Install what the tests start for real, when missing: PostgreSQL, rclone, FUSE 3, davfs2,
# podman with runc and catatonit, busybox-static (a tiny image's contents), docker-registry,
# mmdebstrap (base images from Debian's packages), Slurm and munge (a cluster on loopback for the
# Slurm executor), a Kubernetes 1.20 cluster built from Debian's source (scripts/kubernetes.sh),
# bubblewrap and slirp4netns (the sandbox of local
# tasks and apps) (Debian packages), Node.js and the test identity provider (npm oidc-provider,
# pinned by tests/idp/package-lock.json).
# The tests themselves start and stop their own services; nothing here starts one.
#   scripts/system-deps.sh sandbox   only what the platform's sandbox needs (./run demo)
set -euo pipefail
cd "$(dirname "$0")/.."
missing=()
command -v bwrap >/dev/null || missing+=(bubblewrap)
command -v slirp4netns >/dev/null || missing+=(slirp4netns)
if [ "${1:-}" = sandbox ]; then
  if [ ${#missing[@]} -gt 0 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing ${missing[*]} (Debian packages) for the sandbox of jobs and apps" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  elif [ ${#missing[@]} -gt 0 ]; then
    echo "not root: jobs run unconfined until you install ${missing[*]} (sudo apt-get install ${missing[*]})" >&2
  fi
  exit 0
fi
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null || missing+=(postgresql)
command -v rclone >/dev/null || missing+=(rclone)
command -v fusermount3 >/dev/null || missing+=(fuse3)
command -v mount.davfs >/dev/null || missing+=(davfs2)
command -v podman >/dev/null || missing+=(podman)
command -v runc >/dev/null || missing+=(runc)
[ -x /usr/libexec/podman/catatonit ] || command -v catatonit >/dev/null || missing+=(catatonit)
[ -x /bin/busybox ] || missing+=(busybox-static)
command -v docker-registry >/dev/null || missing+=(docker-registry)
command -v mmdebstrap >/dev/null || missing+=(mmdebstrap)
[ -x /usr/sbin/slurmctld ] || missing+=(slurmctld)
[ -x /usr/sbin/slurmd ] || missing+=(slurmd)
command -v sbatch >/dev/null || missing+=(slurm-client)
[ -x /usr/sbin/munged ] || missing+=(munge)
command -v git >/dev/null || missing+=(git)
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing ${missing[*]} (Debian packages) for the tests" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    # Debian's package starts a cluster of its own; the tests use their own, so stop it.
    command -v pg_ctlcluster >/dev/null && service postgresql stop >/dev/null 2>&1 || true
  else
    echo "not root: tests needing ${missing[*]} will skip (install: sudo apt-get install ${missing[*]})" >&2
  fi
fi
# The Kubernetes cluster of the Kubernetes executor's tests: built once into a cache (as root).
if [ "$(id -u)" = 0 ]; then
  bash scripts/kubernetes.sh >/dev/null
else
  echo "not root: the Kubernetes tests will skip (their kubelet and containerd run as root)" >&2
fi
# The OpenID Provider the security tests log in at: reinstalled when its lock file changes.
idp=tests/idp
if command -v npm >/dev/null && [ ! "$idp/node_modules/.package-lock.json" -nt "$idp/package-lock.json" ]; then
  echo "installing the test identity provider (npm ci in $idp)" >&2
  (cd "$idp" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi
