"""The server as an operator sees it: first start, health, metrics, OpenAPI, config, migrations."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from primage.config import Settings, mask_url
from primage.db import Database
from primage.db.tables import Base
from tests.harness import RunningServer


def test_first_start_writes_private_admin_credentials(tmp_path: Path) -> None:
    server = RunningServer.start(tmp_path / "fresh" / "data", f"sqlite:///{tmp_path / 'db'}")
    try:
        creds = server.data_dir / "credentials.json"
        assert stat.S_IMODE(creds.stat().st_mode) == 0o600
        assert stat.S_IMODE(server.data_dir.stat().st_mode) == 0o700
        # the CLI on this machine needs no token: it finds the file through PRIMAGE_DATA_DIR
        env = {k: v for k, v in os.environ.items() if k != "PRIMAGE_TOKEN"}
        env |= {"PRIMAGE_DATA_DIR": str(server.data_dir), "PRIMAGE_SERVER": ""}
        out = subprocess.run(
            [sys.executable, "-m", "primage", "whoami"], env=env, capture_output=True, text=True
        )
        assert out.returncode == 0, out.stderr
        assert out.stdout.startswith("admin (admin)")
    finally:
        server.stop()


def test_restart_keeps_everything(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'db.sqlite'}"
    first = RunningServer.start(tmp_path / "data", db)
    try:
        first.client().create_space("keep")
        first.client().upload("keep", "a.txt", b"kept")
    finally:
        first.stop()
    second = RunningServer.start(tmp_path / "data", db)
    try:
        assert second.admin_token == first.admin_token
        assert second.client().read_bytes("keep", "a.txt") == b"kept"
    finally:
        second.stop()


def test_health_metrics_and_openapi(server: RunningServer) -> None:
    health = httpx.get(f"{server.url}/health").json()
    assert health["status"] == "ok" and health["database"] in ("sqlite", "postgresql")
    server.client().list_spaces()
    metrics = httpx.get(f"{server.url}/metrics").text
    assert 'primage_http_requests_total{method="GET",route="/spaces",status="200"}' in metrics
    schema = httpx.get(f"{server.url}/openapi.json").json()
    assert "/spaces/{space}/content/{path}" in schema["paths"]
    assert httpx.get(f"{server.url}/docs").status_code == 200


def test_every_error_is_json(sqlite_server: RunningServer) -> None:
    headers = {"Authorization": f"Bearer {sqlite_server.admin_token}"}
    for method, url, body in [
        ("GET", "/no/such/endpoint", None),
        ("POST", "/spaces", {"nom": "x"}),
        ("POST", "/spaces", {"name": "x", "quota_bytes": -1}),
        ("GET", "/spaces/missing", None),
    ]:
        response = httpx.request(method, f"{sqlite_server.url}{url}", headers=headers, json=body)
        assert 400 <= response.status_code < 500
        assert set(response.json()) == {"error", "detail"}, response.text
    bad = httpx.post(f"{sqlite_server.url}/spaces", headers=headers, json={"nom": "x"}).json()
    assert bad["detail"].startswith("invalid request: name: Field required")


def test_config_show_masks_secrets(tmp_path: Path) -> None:
    toml = tmp_path / "primage.toml"
    toml.write_text("port = 9999\ntoken_ttl_days = 7\n")
    env = {
        **os.environ,
        "PRIMAGE_CONFIG": str(toml),
        "PRIMAGE_DATABASE_URL": "postgresql://primage:hunter2@db.example:5432/primage",
        "PRIMAGE_TOKEN_TTL_DAYS": "3",
        "PRIMAGE_SECRET_KEY": "key-material-hunter3",
        "PRIMAGE_OIDC_PROVIDERS": json.dumps(
            [{"issuer": "https://aai.egi.eu/auth/realms/egi", "client_id": "primage",
              "client_secret": "client-hunter4"}]
        ),
    }  # fmt: skip
    out = subprocess.run(
        [sys.executable, "-m", "primage", "config", "show", "--json"],
        env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    shown = json.loads(out.stdout)
    assert "hunter" not in out.stdout
    assert shown["oidc_providers"][0]["client_id"] == "primage"
    assert shown["database_url"] == "postgresql+psycopg://primage:***@db.example:5432/primage"
    assert shown["port"] == 9999  # from the file
    assert shown["token_ttl_days"] == 3  # the environment wins over the file


def test_mask_url_leaves_passwordless_urls_alone() -> None:
    assert mask_url("sqlite:////x/y.db") == "sqlite:////x/y.db"


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_migrations_match_the_tables(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'm.db'}"
    else:
        url = request.getfixturevalue("pg_cluster").create_database(f"mig_{os.getpid()}")
    database = Database(Settings(database_url=url).db_url)
    database.upgrade()
    database.upgrade()  # idempotent
    with database.engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    database.dispose()
    assert diff == []
