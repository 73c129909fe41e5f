"""Trusted OpenID Connect providers: who an access token stands for, checked without a round trip.

A JWT access token is verified locally against the provider's keys (JWKS, fetched once and again
only when a token names a key id not seen yet, at most every ``JWKS_MIN_REFRESH`` seconds): the
issuer picks the provider, then signature, ``exp``, ``nbf``, ``iss`` and ``aud`` (when configured)
are checked, with only the asymmetric algorithms the provider's settings allow. An opaque token
goes to the provider's introspection endpoint. Group memberships come from
``eduperson_entitlement`` in the token, else from introspection, else from the userinfo endpoint.

Every failure names its reason: an unusable token is :class:`Unauthenticated` (401); a provider
that cannot be reached is :class:`ProviderUnavailable` (503) naming it.
"""

from __future__ import annotations

import datetime as dt
import re
import threading
import time
from dataclasses import dataclass
from typing import Any

import httpx
import jwt

from primage.auth import entitlements
from primage.auth.entitlements import Entitlement
from primage.config import ProviderSettings
from primage.errors import BadRequest, NotFound, ProviderUnavailable, Unauthenticated

TOKEN_RE = re.compile(r"[A-Za-z0-9._~+/-]+=*")  # RFC 6750 b64token
MAX_TOKEN = 16384
JWKS_MIN_REFRESH = 1.0  # seconds between fetches of the keys: unknown kids cannot force more
DISCOVERY_TTL = 3600.0


@dataclass(frozen=True)
class Identity:
    """A person as a provider vouches for them."""

    provider: str
    subject: str  # voperson_id when released, else sub
    username: str | None
    display_name: str | None
    email: str | None
    entitlements: frozenset[Entitlement]
    expires_at: dt.datetime | None


def looks_like_jwt(raw: str) -> bool:
    return raw.count(".") == 2 and raw.startswith("eyJ")


def _header(raw: str, what: str) -> dict[str, Any]:
    try:
        return jwt.get_unverified_header(raw)
    except jwt.DecodeError:
        raise Unauthenticated(f"malformed {what}: it does not decode as a JWT") from None


def _time(value: object) -> dt.datetime | None:
    if isinstance(value, int | float):
        return dt.datetime.fromtimestamp(value, dt.UTC)
    return None


