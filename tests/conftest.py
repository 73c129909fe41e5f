"""Fixtures for primage's tests. Everything is real: servers are subprocesses on loopback.

- ``pg_cluster`` (session): a PostgreSQL cluster of its own in a temp dir on a free port, started
  with the server binaries from Debian's package and stopped at the end. Skips when PostgreSQL is
  not installed, except under ``CI=true`` where it fails.
- ``database_url`` (parametrised ``sqlite`` / ``postgres``): a fresh, empty database.
- ``server``: a ``primage server`` process on a free loopback port, on ``database_url``, with its
  own data dir; stopped after the test. ``server.client()`` and ``server.cli()`` talk to it.
- ``sqlite_server``: the same, on SQLite only (for tests where the backend does not matter).
- ``sandboxed_server``: a server on SQLite whose jobs run as sandboxed processes, two at a time
  (bubblewrap and slirp4netns required: it skips without them, fails under ``CI=true``).
- ``slurm_cluster`` (session): munged, slurmctld and slurmd of Debian's slurm-wlm on loopback,
  under a temp dir (``SLURM_CONF`` in its ``env``); stopped at the end.
- ``hpc``: a server with two executors, ``local`` (the default) and ``hpc`` (``slurm_cluster``),
  jobs of both sandboxed.
- ``idp`` (session): a real OpenID Provider (npm oidc-provider) configured like EGI Check-in.
- ``oidc_server``: a server on SQLite trusting ``idp``, listening where the provider's web client
  may redirect to.
- ``container_env`` (session): a podman store of its own (rootful, runc, cgroupfs: a cgroup v1
  host's settings) holding ``harness.BUSYBOX``; the environment podman and the platform's
  ``container_env`` setting run with. Removed at the end.
- ``python_base`` (session): ``primage image bootstrap`` run once into that store: the Debian
  Python base (``harness.PYTHON_BASE``) that the segmentation example's Dockerfile starts from.
- ``registry``: a server with containers on and a real Docker Distribution registry that uses it
  as its token server; yields (server, registry host:port).
- ``clusters_with_registry``: the same, with a Slurm executor (``hpc``) and a Kubernetes one
  (``kube``) whose nodes pull images from that registry.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import kube
from tests.harness import (
    BUSYBOX,
    PYTHON_BASE,
    PostgresCluster,
    RunningServer,
    SlurmCluster,
    import_busybox,
    platform_with_registry,
    podman_store,
    primage,
    require,
    require_tool,
    start_postgres,
)
from tests.idp import IdentityProvider, why_unavailable
from tests.kube import KubeCluster

_db_counter = itertools.count()


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[PostgresCluster]:
    # Not under pytest's tmp dir: that is mode 0700 and the 'postgres' user must reach it.
    workdir = Path(tempfile.mkdtemp(prefix="primage-pg-"))
    cluster = start_postgres(workdir)
    if isinstance(cluster, str):
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL is required under CI: {cluster}")
        pytest.skip(cluster)
    try:
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'db.sqlite'}"
    cluster: PostgresCluster = request.getfixturevalue("pg_cluster")
    return cluster.create_database(f"t{next(_db_counter)}")


@pytest.fixture
def server(database_url: str, tmp_path: Path) -> Iterator[RunningServer]:
    running = RunningServer.start(tmp_path / "data", database_url)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def sqlite_server(tmp_path: Path) -> Iterator[RunningServer]:
    running = RunningServer.start(tmp_path / "data", f"sqlite:///{tmp_path / 'db.sqlite'}")
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="session")
def idp() -> Iterator[IdentityProvider]:
    require(why_unavailable())
    workdir = Path(tempfile.mkdtemp(prefix="primage-idp-"))
    provider = IdentityProvider(workdir).start()
    try:
        yield provider
    finally:
        provider.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def _oidc_server(idp: IdentityProvider, tmp_path: Path, **env: str) -> Iterator[RunningServer]:
    running = RunningServer.start(
        tmp_path / "data",
        f"sqlite:///{tmp_path / 'db.sqlite'}",
        env={**idp.server_env(), **env},
        port=idp.web_port,
    )
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def oidc_server(idp: IdentityProvider, tmp_path: Path) -> Iterator[RunningServer]:
    yield from _oidc_server(idp, tmp_path)


@pytest.fixture
def oidc_server_fast_recheck(idp: IdentityProvider, tmp_path: Path) -> Iterator[RunningServer]:
    """Web sessions re-check group membership every 10 s (the shortest allowed)."""
    yield from _oidc_server(idp, tmp_path, PRIMAGE_MEMBERSHIP_CHECK_SECONDS="10")


def _missing() -> str | None:
    for tool in ("podman", "runc"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (apt-get install podman runc)"
    if not Path("/bin/busybox").exists():
        return "busybox-static is not installed (apt-get install busybox-static)"
    if os.geteuid() != 0:
        return "these tests run rootful podman"
    return None


@pytest.fixture(scope="session")
def container_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    require(_missing())
    work = tmp_path_factory.mktemp("containers")
    env = podman_store(work)
    import_busybox(env, BUSYBOX, work / "rootfs")
    yield env
    subprocess.run(  # unmount and remove the store, so that nothing stays mounted
        ["podman", "system", "reset", "--force"], env={**os.environ, **env}, capture_output=True
    )


# What this machine trusts, given to the base image: a site behind a TLS-inspecting proxy (this
# one is) needs it for pip in builds; elsewhere it is the usual public CAs.
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


@pytest.fixture(scope="session")
def python_base(container_env: dict[str, str]) -> str:
    require(None if shutil.which("mmdebstrap") else "apt-get install mmdebstrap")
    trust = ["--ca-bundle", str(HOST_CA_BUNDLE)] if HOST_CA_BUNDLE.is_file() else []
    env = {**os.environ, "PRIMAGE_CONTAINER_ENV": json.dumps(container_env)}
    made = primage("image", "bootstrap", "--name", PYTHON_BASE, *trust, env=env, timeout=900)
    assert made.returncode == 0, made.stderr
    return PYTHON_BASE


@pytest.fixture
def registry(container_env: dict[str, str], tmp_path: Path) -> Iterator[tuple[RunningServer, str]]:
    require(None if shutil.which("docker-registry") else "apt-get install docker-registry")
    with platform_with_registry(tmp_path, container_env) as (server, host):
        yield server, host


@pytest.fixture
def sandboxed_server(tmp_path: Path) -> Iterator[RunningServer]:
    require_tool("bwrap", "bubblewrap")
    require_tool("slirp4netns", "slirp4netns")
    env = {"PRIMAGE_CONCURRENCY": "2", "PRIMAGE_CONTAINERS": "false"}
    running = RunningServer.start(tmp_path / "data", f"sqlite:///{tmp_path / 'db.sqlite'}", env=env)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="session")
def kube_cluster() -> Iterator[KubeCluster]:
    """A real Kubernetes control plane and node on loopback (tests/kube.py), for the session,
    with the test images (busybox, pause) in its containerd."""
    require(None if os.geteuid() == 0 else "the test cluster's kubelet and containerd run as root")
    require(_missing())
    built = kube.binaries()
    require(built if isinstance(built, str) else None)
    assert isinstance(built, Path)
    work = Path(tempfile.mkdtemp(prefix="primage-kube-"))  # short: containerd's socket path
    try:
        archives = kube.image_archives(work / "images", built)
        with KubeCluster.running(work / "cluster", built, archives) as cluster:
            yield cluster
    finally:
        shutil.rmtree(work, ignore_errors=True)


_kube_instances = itertools.count()


@pytest.fixture
def kube_instance() -> str:
    """The platform's name in the test cluster's namespace: each test's server its own."""
    return f"test{next(_kube_instances)}"


