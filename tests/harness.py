"""Starting and stopping the real components the tests use (server, PostgreSQL, the CLI)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from primage.client import Client
from primage.errors import PrimageError
from primage.host.containers import CGROUP_V1_CONF


def require(reason: str | None) -> None:
    """Skip for a missing tool on a laptop; under CI=true nothing may skip: fail instead."""
    if reason is None:
        return
    import pytest

    if os.environ.get("CI") == "true":
        pytest.fail(f"required under CI: {reason}")
    pytest.skip(reason)


def eventually(
    check: Callable[[], object], timeout: float = 10.0, what: str = "condition", pause: float = 0.2
) -> None:
    """Wait until ``check()`` is true; fail naming ``what`` after ``timeout`` seconds. The one
    way tests wait: never a fixed sleep."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"{what} not met within {timeout:g} s"
        time.sleep(pause)


def require_tool(tool: str, package: str) -> None:
    """Skip (or, under CI, fail) when a program the test runs for real is missing."""
    require(None if shutil.which(tool) else f"{tool} is missing: apt-get install {package}")


def primage(
    *args: str, env: dict[str, str], timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    """Run the real ``primage`` command, as a user would, in this environment."""
    return subprocess.run(
        [sys.executable, "-m", "primage", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class CliResult:
    code: int
    out: str
    err: str


@dataclass
class RunningServer:
    url: str
    data_dir: Path
    admin_token: str
    process: subprocess.Popen[bytes]
    database_url: str
    env: dict[str, str] | None = None
    port: int = 0

    @classmethod
    def start(
        cls,
        data_dir: Path,
        database_url: str,
        timeout: float = 60,
        env: dict[str, str] | None = None,
        port: int = 0,
    ) -> RunningServer:
        data_dir.parent.mkdir(parents=True, exist_ok=True)  # the server creates data_dir itself
        log_path = data_dir.with_name(data_dir.name + ".log")
        full_env = {
            **os.environ,
            # Every turn a second apart is a sync: drift is sought much more often than in
            # production (30 s), so that a sync that took a sound task for lost fails tests.
            "PRIMAGE_SYNC_SECONDS": "1",
            **(env or {}),
            "PRIMAGE_DATABASE_URL": database_url,
            "PRIMAGE_DATA_DIR": str(data_dir),
        }
        full_env["PRIMAGE_CONFIG"] = str(data_dir.with_name("absent.toml"))
        log = open(log_path, "ab")  # noqa: SIM115 - the child writes to it
        process = subprocess.Popen(
            [sys.executable, "-m", "primage", "server", "--port", str(port)],
            env=full_env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        runtime, deadline = data_dir / "server.json", time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise RuntimeError(log_path.read_text())
            if runtime.exists():
                url = json.loads(runtime.read_text())["url"]
                try:
                    if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                        creds = json.loads((data_dir / "credentials.json").read_text())
                        return cls(url, data_dir, creds["token"], process, database_url, env, port)
                except httpx.HTTPError:
                    pass
            time.sleep(0.05)
        process.kill()
        raise RuntimeError("server did not start:\n" + log_path.read_text())

    def stop(self) -> None:
        if self.process.poll() is None:
            self.remove_apps()
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def remove_apps(self) -> None:
        """Undeploy every app: apps outlive their server by design, a test's must not."""
        try:
            with self.client() as api:
                for app in api.list_apps():
                    api.remove_app(app.name)
        except (PrimageError, httpx.HTTPError):
            pass  # a server that cannot answer has started nothing more

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as when a machine or an OOM killer stops the server."""
        self.process.kill()
        self.process.wait()
        (self.data_dir / "server.json").unlink(missing_ok=True)

    def restart(self) -> RunningServer:
        """A new server process on the same data dir and database."""
        return RunningServer.start(self.data_dir, self.database_url, env=self.env, port=self.port)

    def client(self, token: str | None = None) -> Client:
        return Client(self.url, token or self.admin_token)

    def cli(
        self,
        *args: str,
        token: str | None = None,
        stdin: str | None = None,
        env: dict[str, str] | None = None,
    ) -> CliResult:
        """Run the real ``primage`` command against this server (``token=""``: no token)."""
        env = {
            **os.environ,
            "PRIMAGE_SERVER": self.url,
            "PRIMAGE_DATA_DIR": str(self.data_dir),
            **(env or {}),
        }
        if token == "":
            env.pop("PRIMAGE_TOKEN", None)
        else:
            env["PRIMAGE_TOKEN"] = token or self.admin_token
        env["COLUMNS"] = "200"
        done = subprocess.run(
            [sys.executable, "-m", "primage", *args],
            env=env,
            input=stdin or "",
            capture_output=True,
            text=True,
            timeout=120,
        )
        return CliResult(done.returncode, done.stdout, done.stderr)


def _pg_bin() -> Path | None:
    for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (candidate / "initdb").exists():
            return candidate
    found = shutil.which("initdb")
    return Path(found).parent if found else None


@dataclass
class PostgresCluster:
    bin: Path
    data: Path
    port: int
    as_user: list[str]

    def _run(self, *args: str) -> None:
        subprocess.run([*self.as_user, *args], check=True, capture_output=True, timeout=120)

    def stop(self) -> None:
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def create_database(self, name: str) -> str:
        base = f"postgresql://postgres@127.0.0.1:{self.port}"
        import sqlalchemy

        engine = sqlalchemy.create_engine(
            f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres",
            isolation_level="AUTOCOMMIT",
        )
        with engine.connect() as conn:
            conn.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
        engine.dispose()
        return f"{base}/{name}"


def start_postgres(workdir: Path) -> PostgresCluster | str:
    """Start a throwaway cluster, or say why it cannot be."""
    pg_bin = _pg_bin()
    if pg_bin is None:
        return "PostgreSQL server binaries not found (apt-get install postgresql)"
    as_user: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root
        as_user = ["runuser", "-u", "postgres", "--"]
        shutil.chown(workdir, "postgres")
    data, port = workdir / "data", free_port()
    cluster = PostgresCluster(pg_bin, data, port, as_user)
    cluster._run(str(pg_bin / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres")
    options = f"-p {port} -k {workdir} -c listen_addresses=127.0.0.1 -c fsync=off"
    cluster._run(
        str(pg_bin / "pg_ctl"),
        "-D",
        str(data),
        "-o",
        options,
        "-l",
        str(workdir / "log"),
        "-w",
        "start",
    )
    return cluster


def podman_store(work: Path) -> dict[str, str]:
    """A container store of its own under ``work``, configured as a cgroup v1 host needs
    (runc, cgroupfs, no default ulimits): the environment podman (and the platform's
    ``container_env``) should run with."""
    (work / "containers.conf").write_text(CGROUP_V1_CONF)
    (work / "storage.conf").write_text(
        f'[storage]\ndriver = "overlay"\ngraphroot = "{work}/storage"\nrunroot = "{work}/run"\n'
    )
    return {
        "CONTAINERS_CONF": str(work / "containers.conf"),
        "CONTAINERS_STORAGE_CONF": str(work / "storage.conf"),
    }


def import_busybox(
    env: dict[str, str],
    name: str,
    rootfs: Path,
    command: str = '["/bin/sh"]',
    files: dict[str, bytes] | None = None,
    executable: Collection[str] = (),
) -> None:
    """A tiny image from Debian's busybox-static (every applet linked), imported as ``name``
    with ``command`` (JSON) as its default command and ``files`` (path → content) added, those
    named in ``executable`` executable."""
    (rootfs / "bin").mkdir(parents=True)
    for path, content in (files or {}).items():
        (rootfs / path).parent.mkdir(parents=True, exist_ok=True)
        (rootfs / path).write_bytes(content)
        if path in executable:
            (rootfs / path).chmod(0o755)
    shutil.copy("/bin/busybox", rootfs / "bin" / "busybox")
    applets = subprocess.run(["/bin/busybox", "--list"], capture_output=True, text=True).stdout
    for applet in applets.split():
        if applet != "busybox":
            (rootfs / "bin" / applet).symlink_to("busybox")
    tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
    subprocess.run(
        ["podman", "import", "--change", f"CMD {command}", "-", name],
        stdin=tar.stdout,
        env={**os.environ, **env},
        check=True,
        capture_output=True,
    )
    tar.wait()


BUSYBOX = "localhost/busybox:test"  # the tiny image of the container tests (import_busybox)
PYTHON_BASE = "localhost/python:3.11"  # primage image bootstrap's default name


def podman(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """Run podman in the test's container store (``env``: podman_store's)."""
    return subprocess.run(
        ["podman", *args], env={**os.environ, **env}, capture_output=True, text=True, timeout=120
    )


@contextmanager
def platform_with_registry(
    work: Path, container_env: dict[str, str], env: dict[str, str] | None = None
) -> Iterator[tuple[RunningServer, str]]:
    """A server with containers on, and a real Docker Distribution registry (Debian's
    docker-registry) that uses it as its token server: (server, registry host:port)."""
    port, registry_port = free_port(), free_port()
    env = {
        "PRIMAGE_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "PRIMAGE_REGISTRY_URL": f"http://127.0.0.1:{registry_port}",
        "PRIMAGE_CONTAINERS": "true",
        "PRIMAGE_CONTAINER_ENV": json.dumps(container_env),
        **(env or {}),
    }
    server = RunningServer.start(work / "data", f"sqlite:///{work / 'db'}", env=env, port=port)
    config = primage(
        "server", "registry-config", "--storage", str(work / "images"),
        "--listen", f"127.0.0.1:{registry_port}",
        env={**os.environ, **env, "PRIMAGE_DATA_DIR": str(server.data_dir)},
    )  # fmt: skip
    if config.returncode != 0:
        server.stop()
        raise RuntimeError(config.stderr)
    (work / "registry.yml").write_text(config.stdout)
    process = subprocess.Popen(
        ["docker-registry", "serve", str(work / "registry.yml")],
        stdout=subprocess.DEVNULL,
        stderr=open(work / "registry.log", "wb"),  # noqa: SIM115 - the child writes to it
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{registry_port}/v2/").status_code == 401:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError((work / "registry.log").read_text())
            time.sleep(0.1)
        yield server, f"127.0.0.1:{registry_port}"
    finally:
        process.terminate()
        process.wait(10)
        server.stop()


SLURM_CONF = """\
ClusterName=primage-test
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={d_port}
AuthType=auth/munge
AuthInfo=socket={work}/run/munge.socket
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation={work}/state
SlurmdSpoolDir={work}/spool
SlurmctldPidFile={work}/run/slurmctld.pid
SlurmdPidFile={work}/run/slurmd.pid
SlurmctldLogFile={work}/log/slurmctld.log
SlurmdLogFile={work}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SwitchType=switch/none
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0,default_queue_depth=1000
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SlurmdParameters=config_overrides
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
ReturnToService=2
MaxArraySize=1001
MaxJobCount=100000
MinJobAge=600
KillWait=2
NodeName=localhost NodeAddr=127.0.0.1 CPUs={cpus} RealMemory=32000 State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
PartitionName=other Nodes=localhost MaxTime=INFINITE State=UP
"""


@dataclass
class SlurmCluster:
    """munged, slurmctld and slurmd of Debian's slurm-wlm, on loopback, under ``work``."""

    work: Path
    env: dict[str, str]  # SLURM_CONF: what sbatch, squeue and scancel need to find it

    @classmethod
    @contextmanager
    def running(cls, work: Path, cpus: int = 4) -> Iterator[SlurmCluster]:
        for folder in ("run", "state", "spool", "log"):
            (work / folder).mkdir(parents=True, exist_ok=True)
        key = work / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o600)
        ctld_port, d_port = _loopback_ports(2)
        conf = work / "slurm.conf"
        conf.write_text(SLURM_CONF.format(work=work, ctld_port=ctld_port, d_port=d_port, cpus=cpus))
        env = {**os.environ, "SLURM_CONF": str(conf)}
        subprocess.run(
            ["/usr/sbin/munged", f"--key-file={key}", f"--socket={work}/run/munge.socket",
             f"--pid-file={work}/run/munged.pid", f"--log-file={work}/log/munged.log",
             f"--seed-file={work}/run/munged.seed", "--force"],
            check=True, env=env,
        )  # fmt: skip
        try:
            subprocess.run(["/usr/sbin/slurmctld", "-f", str(conf), "-i"], check=True, env=env)
            subprocess.run(["/usr/sbin/slurmd", "-f", str(conf), "-N", "localhost"], check=True,
                           env=env)  # fmt: skip

            def idle() -> bool:
                done = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True,
                                      text=True, env=env)  # fmt: skip
                return done.stdout.split()[:1] == ["idle"]

            eventually(idle, 60, "the Slurm node idle")
            yield cls(work, {"SLURM_CONF": str(conf)})
        finally:
            for pid_file in ("slurmd.pid", "slurmctld.pid", "munged.pid"):
                _stop_pid(work / "run" / pid_file)

    def scontrol(self, *args: str) -> None:
        """What a site's administrator does to the cluster (down a partition, hold a job)."""
        subprocess.run(["scontrol", *args], check=True, env={**os.environ, **self.env})


def _loopback_ports(count: int) -> list[int]:
    """Ports for daemons that take theirs from a configuration file (Slurm cannot be told to
    bind port 0): held together while chosen, so that they differ."""
    socks = [socket.socket() for _ in range(count)]
    try:
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in socks]
    finally:
        for sock in socks:
            sock.close()