class Provider:
    """One trusted provider: its metadata, its keys, and the calls the platform makes to it."""

    def __init__(self, settings: ProviderSettings, http: httpx.Client | None = None) -> None:
        self.settings = settings
        self.name = settings.name
        self.issuer = settings.issuer.rstrip("/")
        self.http = http or httpx.Client(timeout=settings.timeout_seconds)
        self._lock = threading.Lock()
        self._metadata: dict[str, Any] | None = None
        self._metadata_at = 0.0
        self._keys: dict[str, jwt.PyJWK] = {}
        self._keys_at = 0.0

    # -- talking to the provider ------------------------------------------------------------

    def _unavailable(self, what: str, exc: Exception | str) -> ProviderUnavailable:
        reason = exc if isinstance(exc, str) else f"{exc.__class__.__name__}: {exc}"
        return ProviderUnavailable(
            f"identity provider '{self.name}' ({self.issuer}) is unavailable for {what} "
            f"({reason}); platform tokens (prm_…) keep working"
        )

    def _call(self, what: str, method: str, url: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self.http.request(method, url, **kwargs)
        except httpx.HTTPError as exc:
            raise self._unavailable(what, exc) from None
        if response.status_code >= 500:
            raise self._unavailable(what, f"HTTP {response.status_code}")
        return response

    def metadata(self) -> dict[str, Any]:
        """The discovery document, cached for an hour."""
        with self._lock:
            if self._metadata is not None and time.monotonic() - self._metadata_at < DISCOVERY_TTL:
                return self._metadata
        url = f"{self.issuer}/.well-known/openid-configuration"
        response = self._call("discovery", "GET", url)
        try:
            document = response.json()
        except ValueError:
            document = None
        if response.status_code != 200 or not isinstance(document, dict):
            raise self._unavailable("discovery", f"HTTP {response.status_code} from {url}")
        if str(document.get("issuer", "")).rstrip("/") != self.issuer:
            raise self._unavailable(
                "discovery", f"its document names issuer {document.get('issuer')!r}"
            )
        with self._lock:
            self._metadata, self._metadata_at = document, time.monotonic()
        return document

    def endpoint(self, name: str) -> str | None:
        value = self.metadata().get(name)
        return value if isinstance(value, str) else None

    def _refresh_keys(self) -> None:
        uri = self.endpoint("jwks_uri")
        if uri is None:
            raise self._unavailable("key lookup", "no jwks_uri in its discovery document")
        response = self._call("key lookup", "GET", uri)
        try:
            keyset = jwt.PyJWKSet.from_dict(response.json())
        except (ValueError, jwt.PyJWKSetError) as exc:
            raise self._unavailable("key lookup", f"unusable key set: {exc}") from None
        keys = {key.key_id: key for key in keyset.keys if key.key_id}
        with self._lock:
            self._keys, self._keys_at = keys, time.monotonic()

    def key(self, kid: str | None) -> jwt.PyJWK:
        """The signing key a token names, fetching the key set again if it is new to us."""
        if not kid:
            raise Unauthenticated("token has no key id (kid) in its header; cannot verify it")
        with self._lock:
            found, fetched_at = self._keys.get(kid), self._keys_at
        if found is not None:
            return found
        if time.monotonic() - fetched_at >= JWKS_MIN_REFRESH or not fetched_at:
            self._refresh_keys()
            with self._lock:
                found = self._keys.get(kid)
        if found is None:
            raise Unauthenticated(
                f"token signed with key '{kid}', which provider '{self.name}' does not publish"
            )
        return found

    # -- access tokens ----------------------------------------------------------------------

    def verify_jwt(self, raw: str) -> dict[str, Any]:
        """The claims of a JWT access token this provider signed, or Unauthenticated saying why."""
        header = _header(raw, "token")
        alg = header.get("alg")
        if alg not in self.settings.algorithms:
            raise Unauthenticated(
                f"token signed with algorithm {alg!r}; accepted: "
                + ", ".join(self.settings.algorithms)
            )
        key = self.key(header.get("kid"))
        audience = self.settings.audience
        try:
            claims: dict[str, Any] = jwt.decode(
                raw,
                key=key.key,
                algorithms=[alg],
                issuer=self.settings.issuer,
                audience=audience,
                leeway=self.settings.leeway_seconds,
                options={"require": ["exp", "iss", "sub"], "verify_aud": audience is not None},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated("token expired: log in again (primage login)") from None
        except jwt.ImmatureSignatureError:
            raise Unauthenticated("token is not valid yet (nbf/iat in the future)") from None
        except jwt.InvalidAudienceError:
            raise Unauthenticated(
                f"token is not meant for this platform (aud ≠ {audience})"
            ) from None
        except jwt.InvalidSignatureError:
            raise Unauthenticated("token signature does not verify: it was altered") from None
        except jwt.MissingRequiredClaimError as exc:
            raise Unauthenticated(f"token lacks the '{exc.claim}' claim") from None
        except jwt.InvalidTokenError as exc:
            raise Unauthenticated(f"token rejected: {exc}") from None
        return claims

    def introspect(self, raw: str) -> dict[str, Any]:
        """RFC 7662: the provider says whether an opaque token is active, and for whom."""
        uri = self.endpoint("introspection_endpoint")
        secret = self.settings.client_secret
        if uri is None or secret is None:
            raise Unauthenticated(
                f"opaque tokens cannot be checked with provider '{self.name}' (no introspection "
                "endpoint or no client secret configured); use a JWT access token"
            )
        response = self._call(
            "introspection",
            "POST",
            uri,
            data={"token": raw, "token_type_hint": "access_token"},
            auth=(self.settings.client_id, secret.get_secret_value()),
        )
        try:
            claims: dict[str, Any] = response.json()
        except ValueError:
            raise self._unavailable("introspection", "a reply that is not JSON") from None
        if response.status_code != 200:
            raise self._unavailable("introspection", f"HTTP {response.status_code}")
        if claims.get("active") is not True:
            raise Unauthenticated(
                f"token is not active at provider '{self.name}' (expired, revoked or unknown)"
            )
        issuer = claims.get("iss")
        if issuer is not None and str(issuer).rstrip("/") != self.issuer:
            raise Unauthenticated(f"token was issued by {issuer}, not by provider '{self.name}'")
        return claims

    def userinfo(self, raw: str) -> dict[str, Any]:
        """The userinfo claims for an access token, or {} when the token may not read them."""
        uri = self.endpoint("userinfo_endpoint")
        if uri is None:
            return {}
        response = self._call("userinfo", "GET", uri, headers={"Authorization": f"Bearer {raw}"})
        if response.status_code != 200:
            return {}
        try:
            claims = response.json()
        except ValueError:
            return {}
        return claims if isinstance(claims, dict) else {}

    def identify(self, raw: str, claims: dict[str, Any]) -> Identity:
        """The person behind verified claims, reading userinfo when groups are not in them."""
        if "eduperson_entitlement" not in claims:
            extra = self.userinfo(raw)
            if extra.get("sub") not in (None, claims.get("sub")):
                raise Unauthenticated("userinfo answered for another subject than the token's")
            claims = {**extra, **claims}
        subject = claims.get("voperson_id") or claims.get("sub")
        if not isinstance(subject, str) or not subject:
            raise Unauthenticated("token names no subject (sub or voperson_id)")

        def text(name: str) -> str | None:
            value = claims.get(name)
            return value if isinstance(value, str) else None

        return Identity(
            provider=self.name,
            subject=subject,
            username=text("preferred_username"),
            display_name=text("name"),
            email=text("email"),
            entitlements=entitlements.parse_all(claims.get("eduperson_entitlement")),
            expires_at=_time(claims.get("exp")),
        )

    # -- the flows the web login and logout use ---------------------------------------------

    def token_request(self, what: str, data: dict[str, str]) -> dict[str, Any]:
        """A call to the token endpoint with the platform's client credentials."""
        uri = self.endpoint("token_endpoint")
        if uri is None:
            raise self._unavailable(what, "no token_endpoint in its discovery document")
        secret = self.settings.client_secret
        auth = (self.settings.client_id, secret.get_secret_value()) if secret else None
        if auth is None:
            data = {**data, "client_id": self.settings.client_id}
        response = self._call(what, "POST", uri, data=data, auth=auth)
        try:
            body: dict[str, Any] = response.json()
        except ValueError:
            raise self._unavailable(what, f"HTTP {response.status_code}, not JSON") from None
        if response.status_code != 200:
            error = body.get("error_description") or body.get("error") or response.status_code
            raise Unauthenticated(f"provider '{self.name}' refused the {what}: {error}")
        return body

    def verify_id_token(self, raw: str, nonce: str) -> dict[str, Any]:
        """An ID token from the code exchange: signed by the provider, for our client, our nonce."""
        header = _header(raw, "ID token")
        alg = header.get("alg")
        if alg not in self.settings.algorithms:
            raise Unauthenticated(f"ID token signed with algorithm {alg!r}")
        try:
            claims: dict[str, Any] = jwt.decode(
                raw,
                key=self.key(header.get("kid")),
                algorithms=[alg],
                issuer=self.settings.issuer,
                audience=self.settings.client_id,
                leeway=self.settings.leeway_seconds,
                options={"require": ["exp", "iss", "sub", "aud"]},
            )
        except jwt.InvalidTokenError as exc:
            raise Unauthenticated(f"ID token rejected: {exc}") from None
        if claims.get("nonce") != nonce:
            raise Unauthenticated("ID token nonce does not match this login; start again")
        return claims

    def revoke(self, refresh_token: str) -> None:
        """Best effort: tell the provider a refresh token is no longer needed."""
        try:
            uri = self.endpoint("revocation_endpoint")
            secret = self.settings.client_secret
            if uri and secret:
                self.http.post(
                    uri,
                    data={"token": refresh_token, "token_type_hint": "refresh_token"},
                    auth=(self.settings.client_id, secret.get_secret_value()),
                )
        except (httpx.HTTPError, ProviderUnavailable):
            pass

    def close(self) -> None:
        self.http.close()


class Providers:
    """The trusted providers, and which one a token belongs to."""

    def __init__(self, settings: list[ProviderSettings]) -> None:
        self.by_name = {each.name: Provider(each) for each in settings}
        self.by_issuer = {p.issuer: p for p in self.by_name.values()}

    def __bool__(self) -> bool:
        return bool(self.by_name)

    def get(self, name: str | None) -> Provider:
        if name is None and len(self.by_name) == 1:
            return next(iter(self.by_name.values()))
        if not self.by_name:
            raise NotFound(
                "this platform trusts no identity provider (setting oidc_providers): log in with "
                "a platform token instead"
            )
        if name is None:
            raise BadRequest(f"choose an identity provider: provider={' or '.join(self.by_name)}")
        if name not in self.by_name:
            raise NotFound(f"no identity provider '{name}'; known: {', '.join(self.by_name)}")
        return self.by_name[name]

    def authenticate(self, raw: str) -> Identity:
        """The identity behind a provider's access token (JWT or opaque)."""
        if len(raw) > MAX_TOKEN or not TOKEN_RE.fullmatch(raw):
            # not a bearer token at all (RFC 6750 syntax): no provider is asked about it
            raise Unauthenticated("malformed token: not a platform token nor an access token")
        if looks_like_jwt(raw):
            try:
                unverified = jwt.decode(raw, options={"verify_signature": False})
            except jwt.DecodeError:
                raise Unauthenticated("malformed JWT: it does not decode") from None
            issuer = str(unverified.get("iss", "")).rstrip("/")
            provider = self.by_issuer.get(issuer)
            if provider is None:
                raise Unauthenticated(f"token issued by {issuer or 'nobody'}, which is not trusted")
            return provider.identify(raw, provider.verify_jwt(raw))
        for provider in self.by_name.values():
            if provider.settings.client_secret is None:
                continue
            try:
                return provider.identify(raw, provider.introspect(raw))
            except Unauthenticated:
                continue
        raise Unauthenticated(
            "unknown token: neither a platform token (prm_…) nor one a trusted provider accepts"
        )

    def close(self) -> None:
        for provider in self.by_name.values():
            provider.close()
