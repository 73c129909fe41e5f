"""The Python SDK. Everything the CLI does goes through this class.

>>> from primage import Client
>>> c = Client()                       # the server on this machine, with its admin token
>>> c.create_space("scans")
>>> c.upload("scans", "ct/CT_small.dcm", "CT_small.dcm").sha256
"""

from __future__ import annotations

import io
import os
import tarfile
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import quote

import httpx

from primage import credentials, login
from primage.errors import PrimageError, ServerUnavailable, Unauthenticated, from_response
from primage.jobs.states import JOB_DONE, JobState
from primage.models.apps import (
    App,
    AppDeployed,
    AppDetail,
    AppSpec,
    AppUpdate,
    RenderedTemplate,
)
from primage.models.audit import AuditPage
from primage.models.builds import Build, Hook, HookWithSecret
from primage.models.executors import ExecutorInfo
from primage.models.files import FileInfo, Listing
from primage.models.images import Image
from primage.models.jobs import JobDetail, JobPage, JobSpec, TaskPage
from primage.models.spaces import Space, SpaceDetail
from primage.models.tokens import Token, TokenSecret
from primage.models.users import Group, Me, User, UserWithToken
from primage.storage.paths import normalise_relpath
from primage.storage.transfer import Blocks

CHUNK = 1024 * 1024
Progress = Callable[[int], None]


def _q(path: str) -> str:
    """A path for the URL, checked here first: httpx would silently fold '..' segments away."""
    return quote(normalise_relpath(path), safe="/")


