"""Webhooks: a push to a registered repository (GitHub or GitLab) starts a build.

A hook is registered by its owner (`POST /builds/hooks`), who gets a secret once; the platform
keeps it sealed. GitHub signs each delivery (`X-Hub-Signature-256`, HMAC-SHA256 of the body);
GitLab sends the secret itself (`X-Gitlab-Token`). Both are compared in constant time; a
delivery that fails the check gets 401 and starts nothing. The build runs as the hook's owner,
with the rights they have at that moment.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from typing import Any

from fastapi import APIRouter, Request
from sqlalchemy import select

from primage.auth import audit, tokens
from primage.auth.principal import of_user
from primage.db import tables
from primage.errors import BadRequest, NotFound, Unauthenticated
from primage.models import builds as m
from primage.server.deps import Caller, State
from primage.server.params import Id
from primage.server.routers.builds import check_tag, in_repository, queue_build

router = APIRouter(tags=["builds"])


def fill(template: str, branch: str, commit: str) -> str:
    """The tag for one push: `{branch}` and `{commit}` (12 hex digits) filled in."""
    try:
        return template.format(branch=branch, commit=commit[:12])
    except (KeyError, IndexError, ValueError):
        raise BadRequest(
            f"tag '{template}' may use only {{branch}} and {{commit}} (double other braces)"
        ) from None


def to_hook(state: State, row: tables.BuildHook) -> m.Hook:
    base = state.settings.base_url
    return m.Hook(
        id=row.id,
        owner=row.owner.name,
        source=row.source,
        tag=row.tag,
        github_url=f"{base}/hooks/github/{row.id}",
        gitlab_url=f"{base}/hooks/gitlab/{row.id}",
    )


@router.post("/builds/hooks", status_code=201, response_model=m.HookWithSecret)
def register(body: m.HookRequest, caller: Caller, state: State) -> m.HookWithSecret:
    """Register a repository; its pushes will build `tag` (`{branch}`, `{commit}` filled)."""
    check_tag(caller, fill(body.tag, "main", "0" * 12))
    secret = secrets.token_urlsafe(32)
    with state.db.session() as session:
        row = tables.BuildHook(
            owner_id=caller.user_id,
            source=body.source,
            tag=body.tag,
            context=in_repository(body.context, "context"),
            dockerfile=in_repository(body.dockerfile, "dockerfile"),
            test_command=body.test_command,
            secret=state.box.seal(secret),
        )
        session.add(row)
        session.flush()
        audit.record(session, caller, "build.hook", f"hook:{row.id}", source=body.source)
        return m.HookWithSecret(**to_hook(state, row).model_dump(), secret=secret)


@router.get("/builds/hooks", response_model=list[m.Hook])
def list_hooks(caller: Caller, state: State) -> list[m.Hook]:
    with state.db.session() as session:
        query = select(tables.BuildHook).order_by(tables.BuildHook.id)
        if not caller.is_admin:
            query = query.where(tables.BuildHook.owner_id == caller.user_id)
        return [to_hook(state, row) for row in session.scalars(query)]


def _hook(state: State, hook_id: int) -> tuple[tables.BuildHook, str]:
    with state.db.session() as session:
        row = session.get(tables.BuildHook, hook_id)
        if row is None:
            raise NotFound(f"no build hook {hook_id}")
        session.expunge(row)
    secret = state.box.open(row.secret)
    if secret is None:
        raise Unauthenticated(
            "this hook's secret cannot be read (secret_key changed): register again"
        )
    return row, secret


def _start(state: State, hook: tables.BuildHook, ref: str, commit: str) -> m.Build:
    with state.db.session() as session:
        owner = session.get(tables.User, hook.owner_id)
        assert owner is not None
        tokens.check_not_suspended(owner)
        actor = of_user(owner)
    branch = ref.removeprefix("refs/heads/").removeprefix("refs/tags/")
    tag = fill(hook.tag, branch.replace("/", "-"), commit)
    check_tag(actor, tag)  # the owner's rights now, not when the hook was made
    body = m.BuildRequest(
        source=hook.source,
        tag=tag,
        ref=commit,
        context=hook.context,
        dockerfile=hook.dockerfile,
        test_command=hook.test_command,
    )
    return queue_build(state, actor, owner.id, body)


def _payload(raw: bytes) -> dict[str, Any]:
    try:
        payload = json.loads(raw)
    except ValueError:
        raise BadRequest("the delivery is not JSON: choose content type application/json") from None
    if not isinstance(payload, dict):
        raise BadRequest("the delivery is not a JSON object")
    return payload


@router.post("/hooks/github/{hook_id}", status_code=202)
async def github(hook_id: Id, request: Request, state: State) -> dict[str, Any]:
    hook, secret = _hook(state, hook_id)
    raw = await request.body()
    expected = "sha256=" + hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()
    sent = request.headers.get("x-hub-signature-256", "")
    if not hmac.compare_digest(sent.encode(), expected.encode()):
        raise Unauthenticated("bad or missing X-Hub-Signature-256: check the hook's secret")
    event = request.headers.get("x-github-event", "")
    if event == "ping":
        return {"pong": True}
    if event != "push":
        return {"ignored": event}
    payload = _payload(raw)
    commit = str(payload.get("after") or "")
    if not commit.strip("0"):  # a deleted branch
        return {"ignored": "branch deleted"}
    return {"build": _start(state, hook, str(payload.get("ref", "")), commit).id}


@router.post("/hooks/gitlab/{hook_id}", status_code=202)
async def gitlab(hook_id: Id, request: Request, state: State) -> dict[str, Any]:
    hook, secret = _hook(state, hook_id)
    sent = request.headers.get("x-gitlab-token", "")
    if not hmac.compare_digest(sent.encode(), secret.encode()):
        raise Unauthenticated("bad or missing X-Gitlab-Token: check the hook's secret token")
    if request.headers.get("x-gitlab-event") not in ("Push Hook", "Tag Push Hook"):
        return {"ignored": request.headers.get("x-gitlab-event", "")}
    payload = _payload(await request.body())
    commit = str(payload.get("checkout_sha") or "")
    if not commit:
        return {"ignored": "branch deleted"}
    return {"build": _start(state, hook, str(payload.get("ref", "")), commit).id}
