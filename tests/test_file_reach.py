"""One way to reach a file (``storage.reach``), tried as an attacker would: '..' in WebDAV paths,
links that lead out of a token's folder or out of the space, a job's output folder swapped for a
link to another user's space, a file flipped between a plain file and a link while it is
downloaded, and a folder swapped for a link while an upload into it is on its way. Real server,
real sandboxed jobs, real HTTP."""

from __future__ import annotations

import http.client
import json
import os
import tarfile
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from io import BytesIO
from urllib.parse import urlsplit

import httpx
import pytest

from primage.client import Client
from primage.errors import UnsafePath
from tests.harness import RunningServer, eventually

SECRET = b"alice's patient data\n"


@pytest.fixture
def platform(sandboxed_server: RunningServer) -> RunningServer:
    return sandboxed_server


@pytest.fixture
def alice(platform: RunningServer) -> Client:
    client = platform.client(platform.client().create_user("alice").token)
    client.create_space("alicesp")
    client.upload("alicesp", "secret.txt", SECRET)
    client.upload("alicesp", "sub/mine.txt", b"the folder's own\n")
    return client


def bob_with_a_space(platform: RunningServer) -> Client:
    bob = platform.client(platform.client().create_user("bob").token)
    bob.create_space("bobsp")
    return bob


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def raw(token: str, method: str, base: str, path: str, body: bytes | None = None) -> Answer:
    """A request whose path is sent as written (httpx drops dot segments): status and JSON."""
    url = urlsplit(base)
    connection = http.client.HTTPConnection(url.hostname or "", url.port, timeout=30)
    try:
        connection.request(method, path, body=body, headers=auth(token))
        answer = connection.getresponse()
        return Answer(answer.status, json.loads(answer.read() or b"{}"))
    finally:
        connection.close()


@dataclass
class Answer:
    status_code: int
    body: dict[str, str]


def test_webdav_refuses_dot_dot_out_of_a_token_folder(
    platform: RunningServer, alice: Client
) -> None:
    token = alice.create_token("f", space="alicesp", path="sub").token
    base = platform.url
    mine = httpx.get(f"{base}/dav/alicesp/sub/mine.txt", headers=auth(token))
    assert mine.content == b"the folder's own\n"
    for path in ("sub/../secret.txt", "sub/%2e%2e/secret.txt", "sub/./../secret.txt"):
        answer = raw(token, "GET", base, f"/dav/alicesp/{path}")
        assert answer.status_code == 400, (path, answer)
        assert answer.body["error"] == "unsafe_path"
    put = raw(token, "PUT", base, "/dav/alicesp/sub/../planted.txt", body=b"x")
    assert put.status_code == 400
    escape = raw(token, "GET", base, "/dav/alicesp/../../credentials.json")
    assert escape.status_code in (400, 404) and escape.body["detail"]
    assert "planted.txt" not in [f.path for f in alice.listdir("alicesp")]


def test_a_link_in_a_token_folder_never_leads_the_token_out(
    platform: RunningServer, alice: Client
) -> None:
    folder = platform.data_dir / "spaces" / "alicesp" / "sub"
    os.symlink("../secret.txt", folder / "up")  # as a job of alice's could have left them
    os.symlink("..", folder / "parent")
    os.symlink("mine.txt", folder / "alias")  # inside the folder: followed
    token = alice.create_token("f", space="alicesp", path="sub").token
    rest = f"{platform.url}/spaces/alicesp/content"
    with httpx.Client(headers=auth(token)) as http:
        assert http.get(f"{rest}/sub/alias").content == b"the folder's own\n"
        for path in ("sub/up", "sub/parent/secret.txt"):
            answer = http.get(f"{rest}/{path}")
            assert answer.status_code == 403, (path, answer.text)
            assert "restricted to path 'sub'" in answer.json()["detail"]
            dav = http.get(f"{platform.url}/dav/alicesp/{path}")
            assert dav.status_code in (403, 404) and SECRET not in dav.content
        listing = http.get(f"{platform.url}/spaces/alicesp/files/sub").json()["entries"]
    kinds = {entry["name"]: entry["type"] for entry in listing}
    assert kinds["up"] == "symlink" and kinds["parent"] == "symlink"  # listed as links, no more


def test_a_jobs_output_folder_swapped_for_a_link_serves_nothing_of_another_space(
    platform: RunningServer, alice: Client
) -> None:
    bob = bob_with_a_space(platform)
    theirs = platform.data_dir / "spaces" / "alicesp"
    job = bob.submit_job(
        {"command": f"rm -rf {{output_dir}} && ln -s {theirs} {{output_dir}}", "spaces": ["bobsp"]}
    )
    assert bob.wait_job(job.id, poll=0.2, timeout=60).state == "succeeded"

    answer = httpx.get(f"{platform.url}/jobs/{job.id}/output", headers=auth(bob.current_token()))

    assert answer.status_code in (400, 404), answer.status_code
    assert SECRET not in answer.content


