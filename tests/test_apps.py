"""Applications end to end, against a real server, real processes and a real Jupyter server.

Canonical application 2 is deployed from ``examples/notebook/template.yaml`` with a space, reached
through the platform's proxy with a token, and its notebook is executed through Jupyter's own
REST and kernel WebSocket API, via the proxy: the filtered images appear in the space. Then the
app is reconfigured (the old version serving until the new one is ready) and undeployed.
"""

from __future__ import annotations

import contextlib
import json
import socket
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import httpx
import pytest
import yaml
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from primage.client import Client
from primage.errors import BadRequest, Conflict, Forbidden
from primage.host import procs
from primage.samples import sample_images
from tests.harness import RunningServer, eventually, free_port, import_busybox, podman, require
from tests.notebook import run_notebook

ROOT = Path(__file__).resolve().parents[1]
TEMPLATES = ROOT / "tests" / "templates"
NOTEBOOK = ROOT / "examples" / "notebook"
JUPYTER = Path(sys.executable).with_name("jupyter")


@pytest.fixture
def app_server(sqlite_server: RunningServer) -> RunningServer:
    return sqlite_server


def _users(server: RunningServer) -> tuple[str, str]:
    admin = server.client()
    return admin.create_user("alice").token, admin.create_user("bob").token


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_jupyter_app_filters_the_images_of_a_space_through_the_proxy(
    app_server: RunningServer,
) -> None:
    require(None if JUPYTER.exists() else "pip install ./examples/notebook (JupyterLab)")
    alice_token, bob_token = _users(app_server)
    alice = app_server.client(alice_token)
    alice.create_space("scans")
    images = sample_images()
    for path in images:
        alice.upload("scans", f"images/{path.name}", path)

    deployed = app_server.cli(
        "app", "deploy", str(NOTEBOOK / "template.yaml"), "--space", "scans", token=alice_token
    )
    assert deployed.code == 0, deployed.out + deployed.err
    base = f"{app_server.url}/apps/notebook/"
    assert base in deployed.out and "running" in deployed.out

    # Jupyter answers through the proxy with the platform's token: its own login never shows.
    status = httpx.get(f"{base}api/status", headers=_bearer(alice_token))
    assert status.status_code == 200 and "started" in status.json()
    lab = httpx.get(f"{base}lab", headers=_bearer(alice_token))
    assert lab.status_code == 200 and "JupyterLab" in lab.text

    # Bob may not read the space, so he may not open the app: the platform's 403, HTTP and WS.
    refused = httpx.get(f"{base}api/status", headers=_bearer(bob_token))
    assert refused.status_code == 403 and refused.json()["error"] == "forbidden"
    ws_url = base.replace("http://", "ws://") + "api/kernels/x/channels"
    with pytest.raises(InvalidStatus) as denied:
        connect(ws_url, additional_headers=_bearer(bob_token), open_timeout=10)
    assert denied.value.response.status_code == 403
    assert httpx.get(f"{base}api/status").status_code == 401  # nobody: 401, not Jupyter's page

    printed = "".join(run_notebook(base, _bearer(alice_token), NOTEBOOK / "filtering.ipynb"))
    assert f"{len(images)} images in" in printed
    written = {i.name for i in alice.listdir("scans", "filtered")}
    for path in images:
        stem = path.name.split(".")[0]
        assert {f"{stem}_{f}.nii.gz" for f in ("smooth", "edges", "window")} <= written, printed

    # Shared with bob as a viewer: the notebook writes the space, so he stays out (through it he
    # could write what the space lets him only read); as an editor, 'access: members' lets him in.
    alice.share("scans", "bob", role="viewer")
    assert httpx.get(f"{base}api/status", headers=_bearer(bob_token)).status_code == 403
    alice.share("scans", "bob", role="editor")
    assert httpx.get(f"{base}api/status", headers=_bearer(bob_token)).status_code == 200

    # Reconfigure: generation 2 starts beside 1, which serves until 2 is ready.
    alice.update_app("notebook", env={"FILTER_NOTE": "v2"})
    during = alice.app("notebook")
    assert during.state == "updating" and during.generation == 1
    assert httpx.get(f"{base}api/status", headers=_bearer(alice_token)).status_code == 200
    after = alice.wait_app("notebook", timeout=180)
    assert (after.state, after.generation, after.ready) == ("running", 2, 1), after.message
    assert [i.generation for i in after.instances] == [2]

    removed = app_server.cli("app", "rm", "notebook", token=alice_token)
    assert removed.code == 0, removed.err
    assert httpx.get(f"{base}api/status", headers=_bearer(alice_token)).status_code == 404
    assert len(alice.listdir("scans", "images")) == len(images)  # the space is untouched


