"""The registry's token server, and the images a user may see in it.

`GET /registry/token` is the Docker Registry v2 token endpoint the registry sends clients to
(see :mod:`primage.auth.registry`). `GET /images` and `DELETE /images/{repository}` list and
remove images through the registry's API, showing only what the caller may pull.
"""

from __future__ import annotations

from typing import Annotated

import httpx
from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from primage.auth import audit, policy
from primage.auth.principal import Principal
from primage.auth.registry import Scope
from primage.errors import BadRequest, Forbidden, NotFound, ServerUnavailable, Unauthenticated
from primage.models.images import Image
from primage.server.deps import Caller, State, authenticate, bearer_or_basic

router = APIRouter(tags=["images"])
ISSUER = "primage"
CATALOG_PAGE = 1000  # the registry's largest page
MANIFESTS = ", ".join(
    [
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    ]
)


@router.get("/registry/token")
async def token(
    request: Request,
    state: State,
    service: str,
    scope: Annotated[list[str], Query()] = [],  # noqa: B006 - FastAPI reads the default
) -> JSONResponse:
    """Docker Registry v2 token auth: a short-lived token for the actions policy grants."""
    if service != state.settings.registry_service:
        raise BadRequest(
            f"unknown service {service!r}; this platform issues tokens for "
            f"{state.settings.registry_service!r}"
        )
    try:
        raw = bearer_or_basic(request.headers.get("authorization", ""))
    except Unauthenticated as exc:
        return JSONResponse(
            exc.to_json(), status_code=401, headers={"WWW-Authenticate": 'Basic realm="primage"'}
        )
    caller = state.principals.get(raw)
    if caller is None:
        caller = await run_in_threadpool(authenticate, state, raw, cookie=False)
        state.principals.put(raw, caller)
    granted = []
    for each in map(Scope.parse, scope):
        actions = policy.registry_actions(caller, each.type, each.name, each.actions)
        if actions:
            granted.append(Scope(each.type, each.name, actions))
    signed = state.registry.sign(
        issuer=ISSUER, subject=caller.name, service=service, access=granted
    )
    return JSONResponse({"token": signed, "access_token": signed, "expires_in": 300})


def _registry(state: State) -> str:
    url = state.settings.registry_url
    if not url:
        raise NotFound("this platform has no registry configured (setting registry_url)")
    return url.rstrip("/")


def _call(
    state: State, method: str, path: str, scopes: list[Scope], accept: str | None = None
) -> httpx.Response:
    """A call to the registry's API with a token the platform issues to itself."""
    signed = state.registry.sign(
        issuer=ISSUER, subject="primage", service=state.settings.registry_service, access=scopes
    )
    headers = {"Authorization": f"Bearer {signed}"}
    if accept:
        headers["Accept"] = accept
    try:
        return httpx.request(method, f"{_registry(state)}{path}", headers=headers, timeout=30)
    except httpx.HTTPError as exc:
        raise ServerUnavailable(
            f"the registry at {_registry(state)} is unreachable: {exc}"
        ) from None


def _repositories(state: State) -> list[str]:
    """Every repository in the registry (the catalog, page by page)."""
    found: list[str] = []
    path: str | None = f"/v2/_catalog?n={CATALOG_PAGE}"
    while path:
        page = _call(state, "GET", path, [Scope("registry", "catalog", ("*",))])
        if page.status_code != 200:
            raise ServerUnavailable(f"the registry refused its catalog: {page.text[:200]}")
        found += page.json().get("repositories") or []
        path = page.links.get("next", {}).get("url")
    return found


def _visible(caller: Principal, state: State) -> list[Image]:
    images = []
    for repository in _repositories(state):
        if not policy.registry_actions(caller, "repository", repository, ("pull",)):
            continue
        scope = [Scope("repository", repository, ("pull",))]
        tags = _call(state, "GET", f"/v2/{repository}/tags/list", scope).json().get("tags") or []
        images.append(Image(repository=repository, tags=sorted(tags)))
    return images


@router.get("/images", response_model=list[Image])
def list_images(caller: Caller, state: State) -> list[Image]:
    """The repositories in the platform registry the caller may pull, with their tags."""
    return _visible(caller, state)


@router.delete("/images/{repository:path}", status_code=204)
def remove_image(repository: str, tag: str, caller: Caller, state: State) -> None:
    """Remove one tag's manifest (the registry frees its layers at its next garbage collection)."""
    if not policy.registry_actions(caller, "repository", repository, ("delete",)):
        raise Forbidden(
            f"you may not delete images in '{repository}' (your namespace is '{caller.name}/')"
        )
    scope = [Scope("repository", repository, ("pull", "delete"))]
    head = _call(state, "HEAD", f"/v2/{repository}/manifests/{tag}", scope, MANIFESTS)
    if head.status_code == 404:
        raise NotFound(f"no image {repository}:{tag}")
    digest = head.headers.get("Docker-Content-Digest")
    if not digest:
        raise ServerUnavailable(f"the registry gave no digest for {repository}:{tag}")
    gone = _call(state, "DELETE", f"/v2/{repository}/manifests/{digest}", scope)
    if gone.status_code not in (200, 202):
        raise BadRequest(f"the registry refused to delete {repository}:{tag}: {gone.text[:200]}")
    with state.db.session() as session:
        audit.record(session, caller, "image.delete", f"image:{repository}:{tag}", digest=digest)
