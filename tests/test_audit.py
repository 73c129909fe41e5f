"""The audit log: what changed, who changed it and when, for admins, with no secrets in it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from primage.errors import BadRequest, Forbidden
from tests.harness import RunningServer


def test_changes_are_logged_with_their_actor_and_only_admins_read_them(
    server: RunningServer, tmp_path: Path
) -> None:
    admin = server.client()
    bob_token = admin.create_user("bob").token
    admin.create_group("radiology")
    admin.add_to_group("radiology", "bob")
    bob = server.client(bob_token)
    bob.create_space("ct")
    (tmp_path / "a.dcm").write_bytes(b"x" * 10)
    bob.upload("ct", "a.dcm", tmp_path / "a.dcm")
    bob.share("ct", "radiology", "editor", kind="group")
    limited = bob.create_token(space="ct", read_only=True, name="for-a-job")
    bob.revoke_token(limited.id)
    job = bob.submit_job({"command": "sleep 30", "spaces": ["ct"]})
    bob.cancel_job(job.id)
    bob.remove("ct", "a.dcm")

    log = admin.audit(actor="bob")
    done = [(e.action, e.target) for e in reversed(log.entries)]
    assert done == [
        ("space.create", "space:ct"),
        ("space.share", "space:ct"),
        ("token.create", f"token:{limited.id}"),
        ("token.revoke", f"token:{limited.id}"),
        ("job.submit", f"job:{job.id}"),
        ("job.cancel", f"job:{job.id}"),
        ("file.delete", "space:ct"),
    ]
    share = next(e for e in log.entries if e.action == "space.share")
    assert share.detail == {"group": "radiology", "role": "editor"}
    assert all(e.token_id == bob_token.split("_")[1] for e in log.entries)
    everything = admin.audit(limit=1000).model_dump_json()
    assert bob_token not in everything and limited.token not in everything  # never a secret
    assert [e.action for e in admin.audit(action="group.").entries] == ["group.add", "group.create"]

    with pytest.raises(Forbidden, match="only platform admins may read the audit log"):
        bob.audit()
    with pytest.raises(BadRequest, match=r"no audit action 'spaces\.create'"):
        admin.audit(action="spaces.create")

    cli = server.cli("admin", "audit", "--target", "space:ct", "--json")
    assert cli.code == 0
    assert {e["action"] for e in json.loads(cli.out)["entries"]} == {
        "space.create",
        "space.share",
        "file.delete",
    }
    admin.wait_job(job.id, poll=0.2, timeout=30)