@pytest.fixture
def kube_server(
    kube_cluster: KubeCluster, kube_instance: str, tmp_path: Path
) -> Iterator[RunningServer]:
    """A server with two executors: ``local`` (the default) and ``kube`` (``kube_cluster``, as
    the platform's own user, with only the Role of docs/kubernetes-role.yaml)."""
    executors = {"local": {"kind": "local"}, "kube": kube_cluster.executor(kube_instance)}
    with beside_local(executors, tmp_path) as running:
        yield running


@contextlib.contextmanager
def beside_local(executors: dict[str, object], tmp_path: Path) -> Iterator[RunningServer]:
    """A server on SQLite with these executors, its local one sandboxed, two tasks at a time."""
    require_tool("bwrap", "bubblewrap")
    env = {
        "PRIMAGE_EXECUTORS": json.dumps(executors),
        "PRIMAGE_CONCURRENCY": "2",
        "PRIMAGE_CONTAINERS": "false",
    }
    running = RunningServer.start(tmp_path / "data", f"sqlite:///{tmp_path / 'db'}", env=env)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlurmCluster]:
    """A real Slurm cluster on loopback (Debian's slurm-wlm and munge), for the whole session."""
    for tool in ("slurmctld", "slurmd", "sbatch", "munged"):
        present = shutil.which(tool) or Path(f"/usr/sbin/{tool}").exists()
        require(None if present else f"{tool} is missing: apt-get install slurm-wlm munge")
    require(None if os.geteuid() == 0 else "the test cluster's daemons run as root")
    with SlurmCluster.running(tmp_path_factory.mktemp("slurm")) as cluster:
        yield cluster


@pytest.fixture
def hpc(slurm_cluster: SlurmCluster, tmp_path: Path) -> Iterator[RunningServer]:
    executors: dict[str, object] = {
        "local": {"kind": "local"},
        "hpc": {
            "kind": "slurm",
            "slurm_conf": slurm_cluster.env["SLURM_CONF"],
            "capacity": 4,
            "poll_seconds": 0.3,
            "description": "the test cluster",
        },
    }
    with beside_local(executors, tmp_path) as running:
        yield running


@pytest.fixture
def clusters_with_registry(
    container_env: dict[str, str],
    slurm_cluster: SlurmCluster,
    kube_cluster: KubeCluster,
    kube_instance: str,
    tmp_path: Path,
) -> Iterator[tuple[RunningServer, str]]:
    """A server with a registry, containers on, a Slurm executor whose nodes run them from an
    image store of their own (empty: they pull the job's image), and a Kubernetes executor
    whose node pulls them too."""
    require(None if shutil.which("docker-registry") else "apt-get install docker-registry")
    (tmp_path / "node").mkdir()
    nodes = podman_store(tmp_path / "node")
    hpc = {"kind": "slurm", "slurm_conf": slurm_cluster.env["SLURM_CONF"], "poll_seconds": 0.3,
           "containers": True, "container_env": nodes}  # fmt: skip
    executors = {
        "local": {"kind": "local"},
        "hpc": hpc,
        "kube": kube_cluster.executor(kube_instance),
    }
    env = {"PRIMAGE_EXECUTORS": json.dumps(executors)}
    with platform_with_registry(tmp_path / "platform", container_env, env) as (server, host):
        kube_cluster.trust_registry(host)
        yield server, host
