"""The authorization table: every endpoint, every kind of caller → the expected status.

The space ``lab`` is owned by ``owner``; ``viewer`` and ``editor`` are members; ``other`` is not.
Restricted tokens are the owner's: read-only, and confined to the folder ``allowed/``.
Allowed calls are chosen so that they cannot destroy the fixture (deleting a missing file → 404,
deleting the non-empty space without force → 409).
"""

from __future__ import annotations

import time

import httpx
import pytest

from tests.harness import RunningServer

OK, NONE = "ok", "none"

# caller -> expected status per endpoint key
ENDPOINTS: dict[str, tuple[str, str, dict[str, object] | None]] = {
    "list_spaces": ("GET", "/spaces", None),
    "space_info": ("GET", "/spaces/lab", None),
    "list_files": ("GET", "/spaces/lab/files/", None),
    "read_file": ("GET", "/spaces/lab/content/data/scan.dcm", None),
    "read_allowed": ("GET", "/spaces/lab/content/allowed/a.dcm", None),
    "write_file": ("PUT", "/spaces/lab/content/data/new.dcm", None),
    "write_allowed": ("PUT", "/spaces/lab/content/allowed/new.dcm", None),
    "mkdir": ("POST", "/spaces/lab/mkdir", {"path": "data/sub"}),
    "move": ("POST", "/spaces/lab/move", {"source": "data/missing", "destination": "data/m2"}),
    "delete_file": ("DELETE", "/spaces/lab/files/data/missing", None),
    "update_space": ("PATCH", "/spaces/lab", {"description": "x"}),
    "share": ("PUT", "/spaces/lab/members", {"kind": "user", "name": "viewer", "role": "viewer"}),
    "delete_space": ("DELETE", "/spaces/lab", None),
    "create_space": ("POST", "/spaces", {"name": "fresh-{caller}"}),
    "list_tokens": ("GET", "/tokens", None),
    "create_user": ("POST", "/users", {"name": "u-{caller}"}),
    "whoami": ("GET", "/whoami", None),
}

EXPECTED: dict[str, dict[str, int]] = {
    "anonymous": dict.fromkeys(ENDPOINTS, 401),
    "expired": dict.fromkeys(ENDPOINTS, 401),
    "revoked": dict.fromkeys(ENDPOINTS, 401),
    "other": {
        **dict.fromkeys(ENDPOINTS, 403),
        "list_spaces": 200, "create_space": 201, "list_tokens": 200, "whoami": 200,
    },
    "viewer": {
        **dict.fromkeys(ENDPOINTS, 403),
        "list_spaces": 200, "space_info": 200, "list_files": 200, "read_file": 200,
        "read_allowed": 200, "create_space": 201, "list_tokens": 200, "whoami": 200,
    },
    "editor": {
        "list_spaces": 200, "space_info": 200, "list_files": 200, "read_file": 200,
        "read_allowed": 200, "write_file": 200, "write_allowed": 200, "mkdir": 201,
        "move": 404, "delete_file": 404, "update_space": 403, "share": 403,
        "delete_space": 403, "create_space": 201, "list_tokens": 200, "create_user": 403,
        "whoami": 200,
    },
    "owner": {
        "list_spaces": 200, "space_info": 200, "list_files": 200, "read_file": 200,
        "read_allowed": 200, "write_file": 200, "write_allowed": 200, "mkdir": 201,
        "move": 404, "delete_file": 404, "update_space": 200, "share": 200,
        "delete_space": 409, "create_space": 201, "list_tokens": 200, "create_user": 403,
        "whoami": 200,
    },
    "read_only": {
        **dict.fromkeys(ENDPOINTS, 403),
        "list_spaces": 200, "space_info": 200, "list_files": 200, "read_file": 200,
        "read_allowed": 200, "list_tokens": 200, "whoami": 200,
    },
    "path_only": {
        **dict.fromkeys(ENDPOINTS, 403),
        "list_spaces": 200, "space_info": 200, "read_allowed": 200, "write_allowed": 200,
        "list_tokens": 200, "whoami": 200,
    },
    "admin": {
        "list_spaces": 200, "space_info": 200, "list_files": 200, "read_file": 200,
        "read_allowed": 200, "write_file": 200, "write_allowed": 200, "mkdir": 201,
        "move": 404, "delete_file": 404, "update_space": 200, "share": 200,
        "delete_space": 409, "create_space": 201, "list_tokens": 200, "create_user": 201,
        "whoami": 200,
    },
}  # fmt: skip


@pytest.fixture
def callers(server: RunningServer) -> dict[str, str | None]:
    admin = server.client()
    tokens = {
        name: admin.create_user(name).token for name in ("owner", "viewer", "editor", "other")
    }
    owner = server.client(tokens["owner"])
    owner.create_space("lab")
    owner.share("lab", "viewer", "viewer")
    owner.share("lab", "editor", "editor")
    owner.upload("lab", "data/scan.dcm", b"DICM secret pixels")
    owner.upload("lab", "allowed/a.dcm", b"allowed pixels")
    revoked = owner.create_token("gone")
    owner.revoke_token(revoked.id)
    expired = owner.create_token("short", expires_in_days=1 / 86400)
    time.sleep(1.1)
    return {
        **tokens,
        "anonymous": None,
        "admin": server.admin_token,
        "read_only": owner.create_token("ro", read_only=True).token,
        "path_only": owner.create_token("p", space="lab", path="allowed").token,
        "revoked": revoked.token,
        "expired": expired.token,
    }


def test_authorization_table(server: RunningServer, callers: dict[str, str | None]) -> None:
    mismatches = []
    with httpx.Client(base_url=server.url) as http:
        for caller, token in callers.items():
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            for key, (method, url, body) in ENDPOINTS.items():
                json_body = _fill(body, caller)
                content = b"new" if method == "PUT" and "content" in url else None
                response = http.request(
                    method, url, headers=headers, json=json_body, content=content
                )
                if response.status_code != EXPECTED[caller][key]:
                    mismatches.append((caller, key, response.status_code, response.text[:120]))
                _nothing_leaked(response, caller)
    assert mismatches == []


def _fill(body: dict[str, object] | None, caller: str) -> dict[str, object] | None:
    if body is None:
        return None
    return {k: v.format(caller=caller.replace("_", "-")) if isinstance(v, str) else v
            for k, v in body.items()}  # fmt: skip


def _nothing_leaked(response: httpx.Response, caller: str) -> None:
    if response.status_code >= 400:
        body = response.json()
        assert set(body) == {"error", "detail"}
        assert "secret pixels" not in response.text
    if response.status_code == 403:
        assert any(word in body["detail"] for word in ("access", "restricted", "only"))


def test_listings_never_show_other_users_spaces(
    server: RunningServer, callers: dict[str, str | None]
) -> None:
    other = server.client(callers["other"])
    other.create_space("others-own")
    assert [s.name for s in other.list_spaces()] == ["others-own"]
    owner_view = [s.name for s in server.client(callers["owner"]).list_spaces()]
    assert "others-own" not in owner_view
    path_only = server.client(callers["path_only"])
    assert [s.name for s in path_only.list_spaces()] == ["lab"]
    assert {t.name for t in path_only.list_tokens()} == {"p"}