@contextlib.contextmanager
def _listening(port: int) -> Iterator[None]:
    """Something else listening on ``port`` meanwhile."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
        sock.listen()
        yield


WEB = """
inputs:
  name: {default: web}
app:
  name: {get_input: name}
  command: python3 -m http.server {port} --bind 127.0.0.1
  strip_prefix: true
  spaces: [site]
  workdir: site
  idle_timeout: %s
"""


def _web_app(api: Client, idle: str = "1h") -> None:
    api.create_space("site")
    api.upload("site", "index.html", b"<h1>hello</h1>\n")
    api.deploy_app(WEB % idle, source="web.yaml")
    assert api.wait_app("web", timeout=60).state == "running"


def test_app_is_adopted_after_a_server_kill_and_stopped_when_idle(
    app_server: RunningServer,
) -> None:
    api = app_server.client()
    _web_app(api, idle="6s")
    before = api.app("web").instances[0].external_id
    assert before is not None and procs.alive(before)

    app_server.kill()  # SIGKILL: the app's process carries on, in a session of its own
    assert procs.alive(before)
    server = app_server.restart()
    try:
        api = server.client()
        page = httpx.get(f"{server.url}/apps/web/index.html", headers=_bearer(server.admin_token))
        assert page.status_code == 200 and page.text == "<h1>hello</h1>\n"
        assert api.app("web").instances[0].external_id == before  # adopted, not restarted

        # no more traffic: culled after 6 s
        eventually(lambda: api.app("web").state == "stopped", 30, "the app culled", pause=0.5)
        found = api.app("web")
        assert "without traffic" in found.message and not procs.alive(before)
        assert (
            httpx.get(f"{server.url}/apps/web/", headers=_bearer(server.admin_token)).status_code
            == 503
        )
        api.start_app("web")
        assert api.wait_app("web", timeout=60).state == "running"
    finally:
        server.stop()  # removes its apps first (harness)


STUBBORN = """
app:
  name: stubborn
  command: sh -c "trap '' TERM; exec python3 -m http.server {port} --bind 127.0.0.1"
  strip_prefix: true
