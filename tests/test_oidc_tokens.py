"""Access tokens of a real OpenID Provider (oidc-provider, configured like EGI Check-in).

Valid tokens of group members work; every kind of bad token is refused with 401 and its reason;
people outside the required group get 403 naming it; a provider that is down gives 503 naming it
while platform tokens keep working.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives import serialization

from primage.auth.oidc import JWKS_MIN_REFRESH
from tests.harness import RunningServer
from tests.idp import MEMBER, IdentityProvider, entitlement, new_key


def call(server: RunningServer, token: str, path: str = "/whoami") -> httpx.Response:
    return httpx.get(f"{server.url}{path}", headers={"Authorization": f"Bearer {token}"})


def test_member_is_provisioned_from_a_jwt_access_token(
    idp: IdentityProvider, oidc_server: RunningServer
) -> None:
    token = idp.access_token("alice")
    me = call(oidc_server, token)
    assert me.status_code == 200, me.text
    body = me.json()
    assert body["name"] == "alice"
    assert body["via"] == "oidc:egi"
    assert body["is_admin"] is False
    assert body["groups"] == ["vo.primage.eu", "vo.primage.eu:neuroblastoma"]
    assert body["token_expires_at"] is not None


def test_admin_group_makes_an_admin_and_outsiders_get_403_naming_the_group(
    idp: IdentityProvider, oidc_server: RunningServer
) -> None:
    carol = call(oidc_server, idp.access_token("carol")).json()
    assert carol["is_admin"] is True

    refused = call(oidc_server, idp.access_token("bob"))
    assert refused.status_code == 403
    assert "vo.primage.eu" in refused.json()["detail"]
    users = oidc_server.client().list_users()
    assert "bob" not in {u.name for u in users}  # outsiders get no account


def test_malformed_entitlements_are_ignored(
    idp: IdentityProvider, oidc_server: RunningServer
) -> None:
    me = call(oidc_server, idp.access_token("mallory"))
    assert me.status_code == 200, me.text
    assert me.json()["groups"] == ["vo.primage.eu"]


def test_opaque_token_is_checked_by_introspection(
    idp: IdentityProvider, oidc_server: RunningServer
) -> None:
    token = idp.opaque_token("dave")
    assert token.count(".") == 0
    me = call(oidc_server, token)
    assert me.status_code == 200, me.text
    assert me.json()["name"] == "dave"
    assert call(oidc_server, token + "x").status_code == 401


@pytest.mark.parametrize(
    ("claims", "header", "reason"),
    [
        ({"exp": 1_000_000_000, "iat": 999_999_000}, {}, "expired"),
        ({"nbf": 4_000_000_000}, {}, "not valid yet"),
        ({"iss": "https://evil.example/auth/realms/egi"}, {}, "not trusted"),
        ({"aud": "urn:other:api"}, {}, "not meant for this platform"),
        ({}, {"kid": "unknown-kid"}, "does not publish"),
    ],
    ids=["expired", "not-yet-valid", "wrong-issuer", "wrong-audience", "unknown-key"],
)
def test_bad_jwts_are_refused_with_the_reason(
    idp: IdentityProvider,
    oidc_server: RunningServer,
    claims: dict[str, object],
    header: dict[str, str],
    reason: str,
) -> None:
    assert call(oidc_server, idp.forge()).status_code == 200  # the forger itself is sound
    refused = call(oidc_server, idp.forge(claims, **header))
    assert refused.status_code == 401
    assert reason in refused.json()["detail"]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_token_attacks_are_refused(idp: IdentityProvider, oidc_server: RunningServer) -> None:
    good = idp.forge()
    head, body, signature = good.split(".")
    claims = json.loads(base64.urlsafe_b64decode(body + "=="))

    # alg none: the claims of a valid token, no signature at all
    unsigned = _b64(json.dumps({"alg": "none", "kid": idp.kid}).encode())
    assert "algorithm 'none'" in call(oidc_server, f"{unsigned}.{body}.").json()["detail"]

    # HS256 confusion: an HMAC keyed with the provider's public key
    public_pem = idp.key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    hs_head = _b64(json.dumps({"alg": "HS256", "kid": idp.kid}).encode())
    mac = hmac.new(public_pem, f"{hs_head}.{body}".encode(), hashlib.sha256).digest()
    confused = call(oidc_server, f"{hs_head}.{body}.{_b64(mac)}")
    assert confused.status_code == 401 and "HS256" in confused.json()["detail"]

    # tampered: make alice an admin-group member without re-signing
    claims["eduperson_entitlement"] = [*MEMBER, entitlement("vo.primage.eu", "manager")]
    tampered = f"{head}.{_b64(json.dumps(claims).encode())}.{signature}"
    refused = call(oidc_server, tampered)
    assert refused.status_code == 401 and "altered" in refused.json()["detail"]

    # signed by another key claiming the provider's key id
    other, _ = new_key(idp.kid)
    assert "altered" in call(oidc_server, idp.forge(key=other)).json()["detail"]

    # garbage, including what is not token syntax at all and never reaches the provider
    for junk in ("eyJhbGciOi.garbage.x", "not-a-token", "prm_short", "a b", "x" * 20000, "a;b"):
        assert call(oidc_server, junk).status_code == 401


def test_provider_down_gives_503_and_platform_tokens_keep_working(
    idp: IdentityProvider, oidc_server: RunningServer
) -> None:
    token = idp.access_token("alice")
    idp.stop()
    try:
        # the keys were never fetched by this server: it must ask the provider, which is down
        down = call(oidc_server, token)
        assert down.status_code == 503
        assert "'egi'" in down.json()["detail"] and idp.issuer in down.json()["detail"]
        assert call(oidc_server, oidc_server.admin_token).status_code == 200
    finally:
        idp.start()
    assert call(oidc_server, token).status_code == 200


def test_key_rotation_is_picked_up_on_an_unknown_kid(
    idp: IdentityProvider, oidc_server: RunningServer
) -> None:
    assert call(oidc_server, idp.access_token("alice")).status_code == 200
    idp.rotate_key("k-rotated")
    time.sleep(JWKS_MIN_REFRESH)  # keys are fetched at most this often, whatever a token says
    try:
        rotated = call(oidc_server, idp.access_token("dave"))
        assert rotated.status_code == 200, rotated.text
    finally:
        idp.rotate_key("k1")


def test_user_removed_from_the_group_loses_access_with_their_platform_tokens(
    idp: IdentityProvider, oidc_server: RunningServer
) -> None:
    alice = idp.access_token("dave")
    assert call(oidc_server, alice).status_code == 200
    platform_token = httpx.post(
        f"{oidc_server.url}/tokens",
        json={"name": "laptop"},
        headers={"Authorization": f"Bearer {alice}"},
    ).json()["token"]
    assert call(oidc_server, platform_token).status_code == 200

    idp.set_entitlements("dave", [entitlement("vo.other.eu")])
    try:
        fresh = idp.access_token("dave")  # the provider's view now: no longer a member
        assert call(oidc_server, fresh).status_code == 403
        suspended = call(oidc_server, platform_token)
        assert suspended.status_code == 403, suspended.text
        assert "suspended" in suspended.json()["detail"]

        idp.set_entitlements("dave", MEMBER)
        assert call(oidc_server, idp.access_token("dave")).status_code == 200
        assert call(oidc_server, platform_token).status_code == 200  # reinstated
    finally:
        idp.set_entitlements("dave", MEMBER)
    actions = [e.action for e in oidc_server.client().audit(target="user:dave").entries]
    assert {"user.create", "user.suspend", "user.reinstate"} <= set(actions)


def test_space_shared_with_a_provider_group_before_its_members_log_in(
    idp: IdentityProvider, oidc_server: RunningServer
) -> None:
    owner = oidc_server.client(idp.access_token("dave"))
    owner.create_space("nb")
    owner.upload("nb", "scan.dcm", b"DICM")
    shared = owner.share("nb", "vo.primage.eu:neuroblastoma", "viewer", kind="group")
    assert any(m.name == "vo.primage.eu:neuroblastoma" for m in shared.members)
    erin = oidc_server.client(idp.access_token("erin"))  # first login: joins the group
    assert erin.read_bytes("nb", "scan.dcm") == b"DICM"
    with pytest.raises(Exception, match="no group named"):
        owner.share("nb", "localgroup", "viewer", kind="group")  # local groups are not invented


def test_executor_restricted_to_a_provider_group(idp: IdentityProvider, tmp_path: Path) -> None:
    env = {
        **idp.server_env(),
        "PRIMAGE_EXECUTOR_GROUPS": json.dumps({"local": ["vo.primage.eu:neuroblastoma"]}),
    }
    server = RunningServer.start(tmp_path / "data", f"sqlite:///{tmp_path / 'db'}", env=env)
    try:
        for user in ("alice", "dave"):
            client = server.client(idp.access_token(user))
            client.create_space(f"s-{user}")
        job = {"command": "true", "spaces": ["s-alice"]}
        assert server.client(idp.access_token("alice")).submit_job(job).task_count == 1
        refused = httpx.post(
            f"{server.url}/jobs",
            json={"command": "true", "spaces": ["s-dave"]},
            headers={"Authorization": f"Bearer {idp.access_token('dave')}"},
        )
        assert refused.status_code == 403
        assert "vo.primage.eu:neuroblastoma" in refused.json()["detail"]
    finally:
        server.stop()
