"""The command line starts light and reads its few settings the way the server does."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from primage.config import Settings
from primage.local import local
from tests.harness import RunningServer

SERVER_SIDE = ("fastapi", "sqlalchemy", "uvicorn", "starlette", "wsgidav", "primage.server")


def imported_by(statement: str, env: dict[str, str] | None = None) -> set[str]:
    probe = f"import sys; {statement}; sys.stderr.write('\\n'.join(sys.modules))"
    done = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **(env or {})},
    )
    return set(done.stderr.split())


@pytest.mark.parametrize("module", ["primage.client", "primage", "primage.cli.main"])
def test_the_sdk_and_the_cli_import_nothing_of_the_server(module: str) -> None:
    found = imported_by(f"import {module}")
    assert not {m for m in found if m.split(".")[0] in SERVER_SIDE or m in SERVER_SIDE}
    assert not {m for m in found if m.startswith(("primage.server", "primage.executors"))}


def test_help_needs_neither_the_sdk_nor_its_schemas_nor_rich() -> None:
    run_help = (
        "from contextlib import suppress; from primage.cli.main import main; "
        "sys.argv = ['primage', 'job', 'submit', '--help']\n"
        "with suppress(SystemExit): main()"
    )
    found = imported_by(f"exec({run_help!r})")
    assert "primage.cli.job" in found
    assert not found & {"primage.client", "primage.models", "rich.console", "httpx", "yaml"}


@pytest.mark.parametrize(
    "environ,toml",
    [
        ({}, ""),
        ({"PRIMAGE_PORT": "9001", "PRIMAGE_HOST": "0.0.0.0"}, ""),
        ({}, 'port = 9002\nhost = "::1"\ndata_dir = "/srv/primage"\n'),
        ({"PRIMAGE_DATA_DIR": "/from/env"}, 'data_dir = "/from/toml"\nport = 9003\n'),
        ({"primage_port": "9004"}, "port = 9005\n"),
    ],
)
def test_the_cli_reads_data_dir_host_and_port_as_settings_does(
    environ: dict[str, str], toml: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in ("PRIMAGE_PORT", "PRIMAGE_HOST", "PRIMAGE_DATA_DIR"):
        monkeypatch.delenv(key, raising=False)
    config = tmp_path / "config.toml"
    config.write_text(toml)
    monkeypatch.setenv("PRIMAGE_CONFIG", str(config))
    for key, value in environ.items():
        monkeypatch.setenv(key, value)
    settings = Settings()
    assert local() == settings.local
    assert local().default_url == settings.base_url


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "primage", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200", **env},
        timeout=60,
    )


@pytest.mark.parametrize(
    "args,expected",
    [
        (["job", "sumbit"], "error: No such command 'sumbit'. Did you mean 'submit'? "),
        (["put", "--no-overwrit", "a", "b:"], "(Possible options: --no-overwrite)"),
        (["ls"], "error: Missing argument 'SPACE:PATH' (see 'primage ls --help')"),
        (["job", "show", "one"], "Invalid value for 'job_id': Input should be a valid integer"),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(args: list[str], expected: str) -> None:
    done = cli(*args, env={})
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert expected in done.stderr
    assert done.stderr.startswith("error: ")


def test_a_server_url_without_scheme_says_to_add_it() -> None:
    done = cli("--server", "127.0.0.1:8650", "space", "ls", env={})
    assert done.returncode == 1
    assert done.stderr.strip() == (
        "error: --server '127.0.0.1:8650' is not an http(s) URL: write http://127.0.0.1:8650 "
        "(or https://127.0.0.1:8650)"
    )


def test_no_server_running_says_which_address_was_tried_and_why(tmp_path: Path) -> None:
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))  # held, never listened on: connections are refused
        port = free.getsockname()[1]
        env = {"PRIMAGE_DATA_DIR": str(tmp_path), "PRIMAGE_PORT": str(port)}
        env |= {"PRIMAGE_SERVER": "", "PRIMAGE_TOKEN": ""}
        done = cli("space", "ls", env=env)
    assert done.returncode == 1
    line = done.stderr.strip()
    assert f"cannot reach the primage server at http://127.0.0.1:{port}" in line
    assert f"no server runs from {tmp_path}" in line and "PRIMAGE_DATA_DIR" in line


def test_a_refused_token_says_which_server_and_which_credential(
    sqlite_server: RunningServer, tmp_path: Path
) -> None:
    """The newcomer's trap: no server of their own, another one answers on the default port."""
    env = {"PRIMAGE_DATA_DIR": str(tmp_path), "PRIMAGE_PORT": sqlite_server.url.rsplit(":")[-1]}
    (tmp_path / "credentials.json").write_text('{"token": "prm_0000000000000000_stale"}')
    env |= {"PRIMAGE_SERVER": "", "PRIMAGE_TOKEN": ""}
    done = cli("space", "ls", env=env)
    assert done.returncode == 1
    line = done.stderr.strip()
    assert line.startswith("error: invalid token")
    assert f"the local admin's token in {tmp_path / 'credentials.json'}" in line
    assert f"to {sqlite_server.url}" in line and f"no server runs from {tmp_path}" in line


def test_a_taken_port_is_named_with_the_fix(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        for background in ([], ["--background"]):
            done = cli("server", "--port", str(port), "--data-dir", str(tmp_path), *background,
                       env={})  # fmt: skip
            assert done.returncode == 1
            assert done.stderr.strip() == (
                f"error: cannot listen on 127.0.0.1:{port}: Address already in use (another "
                "primage server or program uses it); choose another port with --port N or "
                "PRIMAGE_PORT=N (0 picks a free one)"
            )