"""


def test_an_app_slow_to_stop_holds_up_no_other_app(tmp_path: Path) -> None:
    """Stopping runs beside the supervisor's turns: an app that ignores SIGTERM takes the kill
    grace (5 s) to stop, and meanwhile another app is deployed and started. (Without the
    sandbox, which would end the app with its PID namespace at once.)"""
    env = {"PRIMAGE_SANDBOX": "off", "PRIMAGE_CONTAINERS": "false"}
    server = RunningServer.start(tmp_path / "data", f"sqlite:///{tmp_path / 'db'}", env=env)
    try:
        _slow_stop_beside_a_deploy(server.client())
    finally:
        server.stop()


def _slow_stop_beside_a_deploy(api: Client) -> None:
    api.deploy_app(STUBBORN, source="stubborn.yaml")
    assert api.wait_app("stubborn", timeout=60).state == "running"
    with ThreadPoolExecutor(1) as pool:
        stopping = pool.submit(api.stop_app, "stubborn")  # answers once it has stopped
        eventually(lambda: api.app("stubborn").state == "stopping", 10, "stubborn stopping")
        api.create_space("site")
        api.upload("site", "index.html", b"<h1>hello</h1>\n")
        api.deploy_app(WEB % "1h", source="web.yaml")
        eventually(lambda: api.app("web").instances, 10, "web's instance started")
        assert not stopping.done(), "web started while stubborn was still stopping"
        assert stopping.result(timeout=60).state == "stopped"
    assert api.wait_app("web", timeout=60).state == "running"


def test_server_stop_says_what_keeps_running_and_stop_all_stops_it(
    app_server: RunningServer,
) -> None:
    api = app_server.client()
    _web_app(api)
    job = api.submit_job({"spaces": ["site"], "command": "sleep 300"})
    instance = api.app("web").instances[0].external_id
    assert instance is not None
    stopped = app_server.cli("server", "stop")
    assert stopped.code == 0, stopped.err
    assert f"still running: app web; job {job.id}." in stopped.err
    assert "'primage server stop --all' stops them as well" in stopped.err
    assert procs.alive(instance), "apps outlive the server by design"
    server = app_server.restart()
    try:
        everything = server.cli("server", "stop", "--all")
        assert everything.code == 0, everything.err
        assert f"stopped app web\ncancelled job {job.id}\n" in everything.err
        assert "still running" not in everything.err
        assert not procs.alive(instance)
    finally:
        server.stop()


def test_bad_templates_and_apps_that_cannot_start_say_why(app_server: RunningServer) -> None:
    api = app_server.client()
    with pytest.raises(BadRequest, match=r"web.yaml: line 3, column 15: mapping values are not"):
        api.deploy_app("app:\n  name: x\n  command: run: now\n", source="web.yaml")
    with pytest.raises(BadRequest, match="input 'space' is required"):
        api.deploy_app("inputs: {space: {}}\napp: {name: x, command: 'true'}\n")
    with pytest.raises(BadRequest, match="unknown input colour"):
        api.deploy_app(WEB % "1h", inputs={"colour": "red"})
    with pytest.raises(BadRequest, match=r"command uses unknown variable \{prot\}"):
        api.deploy_app("app: {name: x, command: 'serve --port {prot}'}\n")
    tosca = (TEMPLATES / "database.tosca.yaml").read_text()
    with pytest.raises(BadRequest, match=r"node 'db' has type tosca\.nodes\.Database"):
        api.deploy_app(tosca, source="database.tosca.yaml")
    deepaas = (TEMPLATES / "community" / "marathon_deepaas.yaml").read_text()
    with pytest.raises(BadRequest, match=r"asks for 1 GPU\(s\), but the 'local' executor has no"):
        api.deploy_app(deepaas, source="marathon_deepaas.yaml")  # never deployed without one

    api.deploy_app("app:\n  name: crash\n  command: sh -c 'echo no config file >&2; exit 3'\n")
    failed = api.wait_app("crash", timeout=60)
    assert failed.state == "failed", failed
    assert "exited with code 3" in failed.message and "no config file" in failed.message

    port = free_port()
    with _listening(port):
        api.deploy_app(f"app: {{name: clash, command: 'sleep 60', port: {port}}}\n")
        clash = api.wait_app("clash", timeout=30)
    assert clash.state == "failed" and f"port {port} is already in use" in clash.message

    _web_app(api)
    with pytest.raises(Conflict, match="an app named 'web' exists"):
        api.deploy_app(WEB % "1h")
    api.remove_app("web")


@pytest.fixture
def container_server(container_env: dict[str, str], tmp_path: Path) -> Iterator[RunningServer]:
    env = {"PRIMAGE_CONTAINERS": "true", "PRIMAGE_CONTAINER_ENV": json.dumps(container_env)}
    running = RunningServer.start(tmp_path / "data", f"sqlite:///{tmp_path / 'db'}", env=env)
    try:
        yield running
    finally:
        running.stop()


def test_tosca_templates_deploy_as_containers_behind_the_proxy(
    container_server: RunningServer, container_env: dict[str, str], tmp_path: Path
) -> None:
    """An INDIGO Marathon template (its port and volume on the runtime, as INDIGO writes them),
    and one of the standard types (application → runtime → compute), each deployed and
    reached."""
    server = container_server
    httpd = "localhost/busybox-httpd:test"
    import_busybox(container_env, httpd, tmp_path / "rootfs",
                   '["httpd", "-f", "-p", "8080", "-h", "/srv"]',
                   files={"srv/index.html": b"<p>web app</p>\n"})  # fmt: skip
    alice_token, bob_token = _users(server)
    alice = server.client(alice_token)
    alice.create_space("reports")
    alice.upload("reports", "index.html", b"<p>3 lesions</p>\n")

    viewer = TEMPLATES / "viewer.indigo.yaml"
    made = server.cli("app", "deploy", str(viewer), "--input", "space=reports", token=alice_token)
    assert made.code == 0, made.out + made.err
    shown = alice.app("viewer")
    assert shown.spec.image is not None and "@sha256:" in shown.spec.image  # pinned
    assert (shown.spec.port, shown.spec.resources.memory) == (8080, 256_000_000)
    page = httpx.get(f"{server.url}/apps/viewer/index.html", headers=_bearer(alice_token))
    assert page.status_code == 200 and page.text == "<p>3 lesions</p>\n"
    refused = httpx.get(f"{server.url}/apps/viewer/index.html", headers=_bearer(bob_token))
    assert refused.status_code == 403  # not a member of 'reports'
    theirs = server.cli("app", "deploy", str(viewer), "--input", "space=reports", "--name",
                        "mine", token=bob_token)  # fmt: skip
    assert theirs.code != 0 and "reports" in theirs.err  # a template mounts no space of alice's

    standard = (TEMPLATES / "webapp.tosca.yaml").read_text()
    with pytest.raises(BadRequest, match="input 'image' is required"):
        alice.deploy_app(standard, source="webapp.tosca.yaml")
    alice.deploy_app(standard, inputs={"image": httpd}, source="webapp.tosca.yaml")
    assert alice.wait_app("webapp", timeout=60).state == "running"
    answer = httpx.get(f"{server.url}/apps/webapp/", headers=_bearer(alice_token))
    assert answer.status_code == 200 and answer.text == "<p>web app</p>\n"

    radl = (  # the Infrastructure Manager's way: one container system, its network's outports
        "network public (outbound = 'yes' and outports = '8080/tcp-8080/tcp')\n"
        f"system reports_radl (\n  disk.0.image.url = 'docker://{httpd}' and\n"
        "  memory.size >= 128m and command = 'httpd -f -p 8080 -h /spaces/reports' and\n"
        "  net_interface.0.connection = 'public' and disk.1.mount_path = '/spaces/reports'\n)\n"
        "deploy reports_radl 1\n"
    )
    alice.deploy_app(radl, source="reports.radl")
    assert alice.wait_app("reports-radl", timeout=60).state == "running"
    served = httpx.get(f"{server.url}/apps/reports-radl/index.html", headers=_bearer(alice_token))
    assert served.status_code == 200 and served.text == "<p>3 lesions</p>\n"

    for name in ("viewer", "webapp", "reports-radl"):
        alice.remove_app(name)
    left = podman(container_env, "ps", "-a", "--format", "{{.Names}}").stdout
    assert "primage-app-" not in left


ECHO = b"""
import json, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class Echo(BaseHTTPRequestHandler):
    def do_GET(self):
        body = json.dumps({"path": self.path, "headers": dict(self.headers)}).encode()
        self.send_response(200)
        self.send_header("Set-Cookie", "a=1; Path=/")
        self.send_header("Set-Cookie", "b=2; Path=/")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Echo).serve_forever()
