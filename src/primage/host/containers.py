"""Tasks in containers on this machine: the ``podman run`` that stands for a task, and images.

A task that names an image runs as ``<container_command> run --rm`` with:

- each space it mounts bind-mounted at ``/spaces/<name>`` (or only the folder the job names, at
  ``/spaces/<name>/<folder>``; ``:ro`` where the job says so, which
  the kernel enforces), its working folder at ``/work`` (its current directory);
- ``--network none`` unless the job asks for the network;
- ``--cpus`` and ``--memory`` from the job's resources;
- the task's variables passed by name (``-e KEY``, the value taken from podman's environment),
  so that neither ``ps`` nor the process table shows them and multi-line values arrive whole;
- the image by the digest it was pinned to when the job was submitted (provenance: the tasks of
  a job all run the same image, whatever happens to its tag meanwhile), never pulled implicitly
  (only a Slurm node pulls that digest, with the job's own credential: ``executors/slurm.py``).

The runtime and its options are configuration (``container_command``, ``container_env``,
``container_run_options``), not code: sites differ. On a cgroup v1 host rootful podman needs runc,
the cgroupfs manager and no default ulimits; unless ``container_env`` names a ``CONTAINERS_CONF``
of the operator's, the platform writes that configuration into its data dir and uses it for its
own podman calls (the host's podman is left as it is).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from primage.config import Settings
from primage.errors import BadRequest
from primage.executors.base import Pull
from primage.registry_client import split_tag

SPACES = "/spaces"
#: What rootful podman needs on a cgroup v1 host (else: "error setting rlimit type 7").
CGROUP_V1_CONF = """\
[containers]
default_ulimits = []
[engine]
cgroup_manager = "cgroupfs"
runtime = "runc"
events_logger = "file"
"""
CATATONIT = "/usr/libexec/podman/catatonit"
WORKDIR = "/work"


def task_container(job_id: int, index: int, attempt: int) -> str:
    """The container name of a task attempt, wherever it runs."""
    return f"primage-{job_id}-{index}-{attempt}"


def cgroup_v1() -> bool:
    """A host without the unified hierarchy (cgroup v2 has cgroup.controllers at its root)."""
    return not os.path.exists("/sys/fs/cgroup/cgroup.controllers")


def cgroup_v1_conf(data_dir: Path) -> Path:
    """The platform's own containers.conf for a cgroup v1 host, written once."""
    path = data_dir / "containers.conf"
    if not path.exists():
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        path.write_text(CGROUP_V1_CONF)
    return path


