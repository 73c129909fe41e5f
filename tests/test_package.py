"""The package as a user imports it: ``from primage import Client`` (the README's snippet), and
an ``import primage`` that loads no SDK or server code until it is asked for."""

from __future__ import annotations

import subprocess
import sys

from tests.harness import RunningServer

SNIPPET = """
import sys
import primage
assert not {"primage.client", "httpx", "fastapi"} & set(sys.modules), "import primage is light"
from primage import Client
with Client(sys.argv[1], sys.argv[2]) as c:
    c.create_space("study")
    print(c.upload("study", "ct/CT_small.dcm", b"DICM").sha256)
"""


def test_the_readme_snippet_runs_against_a_real_server(sqlite_server: RunningServer) -> None:
    done = subprocess.run(
        [sys.executable, "-c", SNIPPET, sqlite_server.url, sqlite_server.admin_token],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.strip()) == 64  # the SHA-256 the server recorded