"""


def test_proxy_sends_the_app_its_own_credential_and_the_path_as_it_came(
    app_server: RunningServer,
) -> None:
    api = app_server.client()
    api.create_space("tools")
    api.upload("tools", "echo.py", ECHO)
    api.deploy_app(
        "app: {name: echo, command: 'python3 {spaces.tools}/echo.py {port}', spaces: [tools],"
        " strip_prefix: true}\n"
    )
    assert api.wait_app("echo", timeout=60).state == "running"
    answer = httpx.get(
        f"{app_server.url}/apps/echo/sub%2Fdir?x=1",
        headers={
            **_bearer(app_server.admin_token),
            "Cookie": "primage_session=not-for-the-app; theme=dark",
            "X-Primage-User": "mallory",
            "X-Forwarded-For": "10.9.9.9",  # a client's word: never what the app is told
            "X-Forwarded-Host": "evil.example",
            "Forwarded": "for=10.9.9.9",
        },
    )
    assert answer.status_code == 200
    seen = answer.json()
    assert seen["path"] == "/sub%2Fdir?x=1"  # as sent, not decoded
    headers = {k.lower(): v for k, v in seen["headers"].items()}
    assert headers["authorization"].startswith("token ")  # the app's token, not the caller's
    assert app_server.admin_token not in json.dumps(seen)
    assert headers["cookie"] == "theme=dark" and headers["x-primage-user"] == "admin"
    assert headers["x-forwarded-for"] == "127.0.0.1" and "forwarded" not in headers
    assert headers["x-forwarded-host"] == urlparse(app_server.url).netloc
    assert headers["x-forwarded-proto"] == "http"
    assert answer.headers.get_list("set-cookie") == ["a=1; Path=/", "b=2; Path=/"]
    with pytest.raises(BadRequest, match="interactive jobs"):
        api.deploy_app("app: {name: job-77, command: 'sleep 60'}\n")
    api.remove_app("echo")


def test_interactive_job_serves_until_idle_and_can_be_cancelled(
    app_server: RunningServer, tmp_path: Path
) -> None:
    """``kind: interactive``: one service at /apps/job-<id>/ on the app machinery; the job
    succeeds when the service goes idle, and is cancelled with it."""
    api = app_server.client()
    api.create_space("site")
    api.upload("site", "index.html", b"<h1>viewer</h1>\n")
    job_file = tmp_path / "viewer.yaml"
    job_file.write_text(
        "name: viewer\nkind: interactive\nspaces: [site]\n"
        "command: python3 -m http.server {port} --bind 127.0.0.1 --directory {spaces.site}\n"
        "service: {strip_prefix: true, idle_timeout: 4s}\n"
    )
    submitted = app_server.cli("job", "submit", str(job_file))
    assert submitted.code == 0, submitted.err
    job_id = int(submitted.out.split()[2])
    url = f"{app_server.url}/apps/job-{job_id}/"
    assert f"open it at {url}" in submitted.out

    eventually(lambda: api.job(job_id).state == "running", 60, "the interactive job running")
    job = api.job(job_id)
    page = httpx.get(f"{url}index.html", headers=_bearer(app_server.admin_token))
    assert page.status_code == 200 and page.text == "<h1>viewer</h1>\n"
    assert job.url == url and api.tasks(job_id).tasks[0].state == "running"

    done = api.wait_job(job_id, timeout=60)  # idle for 4 s: it ends
    assert done.state == "succeeded", done.message
    assert "without traffic" in api.tasks(job_id).tasks[0].message
    assert [a.name for a in api.list_apps()] == []  # its app went with it

    again = api.submit_job(json_spec(job_file))
    eventually(lambda: api.job(again.id).state == "running", 60, "the second one running")
    api.cancel_job(again.id)
    assert api.wait_job(again.id, timeout=30).state == "cancelled"
    assert (
        httpx.get(
            f"{app_server.url}/apps/job-{again.id}/", headers=_bearer(app_server.admin_token)
        ).status_code
        == 404
    )
    with pytest.raises(BadRequest, match="timeout: not for an interactive job"):
        api.submit_job({**json_spec(job_file), "timeout": "1h"})

    broken = api.submit_job({"kind": "interactive", "command": "sh -c 'echo no GPU >&2; exit 4'"})
    failed = api.wait_job(broken.id, timeout=60)
    assert failed.state == "failed"
    message = api.tasks(broken.id).tasks[0].message
    assert "exited with code 4" in message and "no GPU" in message


def json_spec(path: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(path.read_text())
    return loaded


def test_only_the_owner_manages_an_app_and_a_read_only_token_only_looks(
    app_server: RunningServer,
) -> None:
    alice_token, bob_token = _users(app_server)
    alice, bob = app_server.client(alice_token), app_server.client(bob_token)
    _web_app(alice)
    assert bob.list_apps() == [] and [a.name for a in alice.list_apps()] == ["web"]
    for attempt in (
        lambda: bob.app("web"),
        lambda: bob.update_app("web", replicas=2),
        lambda: bob.stop_app("web"),
        lambda: bob.remove_app("web"),
        lambda: list(bob.app_logs("web")),
    ):
        with pytest.raises(Forbidden, match="only the owner of app 'web'"):
            attempt()
    read_only = app_server.client(alice.create_token("look", read_only=True).token)
    assert read_only.app("web").state == "running"
    with pytest.raises(Forbidden, match="read-only"):
        read_only.remove_app("web")
    with pytest.raises(Forbidden, match="restricted token cannot deploy"):
        read_only.deploy_app(WEB % "1h")
    assert app_server.client().app("web").owner == "alice"  # admins see every app
    alice.remove_app("web")


WS_ECHO = b"""
import sys
from websockets.sync.server import serve

