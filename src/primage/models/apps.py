"""Applications: long-running services deployed from a template and reached through the platform.

One pydantic model, :class:`AppSpec`, validates the project's own YAML, what a TOSCA template
becomes (``primage/templates/``) and API bodies alike; its field descriptions are the documentation
(``primage app spec``).
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Any, Literal

from pydantic import (
    BeforeValidator,
    Field,
    field_validator,
    model_validator,
)

from primage.jobs.template import PATTERN
from primage.models import Model, Strict, validated
from primage.models.jobs import (
    Mount,
    Resources,
    Seconds,
    check_env_and_mounts,
    parse_mount,
)

NAME = re.compile(r"[a-z](?:[a-z0-9-]{0,38}[a-z0-9])?")
VARIABLES = ("port", "ip", "base_url", "app_token", "workdir", "spaces.NAME")
PLAIN = ("port", "ip", "base_url", "app_token")  # always there; the others as the spec says
MAX_REPLICAS = 16


class Access(Strict):
    """Who may open the app through the platform (its owner and admins always may)."""

    who: Literal["owner", "members", "group"] = Field(
        "owner",
        description="owner: only the owner; members: whoever may read every space the app "
        "mounts; group: the members of 'group'.",
    )
    group: str | None = Field(None, description="With who: group, the group (local or a VO's).")

    @model_validator(mode="after")
    def group_when_needed(self) -> Access:
        if (self.who == "group") != (self.group is not None):
            raise ValueError("access: give 'group' exactly when who is 'group'")
        return self


class AppSpec(Strict):
    """A service: what runs, where it listens, what data it sees, who may open it."""

    name: str = Field(description="Its name, in its URL: /apps/<name>/.")
    image: str | None = Field(None, description="Container image (executors with containers).")
    command: str | None = Field(
        None,
        description="Command line. Variables: {port} (where to listen), {ip} (on which "
        "address: 127.0.0.1 for a process, 0.0.0.0 in a container or pod), "
        "{base_url} (the path the app is served under, /apps/<name>/), {app_token} (a secret "
        "the proxy sends as 'Authorization: token …'), {workdir}, {spaces.NAME}.",
    )
    port: int | None = Field(
        None,
        ge=1,
        le=65535,
        description="Port the app listens on; default: a free one the platform picks ({port}).",
    )
    health_path: str = Field(
        "", description="Path below {base_url} that answers 200 once the app is ready."
    )
    strip_prefix: bool = Field(
        False, description="Send requests to the app without the /apps/<name> prefix."
    )
    replicas: int = Field(1, ge=1, le=MAX_REPLICAS, description="Instances behind the proxy.")
    resources: Resources = Field(default_factory=Resources)
    env: dict[str, str] = Field(default_factory=dict, description="Environment variables.")
    secrets: dict[str, str] = Field(
        default_factory=dict,
        description="Environment variables sealed at rest and never shown back.",
    )
    spaces: list[Annotated[Mount, BeforeValidator(parse_mount)]] = Field(
        default_factory=list, description="Spaces the app sees, e.g. ['scans', 'atlas:ro']."
    )
    workdir: str | None = Field(
        None, description="A mounted space (or SPACE/folder) the app starts in ({workdir})."
    )
    idle_timeout: Seconds | None = Field(
        None, description="Stop the app after this long without traffic through the proxy."
    )
    startup_timeout: Seconds = Field(
        120.0, description="How long an instance may take to answer its health check."
    )
    access: Access = Field(default_factory=Access)
    executor: str | None = Field(
        None,
        description="The executor its instances run on (primage executor ls: one that serves "
        "apps); default: this machine's.",
    )

    @field_validator("name")
    @classmethod
    def _url_name(cls, value: str) -> str:
        if not NAME.fullmatch(value):
            raise ValueError(
                f"'{value}' cannot name an app (it is in its URL): lowercase letters, digits "
                "and '-', starting with a letter, at most 40"
            )
        return value

    @model_validator(mode="after")
    def consistent(self) -> AppSpec:
        if self.image is None and self.command is None:
            raise ValueError("give a command (run as a process) or an image (run in a container)")
        if self.port is not None and self.replicas > 1 and self.image is None:
            raise ValueError("a fixed port serves one process: drop 'port' or use replicas: 1")
        check_env_and_mounts([*self.env, *self.secrets], self.spaces)
        folders = [m.path for m in self.spaces if m.folder]
        if folders:
            raise ValueError(
                f"spaces: an app sees whole spaces, not one folder ({', '.join(folders)}); "
                "mount the space"
            )
        names = [m.name for m in self.spaces]
        if self.workdir is not None and self.workdir.split("/", 1)[0] not in names:
            raise ValueError(
                f"workdir '{self.workdir}' is not in a mounted space: add it to spaces"
            )
        check_variables(self.command or "", set(names), self.workdir is not None)
        return self


def check_variables(command: str, spaces: set[str], has_workdir: bool) -> None:
    for match in PATTERN.finditer(command):
        name = match[1]
        if name is None or name in PLAIN:
            continue
        if name.startswith("spaces.") and name.removeprefix("spaces.") not in spaces:
            raise ValueError(f"command uses {{{name}}} but that space is not mounted")
        if name == "workdir" and not has_workdir:
            raise ValueError("command uses {workdir} but the app has no workdir")
        if not name.startswith("spaces.") and name != "workdir":
            known = ", ".join("{" + v + "}" for v in VARIABLES)
            raise ValueError(f"command uses unknown variable {{{name}}}; known: {known}")


def app_from(data: Any, source: str = "app") -> AppSpec:
    """A validated spec, or BadRequest naming each wrong field and what to write instead."""
    return validated(AppSpec, data, source, "name, command")


class Instance(Model):
    """One running copy of an app."""

    index: int
    generation: int = Field(description="The deployment's version it runs (update adds one).")
    state: str = Field(description="starting, ready, crashed, stopped")
    external_id: str | None = Field(description="Where it runs: PID:start-time.")
    port: int | None
    restarts: int
    started_at: dt.datetime | None
    message: str


class App(Model):
    name: str
    owner: str
    state: str = Field(description="deploying, running, updating, failed, stopped")
    url: str = Field(description="Where to open it: the platform's /apps/<name>/.")
    replicas: int
    ready: int = Field(description="Instances that answer their health check.")
    generation: int
    message: str = Field("", description="Why it is in its state.")
    created_at: dt.datetime
    updated_at: dt.datetime
    last_activity_at: dt.datetime | None


class AppEvent(Model):
    at: dt.datetime
    message: str


class AppDetail(App):
    spec: AppSpec = Field(description="As deployed; secrets' values are not shown.")
    instances: list[Instance]
    events: list[AppEvent] = Field(description="The latest first.")


class AppUpdate(Strict):
    """What ``update`` may change; the rest of the spec stays."""

    replicas: int | None = Field(None, ge=1, le=16)
    image: str | None = None
    command: str | None = None
    env: dict[str, str] | None = Field(None, description="Replaces the environment.")
    resources: Resources | None = None


class TemplateText(Strict):
    """A template's text, its inputs, and the files beside it that it imports."""

    template: str | None = Field(None, description="Own YAML, TOSCA or RADL, as text.")
    inputs: dict[str, str] = Field(default_factory=dict, description="The template's inputs.")
    files: dict[str, str] = Field(
        default_factory=dict,
        description="Files the template imports by a relative path, as path → text (the CLI "
        "sends those beside the template).",
    )
    source: str = Field("template", max_length=255, description="A name for error messages.")
    name: str | None = Field(None, description="Deploy under this name, not the template's.")


class AppDeploy(TemplateText):
    """A deployment: a template's text with its inputs, or a spec."""

    spec: dict[str, Any] | None = Field(None, description="An app spec instead of a template.")


class AppDeployed(App):
    notes: list[str] = Field(
        default_factory=list, description="What the template says that was left out, and why."
    )


class RenderedTemplate(Model):
    """What a template becomes, without deploying it."""

    kind: Literal["app", "job"] = Field(description="app: primage app deploy; job: job submit.")
    spec: dict[str, Any] = Field(description="The app spec or the job spec.")
    notes: list[str] = Field(description="What the template says that was left out, and why.")
    outputs: dict[str, Any] = Field(description="The template's outputs known before it runs.")
