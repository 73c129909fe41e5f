"""Where app instances run: the instance-backend contract, and this machine's backend.

The supervisor (``apps/supervisor.py``) keeps the policy: how many instances, health checks,
restarts and their backoff, rolling updates, culling idle apps. A backend only does what it is
told, for one instance at a time:

- ``start(launch, generation, index)`` → ``Started``: its opaque ``ref`` (stored on the instance
  row as its external id) and the port it serves on, or ``InstanceError`` saying why not;
- ``address(ref, port)``: where the proxy and the health checks reach it (``host:port``);
- ``status(ref)``: ``None`` while it runs, else how it ended (an exit code, or -1 when unknown);
- ``adopt(ref)``: whether an instance a previous server started still runs (it is then watched
  like one of this server's);
- ``stop(ref, container)``: end it (and remove its container, named so, if it has one),
  blocking until it has; the supervisor calls it in a thread of its own;
- ``log_path(app_id, generation, index)``: its output, read live by ``primage app logs``;
- ``forget(app_id)``: remove what it keeps of an app once the app is removed (on
  Kubernetes: its pull credential, which ``Executor.keep_app_pull`` made).

``LocalBackend`` runs instances on this machine: a process in the sandbox (``host/services.py``)
or a container (``podman run``, its port published on loopback). Executors that run apps
elsewhere bring their own (``Executor.instance_backend``: the Kubernetes executor's
StatefulSets).
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from pathlib import Path

from primage.apps.launch import Launch, output_log
from primage.host import procs, services
from primage.host.containers import Runtime


class InstanceError(Exception):
    """An instance could not be started: the message says why, for the app's events."""


@dataclass(frozen=True)
class Started:
    ref: str  # how the backend finds the instance again (external id)
    port: int  # the port it serves on, on the host ``address`` names


class InstanceBackend(abc.ABC):
    #: Whether instances see their spaces at ``/spaces/<name>`` in a pod of their own, rather
    #: than as processes or containers of this machine.
    in_pods = False

    @abc.abstractmethod
    def start(self, launch: Launch, generation: int, index: int) -> Started: ...

    @abc.abstractmethod
    def address(self, ref: str, port: int) -> str: ...

    @abc.abstractmethod
    def status(self, ref: str) -> int | None: ...

    @abc.abstractmethod
    def adopt(self, ref: str) -> bool: ...

    @abc.abstractmethod
    def stop(self, ref: str, *, container: str | None) -> None: ...

    @abc.abstractmethod
    def log_path(self, app_id: int, generation: int, index: int) -> Path: ...

    def forget(self, app_id: int) -> None:
        """Remove what the backend keeps of a removed app (its instances have ended)."""
        return None  # this machine keeps nothing beyond its log folder, the supervisor's

    def close(self) -> None:
        """Stop watching; the instances keep running, for the next server to adopt."""
        return None  # this machine's instances are watched by nothing but the supervisor


class LocalBackend(InstanceBackend):
    """Instances as processes or containers of this machine, in sessions of their own so that
    they outlive the server (identity: PID and start time, ``procs.ref``)."""

    def __init__(self, folder: Path, runtime: Runtime | None) -> None:
        self.folder = folder  # <data_dir>/apps: <app>/<generation>.<index>/output.log
        self.runtime = runtime
        self._started: dict[str, services.Service] = {}  # this server's, by ref

    def start(self, launch: Launch, generation: int, index: int) -> Started:
        fixed = launch.fixed_port()
        port = fixed or services.free_port()
        if fixed is not None and services.port_taken(fixed):
            raise InstanceError(f"port {fixed} is already in use on this machine")
        try:
            service = launch.start(generation, index, port)
        except OSError as exc:
            raise InstanceError(
                f"cannot start {exc.filename or 'the command'}: {exc.strerror}"
            ) from None
        self._started[service.ref] = service
        return Started(service.ref, port)

    def address(self, ref: str, port: int) -> str:
        return f"127.0.0.1:{port}"

    def status(self, ref: str) -> int | None:
        service = self._started.get(ref)
        if service is None:
            return None if procs.alive(ref) else -1
        code = service.exit_code()
        if code is not None:
            self._started.pop(ref, None)
        return code

    def adopt(self, ref: str) -> bool:
        if ref in self._started:
            return True
        if not procs.alive(ref):
            return False
        self._started[ref] = services.Service(ref)
        return True

    def stop(self, ref: str, *, container: str | None) -> None:
        """SIGTERM, SIGKILL after the grace time; a container is removed too before this
        returns (podman's own removal after --rm comes a moment after its process ends)."""
        service = self._started.pop(ref, None) or services.Service(ref)
        if container is not None and self.runtime is not None:
            self.runtime.remove(container)
        services.stop(service)

    def log_path(self, app_id: int, generation: int, index: int) -> Path:
        return output_log(self.folder, app_id, generation, index)


class Backends(InstanceBackend):
    """The instances of every executor that runs apps, each on its own backend: an app's
    ``executor`` (or the platform's default for apps) chooses at ``start``. The ``ref`` it gets
    back names the executor (``NAME/REF``) for every later call, except this machine's: a ref
    without a name is a local one, as every ref stored before apps ran elsewhere was."""

    def __init__(
        self, by_name: dict[str, InstanceBackend], default: str | None, folder: Path
    ) -> None:
        self.by_name = by_name
        self.default = default
        self.folder = folder  # <data_dir>/apps
        self.local = next((n for n, b in by_name.items() if isinstance(b, LocalBackend)), None)

    def of(self, executor: str | None) -> InstanceBackend:
        """The backend of an app's executor (None: the default), or why there is none."""
        name = executor or self.default
        found = self.by_name.get(name or "")
        if found is None:
            raise InstanceError(
                f"executor '{name}' runs no apps here (it serves none, or is no longer "
                "configured: primage executor ls)"
            )
        return found

    def _split(self, ref: str) -> tuple[InstanceBackend, str]:
        name, slash, inner = ref.partition("/")
        return (self.of(name), inner) if slash else (self.of(self.local or "-"), ref)

    def start(self, launch: Launch, generation: int, index: int) -> Started:
        name = launch.spec.executor or self.default
        backend = self.of(name)
        started = backend.start(launch, generation, index)
        if isinstance(backend, LocalBackend):
            return started
        return Started(f"{name}/{started.ref}", started.port)

    def address(self, ref: str, port: int) -> str:
        backend, inner = self._split(ref)
        return backend.address(inner, port)

    def status(self, ref: str) -> int | None:
        try:
            backend, inner = self._split(ref)
        except InstanceError:
            return -1  # its executor is gone: so is the instance, as far as this server knows
        return backend.status(inner)

    def adopt(self, ref: str) -> bool:
        try:
            backend, inner = self._split(ref)
        except InstanceError:
            return False
        return backend.adopt(inner)

    def stop(self, ref: str, *, container: str | None) -> None:
        backend, inner = self._split(ref)
        backend.stop(inner, container=container)

    def log_path(self, app_id: int, generation: int, index: int) -> Path:
        return output_log(self.folder, app_id, generation, index)

    def forget(self, app_id: int) -> None:
        for backend in self.by_name.values():
            backend.forget(app_id)

    def close(self) -> None:
        for backend in self.by_name.values():
            backend.close()
