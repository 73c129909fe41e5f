"""A real Kubernetes cluster on loopback for the tests: one control plane and one node.

``scripts/kubernetes.sh`` builds kube-apiserver, kube-controller-manager, kube-scheduler and
kubelet v1.20.2 from Debian's source package once, into a cache outside the checkout; etcd,
containerd, runc and the CNI plugins are Debian's. :meth:`KubeCluster.running` starts them all
under a folder of its own, loads the test images into containerd, and stops everything (and
every pod's container) afterwards.

What 1.20 and this machine lack, worked around here rather than in the executor:

- The kubelet refuses a loopback node IP, so the node has no address the API server can use
  for logs: the API server prefers the node's *Hostname* (``localhost``) instead.
- Pods are on a bridge of their own (CNI ``bridge``, no masquerade) whose address on the host
  side (10.244.0.1) lets the platform's proxy reach app pods by their IP (``app_address:
  pod``), as a server on a node does. A chain of the host's firewall (``PRIMAGE-PODS``) drops
  every connection a pod opens to the host or beyond: pods reach nothing but each other, as
  with the NetworkPolicy the docs ask sites for. No kube-proxy runs, so Services have no
  cluster IPs that work; there is no cluster DNS either.
- containerd cannot lower a sandbox's ``oom_score_adj`` without CAP_SYS_RESOURCE here
  (``restrict_oom_score_adj``); cgroup v1 with the cgroupfs driver.
- No Indexed Jobs before 1.24 (the executor makes a Job per attempt, see ADR 0011).
- The API server keeps recent versions in its watch cache for 75 s whatever the changes, so a
  watch is hard to expire on purpose: ConfigMaps are served from etcd instead, which
  :meth:`KubeCluster.compact` compacts (the informer's 410 test uses them).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import kubernetes
import yaml

from tests.harness import (
    BUSYBOX,
    RunningServer,
    _loopback_ports,
    eventually,
    import_busybox,
    podman_store,
)

ROOT = Path(__file__).resolve().parents[1]
NAMESPACE = "primage"
PAUSE = "localhost/pause:3.2"
ADMIN_TOKEN = "admin-token-for-tests"
PLATFORM_TOKEN = "platform-token-for-tests"  # bound to docs/kubernetes-role.yaml only

CONTAINERD_CONF = """\
version = 2
root = "{work}/containerd/root"
state = "{work}/containerd/state"
[grpc]
  address = "{work}/containerd/containerd.sock"
