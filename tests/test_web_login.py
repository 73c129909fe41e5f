"""The browser's login against the real provider: code flow with PKCE, session cookie, CSRF.

The "browser" is an httpx client with a cookie jar that clicks through the provider's login
pages (tests.idp.browse) and comes back to the platform's callback.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from tests.harness import RunningServer
from tests.idp import MEMBER, IdentityProvider, browse, entitlement


@contextmanager
def web_login(
    server: RunningServer, user: str, next_url: str = "/whoami"
) -> Iterator[httpx.Client]:
    """A browser that logged in as ``user``; it ends on ``next_url``."""
    with httpx.Client(base_url=server.url) as browser:
        yield _log_in(browser, server, user, next_url)


def _log_in(browser: httpx.Client, server: RunningServer, user: str, next_url: str) -> httpx.Client:
    start = browser.get("/auth/login", params={"next": next_url})
    assert start.status_code == 303
    callback = f"{server.url}/auth/callback"
    at_provider = browse(browser, start.headers["location"], user, stop_at=callback)
    landed = browser.get(at_provider.headers["location"])
    assert landed.status_code == 303, landed.text
    assert landed.headers["location"] == next_url
    return browser


def test_code_flow_with_pkce_opens_a_session(
    idp: IdentityProvider, oidc_server: RunningServer
) -> None:
    start = httpx.get(f"{oidc_server.url}/auth/login")
    location = httpx.URL(start.headers["location"])
    assert location.params["code_challenge_method"] == "S256"
    assert location.params["redirect_uri"] == f"{oidc_server.url}/auth/callback"

    with web_login(oidc_server, "alice") as browser:
        cookie = next(c for c in browser.cookies.jar if c.name == "primage_session")
        assert cookie.has_nonstandard_attr("HttpOnly")
        set_cookie = browser.get("/whoami").json()
        assert set_cookie["name"] == "alice" and set_cookie["via"] == "session"
        assert set_cookie["csrf_token"]
        _at_rest_only_hashed_or_encrypted(oidc_server, cookie.value or "")
    audit = oidc_server.client().audit(action="user.login").entries
    assert [e.actor for e in audit] == ["alice"]


def test_session_writes_need_the_csrf_token(
    idp: IdentityProvider, oidc_server: RunningServer
) -> None:
    with web_login(oidc_server, "alice") as browser:
        csrf = browser.get("/whoami").json()["csrf_token"]
        forged = browser.post("/spaces", json={"name": "scans"})  # what another site could send
        assert forged.status_code == 403 and "CSRF" in forged.json()["detail"]
        wrong = browser.post("/spaces", json={"name": "scans"}, headers={"X-CSRF-Token": "x"})
        assert wrong.status_code == 403
        made = browser.post("/spaces", json={"name": "scans"}, headers={"X-CSRF-Token": csrf})
        assert made.status_code == 201, made.text
        assert [s["name"] for s in browser.get("/spaces").json()] == ["scans"]

        cookie = browser.cookies["primage_session"]
        assert browser.post("/auth/logout").status_code == 403  # another site cannot log you out
        assert browser.get("/whoami").status_code == 200
        out = browser.post("/auth/logout", data={"csrf_token": csrf})
        assert out.status_code == 200 and out.json() == {"logged_out": True}
        assert browser.get("/whoami").status_code == 401
        stale = httpx.post(f"{oidc_server.url}/auth/logout", cookies={"primage_session": cookie})
        assert stale.status_code == 200 and stale.json() == {"logged_out": False}
        assert 'primage_session=""' in stale.headers["set-cookie"]  # cleared all the same
    log = (oidc_server.data_dir.parent / "data.log").read_text()
    for secret in (cookie, csrf, "web-secret"):  # nothing secret reaches the server's log
        assert secret not in log


def test_callback_refuses_replayed_unknown_and_foreign_states(
    idp: IdentityProvider, oidc_server: RunningServer
) -> None:
    browser = httpx.Client(base_url=oidc_server.url)
    start = browser.get("/auth/login", params={"next": "https://evil.example/"})
    callback = f"{oidc_server.url}/auth/callback"
    back = browse(browser, start.headers["location"], "alice", stop_at=callback)
    first = browser.get(back.headers["location"])
    assert first.headers["location"] == "/"  # never an open redirect to another site
    replay = httpx.get(back.headers["location"])
    assert replay.status_code == 400 and "state" in replay.json()["detail"]
    unknown = httpx.get(f"{callback}?code=abc&state=never-issued")
    assert unknown.status_code == 400
    denied = httpx.get(f"{callback}?error=access_denied&state=x")
    assert denied.status_code == 401 and "access_denied" in denied.json()["detail"]
    browser.close()


def test_outsider_gets_403_at_login_and_no_session(
    idp: IdentityProvider, oidc_server: RunningServer
) -> None:
    browser = httpx.Client(base_url=oidc_server.url)
    start = browser.get("/auth/login")
    callback = f"{oidc_server.url}/auth/callback"
    back = browse(browser, start.headers["location"], "bob", stop_at=callback)
    refused = browser.get(back.headers["location"])
    assert refused.status_code == 403 and "vo.primage.eu" in refused.json()["detail"]
    assert "primage_session" not in browser.cookies
    browser.close()


def test_session_rechecks_membership_at_the_provider(
    idp: IdentityProvider, oidc_server_fast_recheck: RunningServer
) -> None:
    server = oidc_server_fast_recheck
    with web_login(server, "dave") as browser:
        assert browser.get("/whoami").status_code == 200
        idp.set_entitlements("dave", [entitlement("vo.other.eu")])
        try:
            time.sleep(11)  # past membership_check_seconds and the principal cache
            gone = browser.get("/whoami")
            assert gone.status_code == 403, gone.text
            assert browser.get("/whoami").status_code == 401  # the session was ended
        finally:
            idp.set_entitlements("dave", MEMBER)


def _at_rest_only_hashed_or_encrypted(server: RunningServer, cookie: str) -> None:
    import hashlib
    import sqlite3

    db = sqlite3.connect(server.database_url.removeprefix("sqlite:///"))
    [(id_hash, refresh)] = db.execute("SELECT id_hash, refresh_token FROM web_sessions").fetchall()
    db.close()
    assert id_hash == hashlib.sha256(cookie.encode()).hexdigest()
    assert refresh.startswith("gAAAAA")  # a Fernet token: the provider's refresh token, sealed
