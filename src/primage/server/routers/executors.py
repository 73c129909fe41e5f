"""Executors: where jobs can run, what each can do, and whether the caller may use it."""

from __future__ import annotations

from fastapi import APIRouter

from primage.auth import policy
from primage.auth.principal import Principal
from primage.errors import Forbidden
from primage.executors.base import Executor
from primage.models.executors import ExecutorInfo
from primage.server.deps import Caller, State
from primage.server.state import Platform

router = APIRouter(prefix="/executors", tags=["executors"])


def info(state: Platform, caller: Principal, executor: Executor) -> ExecutorInfo:
    problem = executor.health()
    try:
        groups = state.settings.executor_groups.get(executor.name)
        policy.check_executor(caller, executor.name, groups)
        may_use = True
    except Forbidden:
        may_use = False
    return ExecutorInfo(
        name=executor.name,
        kind=executor.kind,
        description=executor.description,
        default=executor.name == state.executors.default,
        capabilities=sorted(executor.supports),
        capacity=executor.capacity,
        healthy=problem is None,
        problem=problem,
        may_use=may_use,
        job_options=executor.JobOptions.model_json_schema(),
    )


@router.get("", response_model=list[ExecutorInfo])
def list_executors(caller: Caller, state: State) -> list[ExecutorInfo]:
    """Every executor of the platform: kind, capabilities, capacity, health, and its options."""
    return [info(state, caller, e) for e in state.executors]


@router.get("/{name}", response_model=ExecutorInfo)
def show(name: str, caller: Caller, state: State) -> ExecutorInfo:
    return info(state, caller, state.executors.get(name))