[ttrpc]
  address = "{work}/containerd/containerd.sock.ttrpc"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{pause}"
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        BinaryName = "/usr/sbin/runc"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{work}/cni"
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "{work}/registries"
"""

#: Pods on a bridge of their own, the host at its gateway address; what pods open towards the
#: host or beyond is dropped by ``FIREWALL``.
CNI = {
    "cniVersion": "0.4.0",
    "name": "pods",
    "plugins": [{
        "type": "bridge", "bridge": "primage0", "isGateway": True, "ipMasq": False,
        "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.244.0.0/24"}]],
                 "dataDir": "{work}/cni-ipam"},
    }],
}  # fmt: skip


#: The host's firewall for the pods' bridge: answers to the host's own connections pass (the
#: proxy reaching an app's pod), anything a pod opens towards the host or beyond is dropped.
FIREWALL = "PRIMAGE-PODS"
FIREWALL_RULES = [
    ["-A", FIREWALL, "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT"],
    ["-A", FIREWALL, "-j", "DROP"],
]
HOOKS = [["INPUT", "-i", "primage0", "-j", FIREWALL],
         ["FORWARD", "-i", "primage0", "!", "-o", "primage0", "-j", FIREWALL]]  # fmt: skip


def _firewall(up: bool) -> None:
    def iptables(*args: str) -> None:
        subprocess.run(["iptables", *args], capture_output=True)

    for hook in HOOKS:
        iptables("-D", *hook)
    iptables("-F", FIREWALL)
    iptables("-X", FIREWALL)
    if up:
        subprocess.run(["iptables", "-N", FIREWALL], check=True, capture_output=True)
        for rule in [*FIREWALL_RULES, *(["-I", *hook] for hook in HOOKS)]:
            subprocess.run(["iptables", *rule], check=True, capture_output=True)


def binaries() -> Path | str:
    """The folder of the built binaries, built now if absent; or why there is none."""
    done = subprocess.run(["bash", str(ROOT / "scripts" / "kubernetes.sh")], capture_output=True,
                          text=True)  # fmt: skip
    if done.returncode != 0:
        return f"cannot build Kubernetes (scripts/kubernetes.sh): {done.stderr.strip()[-500:]}"
    return Path(done.stdout.strip().splitlines()[-1])


def image_archives(work: Path, bin_dir: Path) -> list[Path]:
    """The test images as docker archives for containerd: the pod sandbox (``pause``, built
    with the binaries) and busybox (the base image of the tests' tasks), made in a podman
    store of their own."""
    (work / "store").mkdir(parents=True)
    env = podman_store(work / "store")
    import_busybox(env, BUSYBOX, work / "busybox")
    pause = {"pause": (bin_dir / "pause").read_bytes()}
    import_busybox(env, PAUSE, work / "pause", '["/pause"]', pause, {"pause"})
    archives = []
    for image in (PAUSE, BUSYBOX):
        archive = work / f"{image.split('/')[-1].replace(':', '-')}.tar"
        save = ["podman", "save", "--format", "docker-archive", "-o", str(archive), image]
        subprocess.run(save, env={**os.environ, **env}, check=True, capture_output=True)
        archives.append(archive)
    subprocess.run(["podman", "system", "reset", "--force"], env={**os.environ, **env},
                   capture_output=True)  # fmt: skip
    return archives


@dataclass
class KubeCluster:
    work: Path
    server: str  # https://127.0.0.1:PORT
    kubeconfig: Path  # the administrator's
    platform_kubeconfig: Path  # the platform's: only what docs/kubernetes-role.yaml grants
    socket: Path  # containerd's
    etcd: str  # http://127.0.0.1:PORT

    @classmethod
    @contextlib.contextmanager
    def running(cls, work: Path, bin_dir: Path, archives: list[Path]) -> Iterator[KubeCluster]:
        """The cluster, with the docker archives ``archives`` loaded into containerd."""
        for folder in ("pki", "etcd", "cni", "registries", "kubelet", "log", "containerd"):
            (work / folder).mkdir(parents=True, exist_ok=True)
        subprocess.run(["openssl", "genrsa", "-out", f"{work}/pki/sa.key", "2048"], check=True,
                       capture_output=True)  # fmt: skip
        subprocess.run(["openssl", "rsa", "-in", f"{work}/pki/sa.key", "-pubout", "-out",
                        f"{work}/pki/sa.pub"], check=True, capture_output=True)  # fmt: skip
        (work / "tokens.csv").write_text(
            f"{ADMIN_TOKEN},admin,admin,system:masters\n{PLATFORM_TOKEN},primage,primage\n"
        )
        etcd_client, etcd_peer, apiserver, kubelet = _loopback_ports(4)
        server = f"https://127.0.0.1:{apiserver}"
        admin = write_kubeconfig(work / "admin.kubeconfig", server, ADMIN_TOKEN, "default")
        platform = write_kubeconfig(work / "platform.kubeconfig", server, PLATFORM_TOKEN,
                                    NAMESPACE)  # fmt: skip
        (work / "cni" / "10-pods.conflist").write_text(json.dumps(CNI).replace("{work}", str(work)))
        (work / "containerd" / "config.toml").write_text(
            CONTAINERD_CONF.format(work=work, pause=PAUSE)
        )
        sock = work / "containerd" / "containerd.sock"
        processes: list[tuple[str, subprocess.Popen[bytes]]] = []

        def start(name: str, argv: list[str]) -> None:
            log = (work / "log" / f"{name}.log").open("wb")
            processes.append(
                (
                    name,
                    subprocess.Popen(
                        argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
                    ),
                )
            )

        try:
            _firewall(up=True)
            start("etcd", [
                "etcd", "--name", "test", "--data-dir", f"{work}/etcd",
                "--listen-client-urls", f"http://127.0.0.1:{etcd_client}",
                "--advertise-client-urls", f"http://127.0.0.1:{etcd_client}",
                "--listen-peer-urls", f"http://127.0.0.1:{etcd_peer}",
                "--initial-advertise-peer-urls", f"http://127.0.0.1:{etcd_peer}",
                "--initial-cluster", f"test=http://127.0.0.1:{etcd_peer}",
                "--listen-metrics-urls", "http://127.0.0.1:0",
            ])  # fmt: skip
            start("kube-apiserver", [
                f"{bin_dir}/kube-apiserver", f"--etcd-servers=http://127.0.0.1:{etcd_client}",
                "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
                f"--secure-port={apiserver}", f"--cert-dir={work}/pki",
                "--service-account-issuer=https://kubernetes.default.svc",
                f"--service-account-key-file={work}/pki/sa.pub",
                f"--service-account-signing-key-file={work}/pki/sa.key",
                f"--token-auth-file={work}/tokens.csv", "--authorization-mode=RBAC",
                "--service-cluster-ip-range=10.96.0.0/16", "--allow-privileged=false",
                "--disable-admission-plugins=ServiceAccount",
                "--enable-priority-and-fairness=false", "--insecure-port=0",
                "--kubelet-preferred-address-types=Hostname",
                "--watch-cache-sizes=configmaps#0",  # watched from etcd: see compact()
            ])  # fmt: skip
            eventually(lambda: _ready(server), 90, "kube-apiserver ready")
            start("kube-controller-manager", [
                f"{bin_dir}/kube-controller-manager", f"--kubeconfig={admin}",
                "--bind-address=127.0.0.1", "--secure-port=0", "--port=0",
                "--leader-elect=false", "--controllers=*,-serviceaccount-token",
                "--use-service-account-credentials=false",
            ])  # fmt: skip
            start("kube-scheduler", [
                f"{bin_dir}/kube-scheduler", f"--kubeconfig={admin}", "--bind-address=127.0.0.1",
                "--secure-port=0", "--port=0", "--leader-elect=false",
            ])  # fmt: skip
            start("containerd", ["containerd", "--config", f"{work}/containerd/config.toml"])
            eventually(sock.exists, 30, "containerd's socket")
            for archive in archives:
                subprocess.run(["ctr", "-a", str(sock), "-n", "k8s.io", "images", "import",
                                str(archive)], check=True, capture_output=True)  # fmt: skip
            start("kubelet", [
                f"{bin_dir}/kubelet", f"--kubeconfig={admin}", "--container-runtime=remote",
                f"--container-runtime-endpoint=unix://{sock}", f"--root-dir={work}/kubelet",
                f"--cert-dir={work}/kubelet-certs", "--cgroup-driver=cgroupfs",
                "--cgroups-per-qos=false", "--enforce-node-allocatable=",
                "--fail-swap-on=false", "--hostname-override=localhost",
                "--address=127.0.0.1", f"--port={kubelet}", "--read-only-port=0",
                "--healthz-port=0", "--image-gc-high-threshold=100",
                "--image-gc-low-threshold=99", "--eviction-hard=",
                f"--pod-infra-container-image={PAUSE}", "--authentication-token-webhook=false",
                "--authorization-mode=AlwaysAllow", "--serialize-image-pulls=false",
            ])  # fmt: skip
            cluster = cls(work, server, admin, platform, sock, f"http://127.0.0.1:{etcd_client}")
            eventually(cluster.node_ready, 120, "the node Ready")
            cluster.setup_namespace()
            yield cluster
        finally:
            for name, process in reversed(processes):
                if name == "containerd":
                    _kill_shims(sock)
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(15)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait(5)
            _unmount_under(work)
            subprocess.run(["ip", "link", "delete", "primage0"], capture_output=True)
            _firewall(up=False)

    # -- what tests ask of it -------------------------------------------------------------------

    def executor(self, instance: str) -> dict[str, object]:
        """The settings of a platform's executor on this cluster (``executors.NAME``)."""
        return {
            "kind": "kubernetes",
            "kubeconfig": str(self.platform_kubeconfig),
            "namespace": NAMESPACE,
            "instance": instance,
            "base_image": BUSYBOX,
            "capacity": 4,
            "pending_timeout_seconds": 10,
            "grace_seconds": 1,
            "description": "the test cluster",
        }

    def compact(self) -> None:
        """Compact etcd to its latest revision, as the API server does every 5 minutes: a watch
        of ConfigMaps (which the API server serves from etcd here, not from its watch cache)
        from an older version is then answered 410 Gone."""
        revision = httpx.post(f"{self.etcd}/v3/kv/range", json={"key": "AA=="}).json()
        latest = {"revision": revision["header"]["revision"], "physical": True}
        httpx.post(f"{self.etcd}/v3/kv/compaction", json=latest).raise_for_status()

    def trust_registry(self, host: str) -> None:
        """Let containerd pull from a registry on loopback over plain HTTP (read per pull)."""
        folder = self.work / "registries" / host
        folder.mkdir(parents=True, exist_ok=True)
        pull = '  capabilities = ["pull", "resolve"]\n'
        (folder / "hosts.toml").write_text(
            f'server = "http://{host}"\n[host."http://{host}"]\n{pull}'
        )

    def api(self) -> kubernetes.client.ApiClient:
        """The Python client, as the administrator."""
        configuration = kubernetes.client.Configuration()
        kubernetes.config.load_kube_config(str(self.kubeconfig),
                                           client_configuration=configuration)  # fmt: skip
        return kubernetes.client.ApiClient(configuration)

    def setup_namespace(self) -> None:
        """The platform's namespace, and its account bound to the Role the docs give sites."""
        with self.api() as api:
            core, rbac = (
                kubernetes.client.CoreV1Api(api),
                kubernetes.client.RbacAuthorizationV1Api(api),
            )
            core.create_namespace({"metadata": {"name": NAMESPACE}})
            role = yaml.safe_load((ROOT / "docs" / "kubernetes-role.yaml").read_text())
            rbac.create_namespaced_role(NAMESPACE, role)
            rbac.create_namespaced_role_binding(NAMESPACE, {
                "metadata": {"name": "primage"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                            "name": role["metadata"]["name"]},
                "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User",
                              "name": "primage"}],
            })  # fmt: skip

    def get(self, path: str) -> dict[str, object]:
        """An API path read as the administrator (``/api/v1/namespaces/primage/pods``)."""
        answer = httpx.get(self.server + path, verify=False, timeout=30,
                           headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})  # fmt: skip
        answer.raise_for_status()
        found: dict[str, object] = answer.json()
        return found

    def pods(self, selector: str) -> list[dict[str, object]]:
        listed = self.get(f"/api/v1/namespaces/{NAMESPACE}/pods?labelSelector={selector}")
        return list(listed["items"])  # type: ignore[call-overload]

    def node_ready(self) -> bool:
        try:
            nodes = self.get("/api/v1/nodes")["items"]
        except httpx.HTTPError:
            return False
        for node in nodes:  # type: ignore[attr-defined]
            for condition in node["status"].get("conditions", []):
                if condition["type"] == "Ready" and condition["status"] == "True":
                    return True
        return False


