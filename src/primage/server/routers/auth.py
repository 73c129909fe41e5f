"""Login: the identity providers the platform trusts, and the browser's login and logout.

The CLI logs in at the provider itself (device flow, see `primage login`) and only reads
`GET /auth/providers` here; browsers go through `/auth/login` → provider → `/auth/callback`,
which sets the session cookie, and leave with `POST /auth/logout`.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlsplit

from fastapi import APIRouter, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, RedirectResponse

from primage.auth import audit, sessions, weblogin
from primage.auth.principal import Principal
from primage.models.auth import ProviderInfo
from primage.server.deps import State, csrf_sent

router = APIRouter(prefix="/auth", tags=["auth"])


@router.get("/providers", response_model=list[ProviderInfo])
def providers(state: State) -> list[ProviderInfo]:
    """Public: what a client needs to start a login (no secrets)."""
    return [
        ProviderInfo(
            name=p.name,
            issuer=p.issuer,
            client_id=p.settings.public_client_id,
            scopes=p.settings.scopes,
            required_groups=p.settings.required_groups,
            login_url=f"{state.settings.base_url}/auth/login?provider={p.name}",
        )
        for p in state.providers.by_name.values()
    ]


@router.get("/login")
def login(
    state: State,
    provider: Annotated[str | None, Query(description="Provider name; optional if one.")] = None,
    next: Annotated[str | None, Query(description="Path to return to afterwards.")] = None,
) -> RedirectResponse:
    """Send the browser to the provider (authorization code flow with PKCE)."""
    url = weblogin.start(state.db, state.settings, state.providers, provider, next)
    return RedirectResponse(url, status_code=303)


@router.get("/callback")
async def callback(
    state: State,
    code: str | None = None,
    state_: Annotated[str | None, Query(alias="state")] = None,
    iss: str | None = None,
    error: str | None = None,
    error_description: str | None = None,
) -> RedirectResponse:
    """Where the provider sends the browser back: exchange the code, open a session."""
    done = await run_in_threadpool(
        weblogin.finish,
        state.db,
        state.settings,
        state.box,
        state.providers,
        code=code,
        state=state_,
        issuer=iss,
        error=error_description or error,
    )
    response = RedirectResponse(done.next_url, status_code=303)
    response.set_cookie(
        sessions.COOKIE,
        done.cookie,
        max_age=int(state.settings.session_hours * 3600),
        path="/",
        httponly=True,
        samesite="lax",
        secure=urlsplit(state.settings.base_url).scheme == "https",
    )
    return response


@router.post("/logout")
async def logout(request: Request, state: State) -> Response:
    """End the browser session (and revoke its refresh token at the provider). The cookie is
    cleared in any case, also when the session had already ended."""
    cookie = request.cookies.get(sessions.COOKIE)
    ended = None
    if cookie:
        sent = await csrf_sent(request)
        ended = await run_in_threadpool(_end_session, state, cookie, sent)
    if ended is not None and ended[1] and ended[0] in state.providers.by_name:
        await run_in_threadpool(state.providers.get(ended[0]).revoke, ended[1])
    response = JSONResponse({"logged_out": ended is not None})
    response.delete_cookie(sessions.COOKIE, path="/")
    return response


def _end_session(state: State, cookie: str, sent: str | None) -> tuple[str, str | None] | None:
    """(provider, refresh token) of the session ended, or None if there was none to end."""
    with state.db.session() as session:
        row = sessions.find(session, cookie)
        if row is None:
            return None
        user = row.user
        actor = Principal(user_id=user.id, name=user.name, is_admin=user.is_admin, via="session",
                          csrf_token=row.csrf_token)  # fmt: skip
        sessions.check_csrf(actor, "POST", sent)  # another site cannot log you out
        _, refresh = sessions.end(session, state.box, cookie)
        audit.record(session, actor, "user.logout", f"user:{user.name}", via="web")
        provider = row.provider
    state.principals.clear()
    return provider, refresh