def health(connection, request):
    return connection.respond(200, "ok\\n") if request.path == "/health" else None

def echo(websocket):
    for message in websocket:
        websocket.send(message)

serve(echo, "127.0.0.1", int(sys.argv[1]), process_request=health).serve_forever()
"""


def test_websocket_traffic_keeps_an_app_in_use(app_server: RunningServer) -> None:
    """Idle culling counts messages on a proxied WebSocket, not only HTTP requests: a notebook
    used through its kernel alone is in use."""
    api = app_server.client()
    api.create_space("tools")
    api.upload("tools", "echo.py", WS_ECHO)
    api.deploy_app(
        "app: {name: ws, command: 'python3 {spaces.tools}/echo.py {port}', spaces: [tools],"
        " strip_prefix: true, health_path: health, idle_timeout: 3s}\n"
    )
    assert api.wait_app("ws", timeout=60).state == "running"
    url = app_server.url.replace("http://", "ws://") + "/apps/ws/"
    with connect(url, additional_headers=_bearer(app_server.admin_token)) as ws:
        for n in range(12):  # 6 s of messages, twice the idle timeout
            ws.send(f"ping {n}")
            assert ws.recv(timeout=5) == f"ping {n}"
            time.sleep(0.5)
        assert api.app("ws").state == "running"
    eventually(lambda: api.app("ws").state == "stopped", 30, "the app culled", pause=0.5)
    api.app("ws")