def test_a_file_flipped_between_plain_and_a_link_never_serves_another_users_file(
    platform: RunningServer, alice: Client
) -> None:
    bob = bob_with_a_space(platform)
    bob.upload("bobsp", "f", b"bob's own\n")
    theirs = platform.data_dir / "spaces" / "alicesp" / "secret.txt"
    flip = (
        "cd {spaces.bobsp}; echo bob > plain; end=$(($(date +%s) + 30)); "
        f"while [ $(date +%s) -lt $end ]; do ln -sf {theirs} link; mv -T link f; "
        "cp plain copy; mv -T copy f; done"
    )
    job = bob.submit_job({"command": flip, "spaces": ["bobsp"]})
    served = {"plain": 0, "refused": 0}
    with httpx.Client(headers=auth(bob.current_token())) as http:
        for _ in range(600):
            answer = http.get(f"{platform.url}/spaces/bobsp/content/f")
            assert SECRET not in answer.content
            served["plain" if answer.status_code == 200 else "refused"] += 1
    bob.cancel_job(job.id)
    assert served["refused"] > 0, "the job never flipped the file: the test proved nothing"


def test_a_tar_of_outputs_leaves_links_and_fifos_out(
    platform: RunningServer, alice: Client
) -> None:
    theirs = platform.data_dir / "spaces" / "alicesp" / "secret.txt"
    command = (
        f"echo result > {{output_dir}}/r.txt; ln -s {theirs} {{output_dir}}/stolen; "
        "ln -s r.txt {output_dir}/alias; mkfifo {output_dir}/pipe"
    )
    job = alice.submit_job({"command": command, "spaces": ["alicesp"]})
    assert alice.wait_job(job.id, poll=0.2, timeout=60).state == "succeeded"

    answer = httpx.get(f"{platform.url}/jobs/{job.id}/output", headers=auth(alice.current_token()))

    with tarfile.open(fileobj=BytesIO(answer.content)) as tar:
        names = sorted(tar.getnames())
    assert names == [f"job-{job.id}", f"job-{job.id}/r.txt"]


def test_a_folder_swapped_for_a_link_during_an_upload_never_lets_it_land_elsewhere(
    platform: RunningServer, alice: Client
) -> None:
    """An upload walks to its folder again when it lands: bob's folder made a link to alice's
    space while his body is still arriving (as a job of his could) gets him a 400, not a file
    in her space. The same for a folder made, a move and a delete through that link."""
    bob = bob_with_a_space(platform)
    bob.mkdir("bobsp", "d")
    storage = platform.data_dir / "spaces"
    first_part, go_on = threading.Event(), threading.Event()

    def body() -> Iterator[bytes]:
        yield b"x" * 1024
        first_part.set()
        go_on.wait(30)
        yield b"y" * 1024

    url = f"{platform.url}/spaces/bobsp/content/d/planted.txt"
    with ThreadPoolExecutor(1) as pool:
        answer = pool.submit(httpx.put, url, content=body(), headers=auth(bob.current_token()))
        assert first_part.wait(30)
        staging = storage / ".staging"  # the upload is under way once its file is staged
        eventually(lambda: any(staging.iterdir()), 30, "the upload's start", pause=0.01)
        os.rename(storage / "bobsp" / "d", storage / "bobsp" / "d-was")
        os.symlink(storage / "alicesp", storage / "bobsp" / "d")
        go_on.set()
        refused = answer.result(timeout=60)

    assert refused.status_code == 400, refused.text
    assert "leads outside space 'bobsp'" in refused.json()["detail"]
    with pytest.raises(UnsafePath, match="leads outside space 'bobsp'"):
        bob.mkdir("bobsp", "d/made")
    with pytest.raises(UnsafePath, match="leads outside space 'bobsp'"):
        bob.move("bobsp", "d-was", "d/moved")
    with pytest.raises(UnsafePath, match="leads outside space 'bobsp'"):
        bob.remove("bobsp", "d/secret.txt")
    dav, headers = f"{platform.url}/dav/bobsp", auth(bob.current_token())
    destination = {**headers, "Destination": f"{dav}/d/copied.txt"}
    bob.upload("bobsp", "mine.txt", b"bob's\n")
    for method, path, sent in [
        ("DELETE", "d/secret.txt", headers),
        ("MOVE", "mine.txt", destination),
        ("COPY", "mine.txt", destination),
    ]:
        answer = httpx.request(method, f"{dav}/{path}", headers=sent)
        assert 400 <= answer.status_code < 500, (method, answer.status_code, answer.text)
    assert sorted(f.name for f in alice.listdir("alicesp")) == ["secret.txt", "sub"]
    assert alice.read_bytes("alicesp", "secret.txt") == SECRET
