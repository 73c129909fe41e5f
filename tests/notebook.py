"""Running a notebook in a Jupyter server through the platform's proxy, as a browser does:
Jupyter's REST API makes a kernel, its kernel WebSocket executes each code cell."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.sync.client import connect


def run_notebook(base: str, headers: dict[str, str], notebook: Path) -> list[str]:
    """Execute every code cell of ``notebook`` in a kernel of the Jupyter server at ``base``,
    over its REST and kernel WebSocket API; the text the cells printed. Fails on a cell error."""
    kernel = httpx.post(f"{base}api/kernels", json={"name": "python3"}, headers=headers)
    assert kernel.status_code == 201, kernel.text
    kernel_id = kernel.json()["id"]
    printed: list[str] = []
    url = base.replace("http://", "ws://") + f"api/kernels/{kernel_id}/channels"
    with connect(url, additional_headers=headers, max_size=None, open_timeout=30) as ws:
        for cell in json.loads(notebook.read_text())["cells"]:
            if cell["cell_type"] == "code":
                printed += _execute(ws, "".join(cell["source"]))
    httpx.delete(f"{base}api/kernels/{kernel_id}", headers=headers)
    return printed


def _execute(ws: Any, code: str) -> list[str]:
    msg_id, printed = uuid.uuid4().hex, []
    ws.send(
        json.dumps(
            {
                "header": {"msg_id": msg_id, "msg_type": "execute_request", "session": "t",
                           "username": "test", "version": "5.3"},
                "parent_header": {}, "metadata": {}, "buffers": [], "channel": "shell",
                "content": {"code": code, "silent": False, "store_history": True,
                            "user_expressions": {}, "allow_stdin": False, "stop_on_error": True},
            }
        )
    )  # fmt: skip
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        message = json.loads(ws.recv(timeout=300))
        if message.get("parent_header", {}).get("msg_id") != msg_id:
            continue
        kind, content = message["header"]["msg_type"], message["content"]
        if kind == "stream":
            printed.append(content["text"])
        elif kind == "error":
            pytest.fail(f"cell failed: {content['ename']}: {content['evalue']}\n{code}")
        elif kind == "execute_reply":
            assert content["status"] == "ok", content
            return printed
    pytest.fail(f"cell did not finish:\n{code}")
