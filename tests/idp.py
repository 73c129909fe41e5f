"""The test identity provider: panva's oidc-provider (tests/idp/provider.mjs) run with Node.js.

:class:`IdentityProvider` starts it on a free loopback port with a signing key generated here (so
tests can also forge tokens with the provider's real key, and with other keys), keeps its account
directory in a JSON file (a test changes someone's groups "at the provider" by rewriting it), and
drives its login pages with HTTP the way a browser would: :func:`browse` follows redirects and
submits each page's form, typing the user's login where the form asks for one.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from tests.harness import free_port

HERE = Path(__file__).parent / "idp"
REALM = "/auth/realms/egi"
AUDIENCE = "urn:primage:api"
VO = "vo.primage.eu"


def entitlement(group: str, role: str = "member") -> str:
    return f"urn:mace:egi.eu:group:{group}:role={role}#aai.egi.eu"


MEMBER = [entitlement(VO)]
ACCOUNTS: dict[str, dict[str, Any]] = {
    "alice": {"entitlements": [*MEMBER, entitlement(f"{VO}:neuroblastoma")]},
    "bob": {"entitlements": [entitlement("vo.other.eu")]},  # outside the required group
    "carol": {"entitlements": [*MEMBER, entitlement(VO, "manager")]},  # admin group
    "dave": {"entitlements": MEMBER},
    "erin": {"entitlements": [*MEMBER, entitlement(f"{VO}:neuroblastoma")]},
    "mallory": {"entitlements": ["not-an-urn", 42, "urn:mace:egi.eu:group::role=x", *MEMBER]},
}


def why_unavailable() -> str | None:
    if shutil.which("node") is None:
        return "Node.js is not installed (apt-get install nodejs npm)"
    if not (HERE / "node_modules" / "oidc-provider").is_dir():
        return "the test provider is not installed (cd tests/idp && npm ci)"
    return None


def new_key(kid: str) -> tuple[rsa.RSAPrivateKey, dict[str, Any]]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = json.loads(RSAAlgorithm.to_jwk(key))
    jwk.update(kid=kid, use="sig", alg="RS256")
    return key, jwk


class _Form(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.action: str | None = None
        self.fields: dict[str, str] = {}

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "form" and self.action is None:
            self.action = values.get("action") or ""
        if tag == "input" and values.get("name"):
            self.fields[str(values["name"])] = values.get("value") or ""


def browse(
    browser: httpx.Client, url: str, login: str, stop_at: str | None = None
) -> httpx.Response:
    """Open ``url`` and click through: follow redirects, submit forms, log in as ``login``.

    Stops at a page without a form, or at a redirect to a URL starting with ``stop_at`` (which is
    then followed by the caller, e.g. a callback on the platform).
    """
    response = browser.get(url)
    for _ in range(20):
        if response.is_redirect:
            target = str(response.url.join(response.headers["location"]))
            if stop_at and target.startswith(stop_at):
                return response
            response = browser.get(target)
            continue
        form = _Form()
        form.feed(response.text)
        if form.action is None:
            return response
        if "login" in form.fields:
            form.fields.update(login=login, password="any")
        response = browser.post(response.url.join(form.action), data=form.fields)
    raise AssertionError("the login did not finish in 20 steps")


@dataclass
class IdentityProvider:
    workdir: Path
    port: int = field(default_factory=free_port)
    kid: str = "k1"
    process: subprocess.Popen[bytes] | None = None
    web_port: int = field(default_factory=free_port)  # where a web-login server must listen

    def __post_init__(self) -> None:
        self.key, jwk = new_key(self.kid)
        (self.workdir / "keys.json").write_text(json.dumps({"keys": [jwk]}))
        self.set_accounts(ACCOUNTS)

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.port}{REALM}"

    @property
    def endpoint(self) -> str:
        return f"{self.issuer}/protocol/openid-connect"

    def set_accounts(self, accounts: dict[str, dict[str, Any]]) -> None:
        path = self.workdir / "accounts.json"
        path.with_suffix(".tmp").write_text(json.dumps(accounts))
        path.with_suffix(".tmp").replace(path)

    def set_entitlements(self, user: str, values: list[Any]) -> None:
        accounts = json.loads((self.workdir / "accounts.json").read_text())
        accounts[user] = {"entitlements": values}
        self.set_accounts(accounts)

    def start(self) -> IdentityProvider:
        env = {
            "PATH": "/usr/local/bin:/usr/bin:/bin",
            "IDP_PORT": str(self.port),
            "IDP_KEYS": str(self.workdir / "keys.json"),
            "IDP_ACCOUNTS": str(self.workdir / "accounts.json"),
            "IDP_REDIRECTS": f"http://127.0.0.1:{self.web_port}/auth/callback",
            "IDP_AUDIENCE": AUDIENCE,
        }
        log = open(self.workdir / "idp.log", "ab")  # noqa: SIM115 - the child writes to it
        self.process = subprocess.Popen(
            ["node", str(HERE / "provider.mjs")], env=env, stdout=log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError((self.workdir / "idp.log").read_text())
            try:
                discovery = f"{self.issuer}/.well-known/openid-configuration"
                if httpx.get(discovery, timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError(
            "the test provider did not start:\n" + (self.workdir / "idp.log").read_text()
        )

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)

    def rotate_key(self, kid: str) -> None:
        """Restart with a new signing key, as a provider rotating its keys would."""
        self.stop()
        self.kid = kid
        self.key, jwk = new_key(kid)
        (self.workdir / "keys.json").write_text(json.dumps({"keys": [jwk]}))
        self.start()

    def settings(self, **overrides: Any) -> dict[str, Any]:
        """The platform's provider settings for this provider (PRIMAGE_OIDC_PROVIDERS entry)."""
        return {
            "name": "egi",
            "issuer": self.issuer,
            "client_id": "primage-web",
            "client_secret": "web-secret",
            "cli_client_id": "primage-cli",
            "audience": AUDIENCE,
            "required_groups": [VO],
            "admin_groups": [f"{VO}:role=manager"],
            **overrides,
        }

    def server_env(self, **overrides: Any) -> dict[str, str]:
        return {
            "PRIMAGE_OIDC_PROVIDERS": json.dumps([self.settings(**overrides)]),
            "PRIMAGE_PUBLIC_URL": f"http://127.0.0.1:{self.web_port}",
        }

    # -- getting tokens the way users do ------------------------------------------------------

    def device_login(self, user: str, client_id: str = "primage-cli") -> dict[str, Any]:
        """Tokens for ``user`` through the device flow (the CLI's way), approved in a browser."""
        scope = "openid offline_access profile email eduperson_entitlement voperson_id"
        started = httpx.post(
            f"{self.endpoint}/auth/device", data={"client_id": client_id, "scope": scope}
        ).json()
        self.approve(started["verification_uri_complete"], user)
        reply = httpx.post(
            f"{self.endpoint}/token",
            data={
                "client_id": client_id,
                "grant_type": "urn:ietf:params:oauth:grant-type:device_code",
                "device_code": started["device_code"],
            },
        )
        reply.raise_for_status()
        tokens: dict[str, Any] = reply.json()
        return tokens

    def approve(self, verification_uri: str, user: str) -> None:
        with httpx.Client() as browser:
            page = browse(browser, verification_uri, user)
        assert "Success" in page.text, page.text[:500]

    def access_token(self, user: str) -> str:
        return str(self.device_login(user)["access_token"])

    def opaque_token(self, user: str) -> str:
        """An opaque (non-JWT) access token, from the code flow of a client without a resource."""
        import base64
        import hashlib
        import secrets
        from urllib.parse import parse_qs, urlencode, urlsplit

        verifier = secrets.token_urlsafe(40)
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
        redirect = f"http://127.0.0.1:{self.web_port}/auth/callback"
        query = urlencode(
            {
                "client_id": "primage-opaque",
                "response_type": "code",
                "redirect_uri": redirect,
                "scope": "openid eduperson_entitlement voperson_id",
                "code_challenge": challenge.rstrip(b"=").decode(),
                "code_challenge_method": "S256",
                "state": "s",
                "nonce": "n",
            }
        )
        with httpx.Client() as browser:
            done = browse(browser, f"{self.endpoint}/auth?{query}", user, stop_at=redirect)
        code = parse_qs(urlsplit(done.headers["location"]).query)["code"][0]
        reply = httpx.post(
            f"{self.endpoint}/token",
            data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": redirect,
                "code_verifier": verifier,
            },
            auth=("primage-opaque", "opaque-secret"),
        )
        reply.raise_for_status()
        return str(reply.json()["access_token"])

    def forge(self, claims: dict[str, Any] | None = None, *, key: Any = None, **header: Any) -> str:
        """A JWT signed with the provider's own key (or ``key``), with these claims over a
        valid member's: for tests of what the platform must refuse."""
        now = int(time.time())
        body = {
            "iss": self.issuer,
            "sub": "alice",
            "aud": AUDIENCE,
            "iat": now,
            "exp": now + 300,
            "voperson_id": "alice@egi.eu",
            "eduperson_entitlement": MEMBER,
            **(claims or {}),
        }
        headers = {"kid": self.kid, **header}
        return jwt.encode(
            body, key or self.key, algorithm=headers.pop("alg", "RS256"), headers=headers
        )
