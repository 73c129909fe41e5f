"""What every request handler shares: settings, database, storage, executors, identity providers."""

from __future__ import annotations

from dataclasses import dataclass, field

from fastapi import Request

from primage.apps.proxy import Proxy
from primage.apps.supervisor import Supervisor
from primage.auth.cache import PrincipalCache
from primage.auth.crypto import SecretBox
from primage.auth.oidc import Providers
from primage.auth.registry import RegistryKey
from primage.builds import Builder
from primage.config import Settings
from primage.db import Database
from primage.errors import BadRequest, NotFound
from primage.executors.base import Executor
from primage.executors.registry import Executors
from primage.host.sandbox import Sandbox
from primage.jobs.reconciler import Reconciler
from primage.server.metrics import Metrics
from primage.storage.quota import Usage
from primage.storage.spaces import SpaceStore


@dataclass(frozen=True)
class Confinement:
    """What the platform can promise about the processes it runs for users."""

    problem: str | None  # why no sandbox can be made, when unavailable
    line: str  # the mode in words, for the server's start and its status

    @classmethod
    def of(cls, sandbox: Sandbox | None) -> Confinement:
        if sandbox is None:
            return cls(None, 'off (sandbox = "off"): local tasks and process apps run as '
                       "the server's user and see what it sees")  # fmt: skip
        if sandbox.problem is not None:
            return cls(sandbox.problem, f"unavailable: {sandbox.problem}; jobs "
                       "and process apps of non-admins are refused")  # fmt: skip
        return cls(None, sandbox.describe())


@dataclass
class Platform:
    settings: Settings
    db: Database
    store: SpaceStore
    usage: Usage
    sandbox: Confinement
    metrics: Metrics
    executors: Executors
    reconcilers: dict[str, Reconciler]  # one loop per executor
    providers: Providers
    box: SecretBox
    registry: RegistryKey
    builder: Builder
    supervisor: Supervisor
    proxy: Proxy
    principals: PrincipalCache = field(default_factory=PrincipalCache)

    def executor_of(self, name: str) -> Executor:
        """The executor a stored job ran on (it may have left the configuration since)."""
        found = self.executors.by_name.get(name)
        if found is None:
            raise NotFound(f"executor '{name}' is no longer configured on this platform")
        return found

    @property
    def apps_host(self) -> Executor:
        """The executor apps and interactive jobs run on (this machine's)."""
        host = self.executors.host
        if host is None:
            names = ", ".join(self.executors.by_name)
            raise BadRequest(f"none of this platform's executors ({names}) runs apps")
        return host

    def apps_on(self, name: str | None, what: str) -> Executor:
        """The executor an app names (None: this machine's), or a 400 saying why not there."""
        if name is None:
            return self.apps_host
        found = self.executors.get(name)
        found.require("apps", f"{what} is a long-running service")
        return found

    def poke(self, executor: str | None = None) -> None:
        """Ask the reconciler of one executor (or every one) for a turn soon."""
        for name, loop in self.reconcilers.items():
            if executor is None or name == executor:
                loop.poke()


async def platform(request: Request) -> Platform:
    """Async on purpose: FastAPI runs a plain ``def`` dependency in a worker thread."""
    value: Platform = request.app.state.platform
    return value
