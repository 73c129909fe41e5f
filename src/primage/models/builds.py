"""Image builds."""

from __future__ import annotations

import datetime as dt

from pydantic import Field

from primage.models import Model, Strict


class BuildRequest(Strict):
    source: str = Field(description="A git URL the server can clone (file://, https://, …).")
    tag: str = Field(description="Where to push: namespace/repository:tag, e.g. alice/seg:1.0.")
    ref: str | None = Field(None, description="Branch, tag or commit; default the default branch.")
    context: str = Field(
        ".", description="Folder of the repository the image is built from, e.g. apps/seg."
    )
    dockerfile: str = Field("Dockerfile", description="Path of the Dockerfile in the context.")
    test_command: str | None = Field(
        None, description="Run in the built image (network off); a failure blocks the push."
    )


class Build(Model):
    id: int
    owner: str
    source: str
    ref: str | None
    commit: str | None
    context: str = "."
    tag: str
    state: str
    digest: str | None
    message: str
    created_at: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    duration_s: float | None


class HookRequest(Strict):
    source: str = Field(description="The git URL builds clone (as the server reaches it).")
    tag: str = Field(description="namespace/repository:tag; {branch} and {commit} are filled in.")
    context: str = "."
    dockerfile: str = "Dockerfile"
    test_command: str | None = None


class Hook(Model):
    id: int
    owner: str
    source: str
    tag: str
    github_url: str = Field(description="Payload URL for GitHub (content type application/json).")
    gitlab_url: str = Field(description="URL for GitLab (the secret goes in 'Secret token').")


class HookWithSecret(Hook):
    secret: str = Field(description="The webhook secret, shown this once.")
