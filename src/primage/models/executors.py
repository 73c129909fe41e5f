"""Where jobs can run: the platform's executors as the API shows them."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from primage.models import Model


class ExecutorInfo(Model):
    name: str
    kind: str = Field(description="local, or another installed kind (e.g. slurm).")
    description: str
    default: bool = Field(description="Jobs that name no executor run here.")
    capabilities: list[str] = Field(description="e.g. arrays, containers, apps.")
    capacity: int = Field(description="Cores' worth of tasks it runs at once.")
    healthy: bool
    problem: str | None = Field(None, description="Why it cannot run tasks now.")
    may_use: bool = Field(description="Whether you may run jobs here (executor_groups).")
    job_options: dict[str, Any] = Field(
        description="JSON Schema of the executor_options a job may give it."
    )