class Runtime:
    """The container runtime as configured."""

    def __init__(self, command: Sequence[str], env: Mapping[str, str], options: Sequence[str]):
        self.command = list(command)
        self.env = dict(env)
        self.options = list(options)
        # An init process (catatonit) as PID 1 passes SIGTERM on, so a cancelled or timed-out
        # task stops at once rather than after the kill grace period.
        self.init = bool(shutil.which("catatonit")) or os.path.exists(CATATONIT)

    @property
    def line(self) -> str:
        """What the server says of it at start."""
        conf = self.env.get("CONTAINERS_CONF")
        return f"{' '.join(self.command)}" + (f" with {conf}" if conf else "")

    @classmethod
    def from_settings(cls, settings: Settings) -> Runtime | None:
        """The runtime, or None when containers are off (or, unset, not installed)."""
        command = settings.container_command
        if settings.containers is False or not command:
            return None
        if settings.containers is None and shutil.which(command[0]) is None:
            return None
        env = dict(settings.container_env)
        if "CONTAINERS_CONF" not in env and cgroup_v1():
            env["CONTAINERS_CONF"] = str(cgroup_v1_conf(settings.data_dir))
        return cls(command, env, settings.container_run_options)

    def _run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self.command, *args],
            env={**os.environ, **self.env},
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def pin(self, image: str, pull: Pull | None = None) -> str:
        """``image`` as ``repository@sha256:…``: the image this machine has under that name, or
        pulls with ``pull``'s credentials (the platform registry, as the submitting user)."""
        done = self._run("image", "inspect", "--format", "json", image)
        if done.returncode != 0 and pull is not None:
            user, password = pull.credentials
            fetched = self._run(
                "pull", "--quiet", f"--tls-verify={str(pull.tls_verify).lower()}",
                "--creds", f"{user}:{password}", image, timeout=600,
            )  # fmt: skip
            if fetched.returncode != 0:
                why = (fetched.stderr.strip().splitlines() or ["no message"])[-1]
                raise BadRequest(f"cannot pull image '{image}' as {user}: {why}")
            done = self._run("image", "inspect", "--format", "json", image)
        if done.returncode != 0:
            raise BadRequest(
                f"image '{image}' not found on this machine: build or pull it first "
                "(podman images lists what is there)"
            )
        found = json.loads(done.stdout)[0]
        digest = found.get("Digest")
        if not digest:
            raise BadRequest(f"image '{image}' has no digest to pin; tag or re-import it")
        repository, _ = split_tag(image)
        return f"{repository}@{digest}"

    def remove(self, name: str, grace: int = 5) -> None:
        """Stop (SIGTERM, SIGKILL after ``grace`` seconds) and remove a container, if it exists."""
        self._run("rm", "--force", "--ignore", "--time", str(grace), name, timeout=grace + 60)

    def argv(
        self,
        *,
        image: str,
        command: list[str],
        name: str,
        workdir: str,
        mounts: Mapping[str, tuple[str, bool]],
        env: Mapping[str, str],
        base_env: Mapping[str, str],
        cpus: int,
        memory_bytes: int | None,
        network: bool,
        sig_proxy: bool = True,
        pull: Sequence[str] = ("--pull", "never"),
    ) -> list[str]:
        """The command line that runs ``command`` in ``image`` as one task attempt.

        ``mounts``: space name (or ``SPACE/FOLDER``) → (host folder, read-only). ``env`` is
        named here, not valued: podman runs with the values in its environment
        (:meth:`process_env` over ``base_env``), except for names podman itself uses, which are
        passed by value. ``sig_proxy=False``: signals to podman are not passed on (whoever runs
        it stops the container by name). ``pull``: never, unless a node pulls by digest with a
        credential of the job's.
        """
        args = [*self.command, "run", "--rm", "--name", name, *pull]
        if not sig_proxy:
            args.append("--sig-proxy=false")
        args += ["--network", "slirp4netns" if network else "none"]
        args += ["--cpus", str(cpus), "-w", WORKDIR, "-v", f"{workdir}:{WORKDIR}"]
        args += self._shared(mounts, env, base_env, memory_bytes)
        return [*args, *self.options, image, *command]

    def service_argv(
        self,
        *,
        image: str,
        command: list[str],
        name: str,
        publish: tuple[int, int],
        workdir: str | None,
        mounts: Mapping[str, tuple[str, bool]],
        env: Mapping[str, str],
        base_env: Mapping[str, str],
        cpus: int,
        memory_bytes: int | None,
    ) -> list[str]:
        """The command line of one app instance: as a task's, but its port published on
        loopback (``publish``: host port, container port), which needs a network, and an
        instance of the same name left by a crash replaced. ``command`` empty: the image's."""
        host_port, port = publish
        args = [*self.command, "run", "--rm", "--replace", "--name", name, "--pull", "never"]
        args += ["-p", f"127.0.0.1:{host_port}:{port}", "--cpus", str(cpus)]
        if workdir is not None:
            args += ["-w", workdir]
        args += self._shared(mounts, env, base_env, memory_bytes)
        return [*args, *self.options, image, *command]

    def _shared(
        self,
        mounts: Mapping[str, tuple[str, bool]],
        env: Mapping[str, str],
        base_env: Mapping[str, str],
        memory_bytes: int | None,
    ) -> list[str]:
        own = base_env.keys() | self.env.keys()  # podman's own variables: passed by value
        args = ["--init"] if self.init else []
        if memory_bytes:
            args += ["--memory", str(memory_bytes)]
        for where, (host, read_only) in sorted(mounts.items()):  # where: SPACE or SPACE/FOLDER
            args += ["-v", f"{host}:{SPACES}/{where}" + (":ro" if read_only else "")]
        for key, value in sorted(env.items()):
            args += ["-e", f"{key}={value}" if key in own else key]
        return args

    def process_env(self, base: Mapping[str, str], env: Mapping[str, str]) -> dict[str, str]:
        """The environment podman itself runs with: ``base`` and the runtime's, plus the task's
        variables for ``-e KEY`` to hand on. Podman's own (PATH, HOME, the runtime's settings)
        are never replaced by a task's: :meth:`argv` passes those few by value instead."""
        own = {**base, **self.env}
        return {**env, **own}