def _stop_pid(pid_file: Path) -> None:
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)

    def gone() -> bool:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False

    with contextlib.suppress(AssertionError):
        eventually(gone, 15, f"{pid_file.name} stopped", pause=0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def outputs(api: Client, space: str, job_id: int) -> list[tuple[str, bytes]]:
    """(name, content) of every file in a job's default output folder, sorted."""
    found = api.listdir(space, f"outputs/{job_id}")
    return sorted((e.name, api.read_bytes(space, e.path)) for e in found)


def scans(api: Client, count: int) -> None:
    """A space 'ct' holding in/scan0.txt … in/scan<count-1>.txt, one small text each."""
    api.create_space("ct")
    for i in range(count):
        api.upload("ct", f"in/scan{i}.txt", f"image {i}\n".encode())


def git_repository(root: Path, example: Path) -> Path:
    """A lab's repository holding ``example`` in a folder of its own, as this project does;
    the folder, for ``primage build start``."""
    folder = root / "examples" / example.name
    shutil.copytree(example, folder, ignore=shutil.ignore_patterns("*.egg-info", "__pycache__"))
    (root / "README.md").write_text("a lab's applications\n")
    commit = ["-c", "user.name=dev", "-c", "user.email=dev@lab", "commit", "-qm", example.name]
    for args in (["init", "-q", "-b", "main"], ["add", "."], commit):
        subprocess.run(["git", *args], cwd=root, check=True)
    return folder