class Client:
    """A connection to one primage server, authenticated with a token or a kept login."""

    def __init__(
        self, server: str | None = None, token: str | None = None, *, timeout: float = 60.0
    ) -> None:
        self.endpoint = credentials.locate(server)
        self.server = self.endpoint.value
        auth, self.credential = credentials.auth_for(self.server, token)
        limits = httpx.Limits(max_connections=32, max_keepalive_connections=32)
        self.http = httpx.Client(
            base_url=self.server,
            auth=auth,
            timeout=timeout,
            limits=limits,
        )

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- plumbing ---------------------------------------------------------------------------

    def _raise_for(self, response: httpx.Response) -> None:
        if response.is_success:
            return
        response.read()
        try:
            body = response.json()
            code, detail = body.get("error"), str(body.get("detail"))
        except ValueError:
            code, detail = None, response.text[:200] or response.reason_phrase
        if response.status_code == 401:
            detail += f" (sent {self.credential} to {self.server}, {self.endpoint.why})"
        raise from_response(response.status_code, code, detail)

    def _request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self.http.request(method, url, **kwargs)
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from None
        self._raise_for(response)
        return response

    def _unreachable(self, exc: Exception) -> PrimageError:
        return ServerUnavailable(
            f"cannot reach the primage server at {self.server} ({exc.__class__.__name__}; "
            f"{self.endpoint.why}): start one with 'primage server', or set PRIMAGE_SERVER"
        )

    # -- platform ---------------------------------------------------------------------------

    def current_token(self) -> str:
        """The bearer token requests use now (a kept login is refreshed first if due)."""
        auth = self.http.auth
        if isinstance(auth, credentials.BearerToken):
            return auth.token
        if isinstance(auth, login.LoginAuth):
            return auth.token()
        raise Unauthenticated("no credentials: primage login, or set PRIMAGE_TOKEN")

    def health(self) -> dict[str, str]:
        result: dict[str, str] = self._request("GET", "/health").json()
        return result

    def whoami(self) -> Me:
        return Me.model_validate(self._request("GET", "/whoami").json())

    # -- spaces -----------------------------------------------------------------------------

    def create_space(
        self, name: str, *, description: str = "", quota_bytes: int | None = None
    ) -> Space:
        body = {"name": name, "description": description, "quota_bytes": quota_bytes}
        return Space.model_validate(self._request("POST", "/spaces", json=body).json())

    def list_spaces(self) -> list[Space]:
        return [Space.model_validate(s) for s in self._request("GET", "/spaces").json()]

    def space(self, name: str) -> SpaceDetail:
        return SpaceDetail.model_validate(self._request("GET", f"/spaces/{_q(name)}").json())

    def update_space(
        self, name: str, *, description: str | None = None, quota_bytes: int | None = None
    ) -> SpaceDetail:
        body = {"description": description, "quota_bytes": quota_bytes}
        response = self._request("PATCH", f"/spaces/{_q(name)}", json=body)
        return SpaceDetail.model_validate(response.json())

    def delete_space(self, name: str, *, force: bool = False) -> None:
        self._request("DELETE", f"/spaces/{_q(name)}", params={"force": force})

    def share(
        self, space: str, name: str, role: str = "viewer", *, kind: str = "user"
    ) -> SpaceDetail:
        body = {"kind": kind, "name": name, "role": role}
        response = self._request("PUT", f"/spaces/{_q(space)}/members", json=body)
        return SpaceDetail.model_validate(response.json())

    def unshare(self, space: str, name: str, *, kind: str = "user") -> SpaceDetail:
        url = f"/spaces/{_q(space)}/members/{kind}/{_q(name)}"
        return SpaceDetail.model_validate(self._request("DELETE", url).json())

    # -- files ------------------------------------------------------------------------------

    def _files(self, space: str, path: str, recursive: bool = False) -> FileInfo | Listing:
        """A file's info, or a folder's listing: what ``GET …/files/PATH`` answers."""
        url = f"/spaces/{_q(space)}/files/{_q(path)}"
        body = self._request("GET", url, params={"recursive": recursive}).json()
        return Listing.model_validate(body) if "entries" in body else FileInfo.model_validate(body)

    def stat(self, space: str, path: str) -> FileInfo:
        found = self._files(space, path)
        return found.folder if isinstance(found, Listing) else found

    def listdir(self, space: str, path: str = "", *, recursive: bool = False) -> list[FileInfo]:
        """A folder's entries; with ``recursive`` every folder and file below it. A file lists
        itself."""
        found = self._files(space, path, recursive)
        return found.entries if isinstance(found, Listing) else [found]

    def mkdir(self, space: str, path: str, *, parents: bool = True) -> FileInfo:
        body = {"path": path, "parents": parents}
        return FileInfo.model_validate(
            self._request("POST", f"/spaces/{_q(space)}/mkdir", json=body).json()
        )

    def move(
        self, space: str, source: str, destination: str, *, overwrite: bool = False
    ) -> FileInfo:
        body = {"source": source, "destination": destination, "overwrite": overwrite}
        return FileInfo.model_validate(
            self._request("POST", f"/spaces/{_q(space)}/move", json=body).json()
        )

    def remove(self, space: str, path: str, *, recursive: bool = False) -> None:
        url = f"/spaces/{_q(space)}/files/{_q(path)}"
        self._request("DELETE", url, params={"recursive": recursive})

    def upload(
        self,
        space: str,
        path: str,
        source: str | os.PathLike[str] | BinaryIO | bytes,
        *,
        overwrite: bool = True,
        progress: Progress | None = None,
    ) -> FileInfo:
        """Stream a local file (or bytes, or an open binary file) to ``space:path``.

        With ``overwrite=False`` an existing file is left alone and Conflict is raised.
        """
        url = f"/spaces/{_q(space)}/content/{_q(path)}"
        put = partial(self._put, url, overwrite=overwrite, progress=progress)
        if isinstance(source, bytes):
            return put(source)
        if isinstance(source, str | os.PathLike):
            with open(source, "rb") as handle:
                size = os.fstat(handle.fileno()).st_size
                if size <= CHUNK:  # one read, one send
                    return put(handle.read())
                return put(_chunks(handle), size=size)
        return put(_chunks(source))

    def _put(
        self,
        url: str,
        body: bytes | Iterator[bytes],
        *,
        overwrite: bool,
        progress: Progress | None,
        size: int | None = None,
    ) -> FileInfo:
        """PUT the body; a stream of known ``size`` says so in Content-Length."""
        params = {"overwrite": overwrite}
        if isinstance(body, bytes):
            response = self._request("PUT", url, content=body, params=params)
            if progress:
                progress(len(body))
            return FileInfo.model_validate(response.json())

        def counted(chunks: Iterator[bytes]) -> Iterator[bytes]:
            for chunk in chunks:
                yield chunk
                if progress:
                    progress(len(chunk))

        headers = {"Content-Length": str(size)} if size is not None else {}
        response = self._request("PUT", url, content=counted(body), headers=headers, params=params)
        return FileInfo.model_validate(response.json())

    def download(
        self,
        space: str,
        path: str,
        dest: str | os.PathLike[str],
        *,
        progress: Progress | None = None,
    ) -> Path:
        """Stream ``space:path`` into a local file, replaced only once complete."""
        target = Path(dest)
        if target.is_dir():
            target = target / path.rstrip("/").rsplit("/", 1)[-1]
        with self._stream("GET", f"/spaces/{_q(space)}/content/{_q(path)}") as response:
            _save(response.iter_raw(), target, progress)
        return target

    def read_bytes(self, space: str, path: str, *, start: int = 0, end: int | None = None) -> bytes:
        """The file's bytes, or the range ``[start, end)`` of them."""
        headers = {}
        if start or end is not None:
            headers["Range"] = f"bytes={start}-{'' if end is None else end - 1}"
        url = f"/spaces/{_q(space)}/content/{_q(path)}"
        return self._request("GET", url, headers=headers).content

    @contextmanager
    def _stream(self, method: str, url: str, **kwargs: Any) -> Iterator[httpx.Response]:
        try:
            with self.http.stream(method, url, **kwargs) as response:
                self._raise_for(response)
                yield response
        except httpx.TransportError as exc:
            raise self._unreachable(exc) from None

    def upload_dir(
        self,
        space: str,
        remote: str,
        local: str | os.PathLike[str],
        *,
        workers: int = 8,
        overwrite: bool = True,
        progress: Progress | None = None,
    ) -> list[FileInfo]:
        """Upload every file below a local folder, several at a time."""
        root = Path(local)
        pairs = [
            (f"{remote.strip('/')}/{p.relative_to(root).as_posix()}".lstrip("/"), p)
            for p in sorted(root.rglob("*"))
            if p.is_file()
        ]
        with ThreadPoolExecutor(max_workers=workers) as pool:
            return list(
                pool.map(
                    lambda pair: self.upload(space, *pair, overwrite=overwrite, progress=progress),
                    pairs,
                )
            )

    def download_dir(
        self,
        space: str,
        remote: str,
        local: str | os.PathLike[str],
        *,
        workers: int = 8,
        progress: Progress | None = None,
    ) -> list[Path]:
        """Download what ``space:remote`` holds into the folder ``local`` (made if missing):
        ``remote/a/b.dcm`` becomes ``local/a/b.dcm``; empty folders come too. Returns the files."""
        base = remote.strip("/")
        root = Path(local)
        root.mkdir(parents=True, exist_ok=True)
        files = []
        for info in self.listdir(space, base, recursive=True):
            relative = info.path[len(base) :].lstrip("/") if base else info.path
            if info.type == "directory":
                (root / relative).mkdir(parents=True, exist_ok=True)
            else:
                files.append((info, root / (relative or info.name)))

        def fetch(pair: tuple[FileInfo, Path]) -> Path:
            pair[1].parent.mkdir(parents=True, exist_ok=True)
            return self.download(space, pair[0].path, pair[1], progress=progress)

        with ThreadPoolExecutor(max_workers=workers) as pool:
            return list(pool.map(fetch, files))

    # -- tokens, users, groups ----------------------------------------------------------------

    def create_token(
        self,
        name: str = "cli",
        *,
        expires_in_days: float | None = None,
        space: str | None = None,
        path: str | None = None,
        read_only: bool = False,
    ) -> TokenSecret:
        body = {
            "name": name,
            "expires_in_days": expires_in_days,
            "space": space,
            "path": path,
            "read_only": read_only,
        }
        return TokenSecret.model_validate(self._request("POST", "/tokens", json=body).json())

    def list_tokens(self) -> list[Token]:
        return [Token.model_validate(t) for t in self._request("GET", "/tokens").json()]

    def revoke_token(self, token_id: str) -> Token:
        return Token.model_validate(self._request("DELETE", f"/tokens/{_q(token_id)}").json())

    def create_user(self, name: str, *, is_admin: bool = False) -> UserWithToken:
        body = {"name": name, "is_admin": is_admin}
        return UserWithToken.model_validate(self._request("POST", "/users", json=body).json())

    def list_users(self) -> list[User]:
        return [User.model_validate(u) for u in self._request("GET", "/users").json()]

    def create_group(self, name: str) -> Group:
        return Group.model_validate(self._request("POST", "/groups", json={"name": name}).json())

    def list_groups(self) -> list[Group]:
        return [Group.model_validate(g) for g in self._request("GET", "/groups").json()]

    def add_to_group(self, group: str, user: str) -> Group:
        url = f"/groups/{_q(group)}/members/{_q(user)}"
        return Group.model_validate(self._request("PUT", url).json())

    def remove_from_group(self, group: str, user: str) -> Group:
        url = f"/groups/{_q(group)}/members/{_q(user)}"
        return Group.model_validate(self._request("DELETE", url).json())

    def audit(
        self,
        *,
        actor: str | None = None,
        action: str | None = None,
        target: str | None = None,
        since: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> AuditPage:
        """The audit log, newest first (admins only)."""
        filters = {"actor": actor, "action": action, "target": target, "since": since}
        params: dict[str, Any] = {k: v for k, v in filters.items() if v is not None}
        params |= {"limit": limit, "offset": offset}
        return AuditPage.model_validate(self._request("GET", "/admin/audit", params=params).json())

    # -- jobs -------------------------------------------------------------------------------

    def list_executors(self) -> list[ExecutorInfo]:
        """Where jobs can run: each executor's kind, capabilities, capacity and health."""
        found = self._request("GET", "/executors").json()
        return [ExecutorInfo.model_validate(e) for e in found]

    def executor(self, name: str) -> ExecutorInfo:
        found = self._request("GET", f"/executors/{_q(name)}").json()
        return ExecutorInfo.model_validate(found)

    def list_images(self) -> list[Image]:
        """The repositories in the platform registry you may pull, with their tags."""
        return [Image.model_validate(i) for i in self._request("GET", "/images").json()]

    def remove_image(self, repository: str, tag: str) -> None:
        self._request("DELETE", f"/images/{quote(repository)}", params={"tag": tag})

    def start_build(
        self,
        source: str,
        tag: str,
        *,
        ref: str | None = None,
        context: str = ".",
        dockerfile: str = "Dockerfile",
        test_command: str | None = None,
    ) -> Build:
        """Build ``source`` (a git URL) from its folder ``context``, test the image, and push
        it as ``tag`` if all passes."""
        body = {"source": source, "tag": tag, "ref": ref, "context": context,
                "dockerfile": dockerfile, "test_command": test_command}  # fmt: skip
        return Build.model_validate(self._request("POST", "/builds", json=body).json())

    def add_build_hook(
        self,
        source: str,
        tag: str,
        *,
        context: str = ".",
        dockerfile: str = "Dockerfile",
        test_command: str | None = None,
    ) -> HookWithSecret:
        """Register a repository whose pushes start builds; the secret is returned this once."""
        body = {"source": source, "tag": tag, "context": context, "dockerfile": dockerfile,
                "test_command": test_command}  # fmt: skip
        return HookWithSecret.model_validate(
            self._request("POST", "/builds/hooks", json=body).json()
        )

    def list_build_hooks(self) -> list[Hook]:
        return [Hook.model_validate(h) for h in self._request("GET", "/builds/hooks").json()]

    def build(self, build_id: int) -> Build:
        return Build.model_validate(self._request("GET", f"/builds/{build_id}").json())

    def list_builds(self) -> list[Build]:
        return [Build.model_validate(b) for b in self._request("GET", "/builds").json()]

    def build_logs(self, build_id: int, *, follow: bool = False) -> Iterator[bytes]:
        url = f"/builds/{build_id}/logs"
        with self._stream("GET", url, params={"follow": follow}) as response:
            yield from response.iter_bytes()

    def wait_build(self, build_id: int, *, timeout: float = 1800, poll: float = 0.5) -> Build:
        deadline = time.monotonic() + timeout
        while (found := self.build(build_id)).state not in ("succeeded", "failed"):
            if time.monotonic() > deadline:
                raise PrimageError(f"build {build_id} still {found.state} after {timeout:.0f} s")
            time.sleep(poll)
        return found

    # -- applications ---------------------------------------------------------------------------

    def deploy_app(
        self,
        template: str | None = None,
        *,
        inputs: dict[str, str] | None = None,
        spec: AppSpec | dict[str, Any] | None = None,
        source: str = "template",
        name: str | None = None,
        files: dict[str, str] | None = None,
    ) -> AppDeployed:
        """Deploy from a template's text (own YAML, TOSCA or RADL, with its inputs and the
        files it imports), or from a spec; ``name`` deploys it under another name than the
        template's. The answer's notes say what the template asks that was left out."""
        body: dict[str, Any] = {
            "template": template, "inputs": inputs or {}, "source": source, "name": name,
            "files": files or {},
        }  # fmt: skip
        if spec is not None:
            body["spec"] = spec.model_dump(mode="json") if isinstance(spec, AppSpec) else spec
        answer = self._request("POST", "/applications", json=body).json()
        return AppDeployed.model_validate(answer)

    def render_template(
        self,
        template: str,
        *,
        inputs: dict[str, str] | None = None,
        source: str = "template",
        name: str | None = None,
        files: dict[str, str] | None = None,
    ) -> RenderedTemplate:
        """What a template becomes (an app or a job spec, with notes), deploying nothing."""
        body = {"template": template, "inputs": inputs or {}, "source": source, "name": name,
                "files": files or {}}  # fmt: skip
        answer = self._request("POST", "/templates/render", json=body).json()
        return RenderedTemplate.model_validate(answer)

    def list_apps(self) -> list[App]:
        return [App.model_validate(a) for a in self._request("GET", "/applications").json()]

    def app(self, name: str) -> AppDetail:
        return AppDetail.model_validate(self._request("GET", f"/applications/{name}").json())

    def update_app(self, name: str, **changes: Any) -> App:
        """Reconfigure (replicas, image, command, env, resources): rolled out, old serving."""
        body = AppUpdate(**changes).model_dump(mode="json", exclude_none=True)
        return App.model_validate(self._request("PATCH", f"/applications/{name}", json=body).json())

    def stop_app(self, name: str) -> AppDetail:
        answer = self._request("POST", f"/applications/{name}/stop")
        return AppDetail.model_validate(answer.json())

    def start_app(self, name: str) -> AppDetail:
        answer = self._request("POST", f"/applications/{name}/start")
        return AppDetail.model_validate(answer.json())

    def remove_app(self, name: str) -> None:
        self._request("DELETE", f"/applications/{name}")

    def app_logs(self, name: str, *, instance: int = 0, follow: bool = False) -> Iterator[bytes]:
        url = f"/applications/{name}/logs"
        with self._stream("GET", url, params={"instance": instance, "follow": follow}) as answer:
            yield from answer.iter_bytes()

    def wait_app(
        self, name: str, *, until: tuple[str, ...] = ("running",), timeout: float = 300
    ) -> AppDetail:
        """Poll until the app is in one of ``until`` with every instance ready, or has failed
        or stopped (returned too: the caller reads its state and message)."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.app(name)
            settled = found.state in until and found.ready == found.replicas
            if settled or found.state in ("failed", "stopped"):
                return found
            if time.monotonic() > deadline:
                raise PrimageError(f"app '{name}' still {found.state} after {timeout:.0f} s")
            time.sleep(0.25)

    def submit_job(self, spec: JobSpec | dict[str, Any]) -> JobDetail:
        """Submit a job; checked and expanded into tasks by the server before this returns."""
        body = spec.model_dump(mode="json") if isinstance(spec, JobSpec) else spec
        return JobDetail.model_validate(self._request("POST", "/jobs", json=body).json())

    def list_jobs(
        self,
        *,
        state: Sequence[str] = (),
        owner: str | None = None,
        space: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> JobPage:
        params: dict[str, Any] = {"state": list(state), "limit": limit, "offset": offset}
        params |= {k: v for k, v in (("owner", owner), ("space", space)) if v is not None}
        return JobPage.model_validate(self._request("GET", "/jobs", params=params).json())

    def job(self, job_id: int) -> JobDetail:
        return JobDetail.model_validate(self._request("GET", f"/jobs/{job_id}").json())

    def tasks(
        self, job_id: int, *, state: Sequence[str] = (), limit: int = 100, offset: int = 0
    ) -> TaskPage:
        params = {"state": list(state), "limit": limit, "offset": offset}
        response = self._request("GET", f"/jobs/{job_id}/tasks", params=params)
        return TaskPage.model_validate(response.json())

    def logs(
        self,
        job_id: int,
        task: int = 0,
        *,
        stream: str = "stdout",
        follow: bool = False,
        attempt: int | None = None,
    ) -> Iterator[bytes]:
        """A task's stdout or stderr; with ``follow``, chunks arrive until the task ends."""
        params: dict[str, Any] = {"stream": stream, "follow": follow}
        if attempt is not None:
            params["attempt"] = attempt
        url = f"/jobs/{job_id}/tasks/{task}/logs"
        with self._stream("GET", url, params=params, timeout=None if follow else 60) as response:
            yield from response.iter_bytes()

    def cancel_job(self, job_id: int) -> JobDetail:
        return JobDetail.model_validate(self._request("POST", f"/jobs/{job_id}/cancel").json())

    def remove_job(self, job_id: int) -> None:
        self._request("DELETE", f"/jobs/{job_id}")

    def wait_job(
        self,
        job_id: int,
        *,
        poll: float = 1.0,
        timeout: float | None = None,
        on_update: Callable[[JobDetail], None] | None = None,
    ) -> JobDetail:
        """Poll until the job has finished (any end state) and return it."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            job = self.job(job_id)
            if on_update is not None:
                on_update(job)
            if JobState(job.state) in JOB_DONE:
                return job
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} still {job.state} after {timeout:g} s")
            time.sleep(poll)

    def download_output(
        self, job_id: int, dest: str | os.PathLike[str], *, as_tar: bool = False
    ) -> Path:
        """The job's output folder: extracted into ``dest/job-<id>/``, or saved as a tar file."""
        target = Path(dest)
        with self._stream("GET", f"/jobs/{job_id}/output") as response:
            if as_tar:
                _save(response.iter_raw(), target, None)
                return target
            target.mkdir(parents=True, exist_ok=True)
            with tarfile.open(fileobj=_Reader(response.iter_raw()), mode="r|") as archive:
                archive.extractall(target, filter="data")  # refuses links and paths outside
        return target / f"job-{job_id}"


class _Reader(io.RawIOBase):
    """Chunks from the network as a file, for tarfile's streaming mode."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._rest = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self._rest:
            try:
                self._rest = next(self._chunks)
            except StopIteration:
                return 0
        n = min(len(buffer), len(self._rest))
        buffer[:n] = self._rest[:n]
        self._rest = self._rest[n:]
        return n


def _save(chunks: Iterator[bytes], target: Path, progress: Progress | None) -> None:
    """Write a stream to ``target``, which appears only once complete."""
    tmp = target.with_name(f".{target.name}.part")
    try:
        _write_overlapped(chunks, tmp, progress)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _write_overlapped(chunks: Iterator[bytes], path: Path, progress: Progress | None) -> None:
    """Write to ``path`` in a second thread, so the network and the disk work at the same time."""
    blocks = Blocks(4 * CHUNK)
    with open(path, "wb") as handle, ThreadPoolExecutor(max_workers=1) as disk:
        pending: Future[int] | None = None
        for chunk in chunks:
            for block in blocks.feed(chunk):
                if pending is not None:
                    pending.result()
                pending = disk.submit(handle.write, block)
            if progress:
                progress(len(chunk))
        if pending is not None:
            pending.result()
        handle.write(blocks.rest())


def _chunks(handle: BinaryIO) -> Iterator[bytes]:
    while chunk := handle.read(CHUNK):
        yield chunk
