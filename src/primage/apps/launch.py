"""What one instance of an app runs: its command line, environment and folders, rendered from the
spec. An instance is a process on this machine (``host/services.py``): the app's own
command, in the sandbox (its spaces, read-only where asked, and its ``work/`` folder; a network
namespace of its own, outbound only, that the proxy reaches through a socket the server binds and
hands in: ``host/relay.py``), or, for an app with an image, the ``podman run``
of its container, which publishes the app's port on loopback and sees its spaces at
``/spaces/<name>``."""

from __future__ import annotations

import os
import shlex
import socket
import sys
from pathlib import Path

from primage.config import Settings
from primage.host import procs, services
from primage.host.containers import SPACES, Runtime
from primage.host.env import base_env as process_base_env
from primage.host.sandbox import Bind, Sandbox, sandboxed
from primage.jobs.template import space_variable, substitute
from primage.models.apps import AppSpec

RELAY = str(Path(services.__file__).with_name("relay.py"))  # the door of an app's sandbox


def instance_folder(apps: Path, app_id: int, generation: int, index: int) -> Path:
    """An instance's folder under ``<data_dir>/apps``: its ``output.log`` (every backend's),
    and the working folder of a process without a workdir."""
    return apps / str(app_id) / f"{generation}.{index}"


def output_log(apps: Path, app_id: int, generation: int, index: int) -> Path:
    """Where an instance's output is (``host/services.py`` writes a process's there)."""
    return instance_folder(apps, app_id, generation, index) / "output.log"


def container_name(app_id: int, generation: int, index: int) -> str:
    return f"primage-app-{app_id}-{generation}-{index}"


