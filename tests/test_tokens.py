"""Tokens: shown once, stored hashed, never wider than their parent, revoked with their children."""

from __future__ import annotations

import sqlite3

import pytest

from primage.errors import BadRequest, Forbidden, Unauthenticated
from tests.harness import RunningServer


def test_secret_is_stored_only_as_a_hash(sqlite_server: RunningServer) -> None:
    made = sqlite_server.client().create_token("laptop")
    assert made.token.startswith("prm_")
    listed = sqlite_server.cli("token", "ls", "--json").out
    assert made.token not in listed and made.id in listed
    db = sqlite3.connect(sqlite_server.data_dir.parent / "db.sqlite")
    dump = "\n".join(db.iterdump())
    assert made.token.split("_", 2)[2] not in dump
    assert sqlite_server.admin_token.split("_", 2)[2] not in dump


def test_restricted_token_can_never_widen(sqlite_server: RunningServer) -> None:
    admin = sqlite_server.client()
    admin.create_space("a")
    admin.create_space("b")
    ro = sqlite_server.client(admin.create_token("ro", space="a", read_only=True).token)
    child = ro.create_token("child")  # inherits everything
    assert (child.space, child.read_only) == ("a", True)
    assert ro.create_token("rw", read_only=False).read_only is True
    with pytest.raises(Forbidden, match="restricted to space 'a'"):
        ro.create_token("other-space", space="b")
    with pytest.raises(Forbidden, match="restricted token cannot create spaces"):
        ro.create_space("c")
    with pytest.raises(Forbidden):
        ro.create_user("mallory")

    scoped = sqlite_server.client(admin.create_token("p", space="a", path="in/x").token)
    assert scoped.create_token("deeper", path="in/x/y").path == "in/x/y"
    with pytest.raises(Forbidden, match="restricted to path 'in/x'"):
        scoped.create_token("wider", path="in")
    with pytest.raises(BadRequest, match="needs a space"):
        admin.create_token("no-space", path="in")
    with pytest.raises(BadRequest, match="at most"):
        admin.create_token("forever", expires_in_days=10_000)


def test_child_never_outlives_parent(sqlite_server: RunningServer) -> None:
    admin = sqlite_server.client()
    short = admin.create_token("short", expires_in_days=1)
    child = sqlite_server.client(short.token).create_token("child", expires_in_days=30)
    assert child.expires_at <= short.expires_at


def test_revocation_cascades(sqlite_server: RunningServer) -> None:
    admin = sqlite_server.client()
    parent = admin.create_token("parent")
    child = sqlite_server.client(parent.token).create_token("child")
    grandchild = sqlite_server.client(child.token).create_token("grandchild")
    out = sqlite_server.cli("token", "revoke", parent.id)
    assert out.code == 0, out.err
    for token in (parent, child, grandchild):
        with pytest.raises(Unauthenticated, match="revoked"):
            sqlite_server.client(token.token).whoami()
    assert admin.whoami().name == "admin"


def test_cli_token_create_prints_the_secret_once(sqlite_server: RunningServer) -> None:
    sqlite_server.client().create_space("scans")
    out = sqlite_server.cli("token", "create", "--space", "scans", "--read-only", "--days", "2")
    assert out.code == 0, out.err
    token = out.out.strip()
    me = sqlite_server.client(token).whoami()
    assert me.restrictions == {"space": "scans", "path": None, "read_only": True}
    assert "not shown again" in out.err
