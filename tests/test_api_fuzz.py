"""Every operation of ``/openapi.json``, fuzzed by schemathesis against a real server: bad
input of any shape is a 4xx, never a 5xx. Bounded (10 examples an operation, a fixed seed) so
that it takes seconds; jobs and apps are included, their commands run in the real sandbox."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness import RunningServer, require_tool

SCHEMATHESIS = Path(sys.executable).with_name("schemathesis")


@pytest.mark.parametrize("who", ["user", "admin"])
def test_no_input_makes_the_server_fail(
    sqlite_server: RunningServer, who: str, tmp_path: Path
) -> None:
    require_tool("bwrap", "bubblewrap")
    admin = sqlite_server.client()
    token = sqlite_server.admin_token if who == "admin" else admin.create_user("fuzz").token
    done = subprocess.run(
        [str(SCHEMATHESIS), "run", f"{sqlite_server.url}/openapi.json",
         "-H", f"Authorization: Bearer {token}", "--checks", "not_a_server_error",
         "--max-examples", "10", "--seed", "1", "--request-timeout", "30",
         "--no-color"],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,  # its .schemathesis/ there
    )  # fmt: skip
    summary = re.search(r"(\d+) generated, (\d+) passed", done.stdout)
    print(f"schemathesis as {who}: {summary.group(0) if summary else 'no summary'}")
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert summary is not None and summary.group(1) == summary.group(2)