class Launch:
    """One app's instances as this platform starts them."""

    def __init__(
        self,
        settings: Settings,
        name: str,
        app_id: int,
        spec: AppSpec,
        token: str,
        runtime: Runtime | None = None,
        sandbox: Sandbox | None = None,
        *,
        in_pod: bool = False,
    ) -> None:
        self.settings, self.name, self.app_id, self.spec, self.token = (
            settings, name, app_id, spec, token,
        )  # fmt: skip
        self.runtime = runtime if spec.image is not None else None
        self.sandbox = sandbox
        #: In a pod of a cluster (``executors/kubernetes/instances.py``), whose container
        #: sees its spaces at ``/spaces/<name>`` as a local one does.
        self.in_pod = in_pod
        self.root = settings.storage_path
        self.prefix = "/" if spec.strip_prefix else f"/apps/{name}/"

    def fixed_port(self) -> int | None:
        """The host port the app must have (a process with ``port``), else None: any free one.
        A container listens on its own port, published on a free one of the host."""
        return self.spec.port if self.runtime is None else None

    def app_port(self, host_port: int) -> int:
        """The port the app listens on: in a container, its ``port`` (or the host's)."""
        return self.spec.port or host_port if self.runtime is not None else host_port

    @property
    def contained(self) -> bool:
        """In a container or a pod: spaces at ``/spaces``, reached at an address of its own."""
        return self.runtime is not None or self.in_pod

    @property
    def listen_ip(self) -> str:
        """Where the app listens (``{ip}``): its own loopback as a process (the proxy reaches
        it there, or through its sandbox's door), every address in a container or a pod."""
        return "0.0.0.0" if self.contained else "127.0.0.1"

    def space_path(self, name: str) -> str:
        return f"{SPACES}/{name}" if self.contained else str(self.root / name)

    def folder(self, generation: int, index: int) -> Path:
        return instance_folder(self.settings.data_dir / "apps", self.app_id, generation, index)

    @property
    def workdir(self) -> str | None:
        """Where the app starts, as it sees it (``{workdir}``)."""
        if self.spec.workdir is None:
            return None
        space, _, folder = self.spec.workdir.partition("/")
        return f"{self.space_path(space)}/{folder}".rstrip("/")

    def render(self, port: int, token: str | None = None) -> str:
        """The command line; ``token``: what stands for ``{app_token}`` (default: itself)."""
        values = {
            "port": str(port),
            "ip": self.listen_ip,
            "base_url": f"/apps/{self.name}/",
            "app_token": self.token if token is None else token,
            "workdir": self.workdir or "",
        }

        def value(name: str) -> str:
            if name.startswith("spaces."):
                return shlex.quote(self.space_path(name.removeprefix("spaces.")))
            return shlex.quote(values[name])

        return substitute(self.spec.command or "", value)

    def command(self, port: int = 0, token: str | None = None) -> list[str]:
        """The app's own command line as argv (empty: an image's default command)."""
        return procs.argv_for(self.render(port, token)) if self.spec.command else []

    def variables(self, port: int) -> dict[str, str]:
        """What the app finds in its environment: the spec's, its secrets, the platform's."""
        env = {**self.spec.env, **self.spec.secrets}
        env |= {
            "PRIMAGE_APP": self.name,
            "PRIMAGE_PORT": str(port),
            "PRIMAGE_BASE_URL": f"/apps/{self.name}/",
            "PRIMAGE_APP_TOKEN": self.token,
            "PRIMAGE_SERVER": self.settings.base_url,
        }
        for mount in self.spec.spaces:
            env[space_variable(mount.name)] = self.space_path(mount.name)
        return env

    def mounts(self) -> list[tuple[str, tuple[str, bool]]]:
        """Each space's name, its folder and whether it is read-only: an app sees whole spaces
        (``models.apps`` refuses folders), whose folders no task can swap for a link."""
        return [(m.name, (str(self.root / m.name), m.read_only)) for m in self.spec.spaces]

    def _start_process(self, folder: Path, port: int, env: dict[str, str]) -> services.Service:
        """The app's command as a process: in the sandbox, working in its workdir or in its
        instance's ``work/`` folder (the instance's log beside it is the server's alone)."""
        work = folder / "work"
        work.mkdir(parents=True, exist_ok=True)
        cwd = Path(self.workdir) if self.workdir else work
        if self.sandbox is None:
            read_only = [str(self.root / m.name) for m in self.spec.spaces if m.read_only]
            return services.start(
                self.command(port), folder=folder, cwd=cwd, env=env, read_only=read_only
            )
        if self.sandbox.owner is not None:
            os.chown(work, *self.sandbox.owner)
        binds = [Bind(folder, read_only) for _, (folder, read_only) in self.mounts()]
        # The app listens on its own loopback, in a network namespace of its own; the server
        # binds its door here and hands it to the relay inside (relay.py).
        with socket.create_server(("127.0.0.1", port), backlog=128) as door:
            relay = [sys.executable, "-I", "-S", RELAY, str(door.fileno()), str(port), "--"]
            argv = self.sandbox.wrap(
                [*relay, *self.command(port)],
                binds=[*binds, Bind(str(work), False)],
                workdir=str(cwd),
                network="outbound",
            )
            return services.start(
                argv, folder=folder, cwd=work, env=sandboxed(env), pass_fds=[door.fileno()]
            )

    def start(self, generation: int, index: int, host_port: int) -> services.Service:
        """Start one instance, the app listening on (or published at) ``host_port``."""
        folder = self.folder(generation, index)
        port = self.app_port(host_port)
        base, variables = process_base_env(), self.variables(port)
        if self.runtime is None:
            return self._start_process(folder, port, base | variables)
        argv = self.runtime.service_argv(
            image=self.spec.image or "",
            command=self.command(port),
            name=container_name(self.app_id, generation, index),
            publish=(host_port, port),
            workdir=self.workdir,
            mounts=dict(self.mounts()),
            env=variables,
            base_env=base,
            cpus=self.spec.resources.cpus,
            memory_bytes=self.spec.resources.memory,
        )
        env = self.runtime.process_env(base, variables)
        return services.start(argv, folder=folder, cwd=folder, env=env)