def write_kubeconfig(path: Path, server: str, token: str, namespace: str) -> Path:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "test", "cluster": {"server": server,
                                                  "insecure-skip-tls-verify": True}}],
        "users": [{"name": "user", "user": {"token": token}}],
        "contexts": [{"name": "test", "context": {"cluster": "test", "user": "user",
                                                  "namespace": namespace}}],
        "current-context": "test",
    }  # fmt: skip
    path.write_text(json.dumps(config))
    return path


def _ready(server: str) -> bool:
    try:
        answer = httpx.get(f"{server}/readyz", verify=False, timeout=5,
                           headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})  # fmt: skip
    except httpx.HTTPError:
        return False
    return answer.status_code == 200


def _shims(sock: Path) -> list[int]:
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"containerd-shim-runc-v2") and str(sock).encode() in argv:
            found.append(int(proc.name))
    return found


def _kill_shims(sock: Path) -> None:
    """Every pod's container and its shim (they outlive containerd by design)."""
    for pid in _shims(sock):
        for kill in (os.killpg, os.kill):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                kill(pid, signal.SIGKILL)
    eventually(lambda: not _shims(sock), 30, "the pods' containers gone")


def _unmount_under(work: Path) -> None:
    """What the kubelet and containerd mounted below ``work`` (overlays, shm, volumes)."""
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    for point in sorted((m for m in mounts if m.startswith(str(work))), reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True)


@contextlib.contextmanager
def platform_on_a_cluster(
    executors: Callable[[KubeCluster], dict[str, object]],
) -> Iterator[tuple[KubeCluster, RunningServer]]:
    """A test cluster of its own and a platform (SQLite, containers off) with the executors
    ``executors(cluster)`` names: what the Kubernetes benchmarks run against. Exits saying why
    when the cluster cannot be built or kubectl, their baseline, is missing."""
    if shutil.which("kubectl") is None:
        sys.exit("kubectl not found: apt-get install kubernetes-client")
    built = binaries()
    if isinstance(built, str):
        sys.exit(built)
    work = Path(tempfile.mkdtemp(prefix="primage-kube-"))
    try:
        archives = image_archives(work / "images", built)
        with KubeCluster.running(work / "cluster", built, archives) as cluster:
            env = {"PRIMAGE_EXECUTORS": json.dumps(executors(cluster)),
                   "PRIMAGE_CONTAINERS": "false"}  # fmt: skip
            server = RunningServer.start(work / "data", f"sqlite:///{work / 'db'}", env=env)
            try:
                yield cluster, server
            finally:
                server.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)
