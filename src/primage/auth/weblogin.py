"""The browser's login: OpenID Connect authorization code flow with PKCE (RFC 7636).

``start`` records a single-use login request (hash of ``state``, the PKCE verifier, the nonce,
where to go afterwards) and returns the provider's authorization URL. ``finish`` takes the
callback's ``code`` and ``state``, checks ``iss`` when the provider sends it (mix-up defence),
exchanges the code with the verifier, verifies the ID token (signature, audience, nonce), admits
the user through the provider's group rules and opens a session (see :mod:`.sessions`).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass
from urllib.parse import urlencode

from sqlalchemy import delete

from primage.auth import audit, oidc, provisioning, sessions
from primage.auth.crypto import SecretBox
from primage.auth.oidc import Providers
from primage.auth.principal import Principal
from primage.config import Settings
from primage.db import Database
from primage.db.tables import LoginRequest, utcnow
from primage.errors import BadRequest, Forbidden, Unauthenticated

LOGIN_WINDOW = dt.timedelta(minutes=10)
CALLBACK = "/auth/callback"


def _hash(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def safe_next(value: str | None) -> str:
    """Only a path on this server: never an open redirect to another site."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    return value


def start(
    db: Database, settings: Settings, providers: Providers, name: str | None, next_url: str | None
) -> str:
    """Begin a login; returns the URL to send the browser to."""
    provider = providers.get(name)
    endpoint = provider.endpoint("authorization_endpoint")
    if endpoint is None:
        raise BadRequest(f"provider '{provider.name}' publishes no authorization endpoint")
    state, verifier, nonce = (secrets.token_urlsafe(32) for _ in range(3))
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    with db.session() as session:
        session.execute(
            delete(LoginRequest).where(LoginRequest.created_at < utcnow() - LOGIN_WINDOW)
        )
        session.add(
            LoginRequest(
                state_hash=_hash(state),
                provider=provider.name,
                code_verifier=verifier,
                nonce=nonce,
                next_url=safe_next(next_url),
            )
        )
    query = {
        "response_type": "code",
        "client_id": provider.settings.client_id,
        "redirect_uri": settings.base_url + CALLBACK,
        "scope": provider.settings.scopes,
        "state": state,
        "nonce": nonce,
        "code_challenge": challenge.rstrip(b"=").decode(),
        "code_challenge_method": "S256",
    }
    return f"{endpoint}?{urlencode(query)}"


@dataclass(frozen=True)
class Login:
    principal: Principal
    cookie: str
    next_url: str


def finish(
    db: Database,
    settings: Settings,
    box: SecretBox,
    providers: Providers,
    *,
    code: str | None,
    state: str | None,
    issuer: str | None,
    error: str | None = None,
) -> Login:
    if error:
        raise Unauthenticated(f"the identity provider refused the login: {error}")
    if not code or not state:
        raise BadRequest("the callback needs 'code' and 'state': start again at /auth/login")
    with db.session() as session:
        request = session.get(LoginRequest, _hash(state))
        if request is not None:
            session.delete(request)  # single use, whatever happens next
            session.flush()
            session.expunge(request)
    if request is None or request.created_at < utcnow() - LOGIN_WINDOW:
        raise BadRequest("unknown or expired login (state): start again at /auth/login")
    provider = providers.get(request.provider)
    if issuer is not None and issuer.rstrip("/") != provider.issuer:
        raise Unauthenticated(f"the callback names issuer {issuer}, not '{provider.name}'")
    reply = provider.token_request(
        "code exchange",
        {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": settings.base_url + CALLBACK,
            "code_verifier": request.code_verifier,
        },
    )
    id_claims = provider.verify_id_token(str(reply.get("id_token", "")), request.nonce)
    access = str(reply.get("access_token", ""))
    claims = (
        provider.verify_jwt(access) if oidc.looks_like_jwt(access) else provider.introspect(access)
    )
    if claims.get("sub") != id_claims.get("sub"):
        raise Unauthenticated("the access token and the ID token name different users")
    identity = provider.identify(access, {**id_claims, **claims})
    refresh = reply.get("refresh_token")
    with db.session() as session:
        outcome = provisioning.admit(session, provider.settings, identity, via="session")
        if not isinstance(outcome, Forbidden):
            cookie = sessions.create(
                session, settings, box, outcome, provider.name, str(refresh) if refresh else None
            )
            audit.record(
                session,
                outcome,
                "user.login",
                f"user:{outcome.name}",
                provider=provider.name,
                via="web",
            )
    if isinstance(outcome, Forbidden):
        raise outcome
    return Login(principal=outcome, cookie=cookie, next_url=request.next_url)
