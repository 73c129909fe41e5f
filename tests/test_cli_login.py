"""``primage login`` / ``logout`` / ``whoami`` against the real provider, as a user runs them.

The device flow is real: the CLI prints the URL and code on stderr, the test approves it in a
"browser" (tests.idp.browse), and the CLI, polling the provider, finishes the login.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import httpx

from tests.harness import RunningServer, primage
from tests.idp import IdentityProvider


def cli_env(server: RunningServer, credentials: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "PRIMAGE_TOKEN"}
    # A data dir without an admin credentials file: only the login may authenticate.
    env.update(
        PRIMAGE_SERVER=server.url,
        PRIMAGE_CREDENTIALS=str(credentials),
        PRIMAGE_DATA_DIR=str(credentials.parent / "no-data"),
        COLUMNS="200",
    )
    return env


def device_login(idp: IdentityProvider, env: dict[str, str], user: str) -> str:
    process = subprocess.Popen(
        [sys.executable, "-m", "primage", "login"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    url = None
    for line in process.stderr:
        if line.startswith("(or open "):
            url = line.removeprefix("(or open ").rstrip(")\n")
            break
    assert url, "the CLI printed no URL"
    idp.approve(url, user)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    return out


def test_device_login_refresh_and_logout(
    idp: IdentityProvider, oidc_server: RunningServer, tmp_path: Path
) -> None:
    credentials = tmp_path / "config" / "credentials.json"
    env = cli_env(oidc_server, credentials)
    assert primage("whoami", env=env).returncode == 1  # nothing to authenticate with yet

    out = device_login(idp, env, "alice")
    assert f"logged in to {oidc_server.url} as alice through 'egi'" in out
    assert stat.S_IMODE(credentials.stat().st_mode) == 0o600
    kept = json.loads(credentials.read_text())["servers"][oidc_server.url]
    assert kept["refresh_token"] and kept["provider"] == "egi"

    me = primage("whoami", env=env)
    assert me.returncode == 0, me.stderr
    assert "alice" in me.stdout and "oidc:egi" in me.stdout and "renewed" in me.stdout

    # the access token runs out: the next command refreshes it and keeps the new one
    kept["expires_at"] = 0
    credentials.write_text(json.dumps({"servers": {oidc_server.url: kept}}))
    made = primage("space", "create", "scans", env=env)
    assert made.returncode == 0, made.stderr
    renewed = json.loads(credentials.read_text())["servers"][oidc_server.url]
    assert renewed["access_token"] != kept["access_token"] and renewed["expires_at"] > 0

    out = primage("logout", env=env)
    assert out.returncode == 0 and "logged out" in out.stdout
    assert json.loads(credentials.read_text())["servers"] == {}
    refused = httpx.post(
        f"{idp.endpoint}/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": renewed["refresh_token"],
            "client_id": "primage-cli",
        },
    )
    assert refused.status_code == 400  # revoked at the provider
    gone = primage("whoami", env=env)
    assert gone.returncode == 1 and gone.stderr.startswith("error:")


def test_login_with_a_token_command(
    idp: IdentityProvider, oidc_server: RunningServer, tmp_path: Path
) -> None:
    env = cli_env(oidc_server, tmp_path / "credentials.json")
    token_file = tmp_path / "token"
    token_file.write_text(idp.access_token("carol") + "\n")
    out = primage("login", "--token-command", f"cat {token_file}", env=env)
    assert out.returncode == 0, out.stderr
    assert "as carol" in out.stdout
    assert "(admin)" in primage("whoami", env=env).stdout

    failing = primage("login", "--token-command", "false", env=env)
    assert failing.returncode == 1
    assert failing.stderr.count("\n") == 1 and "token command 'false'" in failing.stderr


def test_login_without_a_provider_says_what_to_do(
    sqlite_server: RunningServer, tmp_path: Path
) -> None:
    out = primage("login", env=cli_env(sqlite_server, tmp_path / "credentials.json"))
    assert out.returncode == 1
    assert "trusts no identity provider" in out.stderr and "PRIMAGE_TOKEN" in out.stderr
