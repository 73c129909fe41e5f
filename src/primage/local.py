"""The platform on this machine as the CLI finds it: its data dir, its address, the record a
running server keeps of itself there (``server.json``: URL and pid) and the admin credentials.

The CLI reads this on every call, so it does not load :class:`primage.config.Settings` (about
0.1 s at start): the three settings it needs are read here with the same precedence — a
``PRIMAGE_*`` variable, then the TOML file, then the defaults, which are defined here and used by
``Settings`` too (``tests/test_cli_start.py`` checks that both agree).
"""

from __future__ import annotations

import json
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import platformdirs

from primage.errors import BadRequest

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8642
RUNTIME_FILE = "server.json"
ADMIN_CREDENTIALS_FILE = "credentials.json"


def default_data_dir() -> Path:
    """Where the embedded platform keeps its database, storage and credentials."""
    return Path(platformdirs.user_data_dir("primage"))


def config_file() -> Path:
    """The TOML file read for settings, when it exists."""
    explicit = os.environ.get("PRIMAGE_CONFIG")
    if explicit:
        return Path(explicit)
    return Path(platformdirs.user_config_dir("primage")) / "config.toml"


def url_of(host: str, port: int) -> str:
    """The URL a server listening on host:port is reached at from this machine."""
    host = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


@dataclass(frozen=True)
class Local:
    data_dir: Path
    host: str
    port: int

    @property
    def runtime_file(self) -> Path:
        return self.data_dir / RUNTIME_FILE

    @property
    def admin_credentials_file(self) -> Path:
        return self.data_dir / ADMIN_CREDENTIALS_FILE

    @property
    def default_url(self) -> str:
        return url_of(self.host, self.port)

    def running(self) -> dict[str, object] | None:
        """What a running server of this data dir wrote about itself, if it is still alive."""
        try:
            info: dict[str, object] = json.loads(self.runtime_file.read_text())
            os.kill(int(str(info["pid"])), 0)
        except (OSError, ValueError, KeyError):
            return None
        return info


def local() -> Local:
    """Data dir, host and port as Settings would read them."""
    environ = {k.upper(): v for k, v in os.environ.items() if k.upper().startswith("PRIMAGE_")}
    try:
        toml: dict[str, Any] = tomllib.loads(config_file().read_text())
    except (OSError, tomllib.TOMLDecodeError):
        toml = {}  # Settings reports a broken file when the server starts

    def value(name: str) -> Any:
        return environ.get(f"PRIMAGE_{name.upper()}", toml.get(name))

    port = value("port")
    try:
        port = DEFAULT_PORT if port is None else int(port)
    except ValueError:
        raise BadRequest(
            f"port '{port}' is not a number (PRIMAGE_PORT or port in the config)"
        ) from None
    data_dir = value("data_dir")
    return Local(
        data_dir=Path(data_dir) if data_dir else default_data_dir(),
        host=str(value("host") or DEFAULT_HOST),
        port=port,
    )
