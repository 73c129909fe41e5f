"""The authorization table with provider-authenticated callers, on SQLite and PostgreSQL.

``alice`` (a member of the VO and of its ``neuroblastoma`` subgroup, logged in through the
provider) owns the space ``lab`` and shares it with the provider's group
``vo.primage.eu:neuroblastoma`` as editor; ``erin`` is in that subgroup, ``dave`` only in the
VO, ``bob`` outside it, ``carol`` in the admin group. Platform tokens are alice's, made while
logged in through the provider. Every endpoint is called by every caller.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.harness import RunningServer
from tests.idp import VO, IdentityProvider

ENDPOINTS: dict[str, tuple[str, str, dict[str, object] | None]] = {
    "health": ("GET", "/health", None),
    "providers": ("GET", "/auth/providers", None),
    "whoami": ("GET", "/whoami", None),
    "list_spaces": ("GET", "/spaces", None),
    "space_info": ("GET", "/spaces/lab", None),
    "list_files": ("GET", "/spaces/lab/files/", None),
    "read_file": ("GET", "/spaces/lab/content/data/scan.dcm", None),
    "write_file": ("PUT", "/spaces/lab/content/data/new.dcm", None),
    "share": ("PUT", "/spaces/lab/members", {"kind": "user", "name": "dave", "role": "viewer"}),
    "unshare": ("DELETE", "/spaces/lab/members/user/dave", None),
    "create_space": ("POST", "/spaces", {"name": "fresh-{caller}"}),
    "list_tokens": ("GET", "/tokens", None),
    "create_token": ("POST", "/tokens", {"name": "t", "read_only": True}),
    "list_users": ("GET", "/users", None),
    "list_groups": ("GET", "/groups", None),
    "audit": ("GET", "/admin/audit", None),
    "list_jobs": ("GET", "/jobs", None),
    "submit_job": ("POST", "/jobs", {"command": "true", "spaces": ["lab"]}),
    "job_show": ("GET", "/jobs/{job}", None),
    "job_tasks": ("GET", "/jobs/{job}/tasks", None),
    "job_logs": ("GET", "/jobs/{job}/tasks/0/logs", None),
    "job_cancel": ("POST", "/jobs/{job}/cancel", None),
}
PUBLIC = {"health": 200, "providers": 200}
REFUSED_ALL = {key: 401 for key in ENDPOINTS} | PUBLIC

EXPECTED: dict[str, dict[str, int]] = {
    "anonymous": REFUSED_ALL,
    "revoked": REFUSED_ALL,
    "expired": REFUSED_ALL,
    "expired_jwt": REFUSED_ALL,
    "outsider": {key: 403 for key in ENDPOINTS} | PUBLIC,
    "member": {
        **dict.fromkeys(ENDPOINTS, 403), **PUBLIC,
        "whoami": 200, "list_spaces": 200, "create_space": 201, "list_tokens": 200,
        "create_token": 201, "list_groups": 200, "list_jobs": 200,
    },
    "group_member": {
        **dict.fromkeys(ENDPOINTS, 403), **PUBLIC,
        "whoami": 200, "list_spaces": 200, "space_info": 200, "list_files": 200,
        "read_file": 200, "write_file": 200, "create_space": 201, "list_tokens": 200,
        "create_token": 201, "list_groups": 200, "list_jobs": 200, "submit_job": 201,
    },
    "owner": {
        **dict.fromkeys(ENDPOINTS, 200), **PUBLIC,
        "create_space": 201, "create_token": 201, "submit_job": 201,
        "list_users": 403, "audit": 403,
    },
    "platform_token": {
        **dict.fromkeys(ENDPOINTS, 200), **PUBLIC,
        "create_space": 201, "create_token": 201, "submit_job": 201,
        "list_users": 403, "audit": 403,
    },
    "restricted": {
        **dict.fromkeys(ENDPOINTS, 403), **PUBLIC,
        "whoami": 200, "list_spaces": 200, "space_info": 200, "list_files": 200,
        "read_file": 200, "list_tokens": 200, "create_token": 201, "list_groups": 200,
        "list_jobs": 200, "job_show": 200, "job_tasks": 200, "job_logs": 200,
    },
    "oidc_admin": {
        **dict.fromkeys(ENDPOINTS, 200), **PUBLIC,
        "create_space": 201, "create_token": 201, "submit_job": 201,
    },
}  # fmt: skip


@pytest.fixture
def oidc_any_db(
    idp: IdentityProvider, database_url: str, tmp_path: Path
) -> Iterator[RunningServer]:
    running = RunningServer.start(
        tmp_path / "data", database_url, env=idp.server_env(), port=idp.web_port
    )
    try:
        yield running
    finally:
        running.stop()


def _bearer(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


def _setup(idp: IdentityProvider, server: RunningServer) -> tuple[dict[str, str | None], int]:
    alice = idp.access_token("alice")
    owner = server.client(alice)
    owner.create_space("lab")
    owner.upload("lab", "data/scan.dcm", b"DICM secret pixels")
    owner.share("lab", f"{VO}:neuroblastoma", "editor", kind="group")
    job = owner.submit_job({"command": "echo done", "spaces": ["lab"]})
    owner.wait_job(job.id, timeout=60)
    revoked = owner.create_token("gone")
    owner.revoke_token(revoked.id)
    expired = owner.create_token("short", expires_in_days=1 / 86400)
    time.sleep(1.1)
    callers: dict[str, str | None] = {
        "anonymous": None,
        "revoked": revoked.token,
        "expired": expired.token,
        "expired_jwt": idp.forge({"exp": int(time.time()) - 3600, "iat": int(time.time()) - 7200}),
        "outsider": idp.access_token("bob"),
        "member": idp.access_token("dave"),
        "group_member": idp.access_token("erin"),
        "owner": alice,
        "platform_token": owner.create_token("laptop").token,
        "restricted": owner.create_token("ro", read_only=True).token,
        "oidc_admin": idp.access_token("carol"),
    }
    return callers, job.id


def test_authorization_table_with_provider_identities(
    idp: IdentityProvider, oidc_any_db: RunningServer
) -> None:
    server = oidc_any_db
    callers, job_id = _setup(idp, server)
    mismatches = []
    with httpx.Client(base_url=server.url, timeout=30) as http:
        for caller, token in callers.items():
            for key, (method, url, body) in ENDPOINTS.items():
                json_body = (
                    {k: v.format(caller=caller.replace("_", "-")) if isinstance(v, str) else v
                     for k, v in body.items()}
                    if body else None
                )  # fmt: skip
                content = b"new" if method == "PUT" and "content" in url else None
                response = http.request(
                    method,
                    url.format(job=job_id),
                    headers=_bearer(token),
                    json=json_body,
                    content=content,
                )
                if response.status_code != EXPECTED[caller][key]:
                    mismatches.append((caller, key, response.status_code, response.text[:150]))
                if response.status_code >= 400:
                    assert set(response.json()) == {"error", "detail"}
                    assert "secret pixels" not in response.text
    assert mismatches == [], "\n".join(map(str, mismatches))

    # listings never show another user's resources
    with httpx.Client(base_url=server.url) as http:
        for caller in ("member", "outsider"):
            headers = _bearer(callers[caller])
            spaces = http.get("/spaces", headers=headers)
            if spaces.status_code == 200:
                assert "lab" not in {s["name"] for s in spaces.json()}
                assert http.get("/jobs", headers=headers).json()["jobs"] == [] or all(
                    j["owner"] != "alice" for j in http.get("/jobs", headers=headers).json()["jobs"]
                )
                assert {t["name"] for t in http.get("/tokens", headers=headers).json()} <= {"t"}
