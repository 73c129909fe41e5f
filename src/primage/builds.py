"""Automatic image builds: clone, build, test in the built image, and only then push.

A build runs in the server, one at a time, on a thread of its own (builds are rare and heavy):

1. ``git clone`` the source and check out the ref; the commit is recorded;
2. ``podman build`` with the Dockerfile named (layers are cached between builds);
3. the project's tests run *inside the built image* (``test_command``, network off); a failure
   fails the build and nothing is pushed;
4. the image is pushed to the platform registry as the build's owner, and its digest recorded.

The build pulls base images from the platform registry, and pushes, with a short-lived token of
the owner's (in an authfile that names the platform registry alone), so the registry's rules for
them apply; it is revoked when the build ends. Layers are cached between builds: a Dockerfile that
installs its dependencies before copying its sources rebuilds in seconds after a source change.

Everything a step prints goes to the build's log (``<data_dir>/builds/<id>.log``), which clients
follow while it grows. A build the server was running when it stopped is marked failed at the
next start; queued ones are run.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import io
import json
import logging
import queue
import shlex
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urlsplit

from sqlalchemy import select

from primage.auth import tokens
from primage.auth.principal import Caveats
from primage.config import Settings
from primage.db import Database, tables
from primage.db.tables import utcnow
from primage.host import procs
from primage.host.containers import Runtime

QUEUED, RUNNING, SUCCEEDED, FAILED = "queued", "running", "succeeded", "failed"
STEP_TIMEOUT = 3600
TOKEN_LIFETIME = dt.timedelta(hours=3)  # a build's three steps at their longest
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
log = logging.getLogger("primage.builds")


class StepFailed(Exception):
    pass


class Builder:
    def __init__(self, settings: Settings, db: Database, runtime: Runtime | None) -> None:
        self.settings, self.db, self.runtime = settings, db, runtime
        self.folder = settings.data_dir / "builds"
        self._queue: queue.Queue[int | None] = queue.Queue()
        self._thread: threading.Thread | None = None

    def log_path(self, build_id: int) -> Path:
        return self.folder / f"{build_id}.log"

    def start(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        with self.db.session() as session:
            for row in session.scalars(select(tables.Build).where(tables.Build.state == RUNNING)):
                row.state, row.finished_at = FAILED, utcnow()
                row.message = "the server stopped during the build; start it again"
            waiting = session.scalars(
                select(tables.Build.id).where(tables.Build.state == QUEUED)
            ).all()
        for build_id in waiting:
            self._queue.put(build_id)
        self._thread = threading.Thread(target=self._work, name="builder", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._queue.put(None)

    def enqueue(self, build_id: int) -> None:
        self._queue.put(build_id)

    def _work(self) -> None:
        while (build_id := self._queue.get()) is not None:
            try:
                self._build(build_id)
            except Exception:  # never let one build stop the builder
                log.exception("build %s", build_id)
                self._finish(build_id, FAILED, "internal error; the server log has the details")

    def _finish(self, build_id: int, state: str, message: str, digest: str | None = None) -> None:
        with self.db.session() as session:
            row = session.get(tables.Build, build_id)
            if row is not None:
                row.state, row.message, row.digest = state, message, digest
                row.finished_at = utcnow()

    def _build(self, build_id: int) -> None:
        with self.db.session() as session:
            row = session.get(tables.Build, build_id)
            if row is None or row.state != QUEUED:
                return
            row.state, row.started_at = RUNNING, utcnow()
            session.flush()
            session.expunge(row)
        with open(self.log_path(build_id), "ab") as out, tempfile.TemporaryDirectory() as work:
            try:
                digest = self._steps(row, Path(work), out)
            except StepFailed as failed:
                out.write(f"\nbuild failed: {failed}\n".encode())
                self._finish(build_id, FAILED, str(failed))
                return
            out.write(f"\npushed {row.tag} ({digest})\n".encode())
        self._finish(build_id, SUCCEEDED, f"pushed {row.tag}", digest)

    def _run(self, out: BinaryIO, what: str, argv: list[str], cwd: Path | None = None) -> None:
        """Run one step, its output straight into the log (followers see it as it comes);
        StepFailed with the step's last line if it fails."""
        out.write(f"$ {shlex.join(argv)}\n".encode())
        out.flush()
        begin = out.tell()
        env = dict(self.runtime.env) if self.runtime else {}
        done = subprocess.run(
            argv,
            cwd=cwd,
            env={"PATH": SYSTEM_PATH, "HOME": str(self.folder), **env},
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=STEP_TIMEOUT,
        )
        out.seek(0, io.SEEK_END)
        if done.returncode != 0:
            printed = procs.tail(Path(out.name), limit=min(2048, out.tell() - begin), lines=1)
            raise StepFailed(f"{what} failed (exit {done.returncode}): {printed[-300:]}")

    @property
    def problem(self) -> str | None:
        """Why builds cannot run here, or None: refused at once, not after queueing."""
        if self.runtime is None:
            return "this server has no container runtime (setting containers; podman)"
        if not self.settings.registry_url:
            return (
                "this platform has no registry to push to (setting registry_url; see "
                "docs/run-the-platform.md#private-registry)"
            )
        return None

    def _steps(self, row: tables.Build, work: Path, out: BinaryIO) -> str:
        if self.problem is not None:
            raise StepFailed(self.problem)
        registry = str(self.settings.registry_url)
        source = work / "source"
        self._run(out, "clone", ["git", "clone", "--quiet", row.source, str(source)])
        if row.ref:
            self._run(out, "checkout", ["git", "checkout", "--quiet", row.ref], cwd=source)
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=source, capture_output=True, text=True, check=True
        ).stdout.strip()
        out.write(f"commit {commit}\n".encode())
        with self.db.session() as session:
            found = session.get(tables.Build, row.id)
            if found is not None:
                found.commit = commit
        with self._owner_token(row) as secret:
            auth = self._authfile(work, registry, row.owner.name, secret)
            return self._build_test_push(row, source, work, out, registry, auth)

    @staticmethod
    def _locate(source: Path, row: tables.Build) -> tuple[Path, Path]:
        """The context folder and the Dockerfile, resolved inside the clone: a path or a
        symbolic link of the repository leading out of it would read the server's files."""
        clone = source.resolve()
        context = (clone / row.context).resolve()
        dockerfile = (context / row.dockerfile).resolve()
        for path, what in ((context, "context"), (dockerfile, "Dockerfile")):
            if path != clone and clone not in path.parents:
                raise StepFailed(f"the {what} leads out of the repository")
        if not context.is_dir():
            raise StepFailed(f"no folder '{row.context}' in the repository at this commit")
        if not dockerfile.is_file():
            raise StepFailed(f"no Dockerfile '{row.dockerfile}' in '{row.context}'")
        return context, dockerfile

    @contextlib.contextmanager
    def _owner_token(self, row: tables.Build) -> Iterator[str]:
        """A token of the build's owner for the registry, revoked when the build ends: the
        registry's rules for them apply to the base images pulled and to the push."""
        with self.db.session() as session:
            token, secret = tokens.issue(
                session, row.owner, name="image-build", lifetime=TOKEN_LIFETIME, caveats=Caveats()
            )
            token_id = token.id
        try:
            yield secret
        finally:
            with self.db.session() as session:
                found = session.get(tables.Token, token_id)
                if found is not None:
                    tokens.revoke(session, found)

    @staticmethod
    def _authfile(work: Path, registry: str, user: str, secret: str) -> Path:
        """Credentials for the platform registry alone (never sent to another registry)."""
        path = work / "auth.json"
        basic = base64.b64encode(f"{user}:{secret}".encode()).decode()
        path.write_text(json.dumps({"auths": {urlsplit(registry).netloc: {"auth": basic}}}))
        path.chmod(0o600)
        return path

    def _build_test_push(
        self, row: tables.Build, source: Path, work: Path, out: BinaryIO, registry: str, auth: Path
    ) -> str:
        assert self.runtime is not None
        local = f"localhost/primage-build:{row.id}"
        podman = self.runtime.command
        tls = "true" if urlsplit(registry).scheme == "https" else "false"
        context, dockerfile = self._locate(source, row)
        self._run(
            out,
            "build",
            [*podman, "build", f"--tls-verify={tls}", "--authfile", str(auth),
             *self.settings.build_options, "-f", str(dockerfile), "-t", local, str(context)],
        )  # fmt: skip
        try:
            if row.test_command:
                self._run(
                    out,
                    "tests",
                    [*podman, "run", "--rm", "--network", "none", local, "sh", "-c",
                     row.test_command],
                )  # fmt: skip
            digest_file = work / "digest"
            self._run(
                out,
                "push",
                [*podman, "push", f"--tls-verify={tls}", "--authfile", str(auth),
                 "--digestfile", str(digest_file), local,
                 f"{urlsplit(registry).netloc}/{row.tag}"],
            )  # fmt: skip
            return digest_file.read_text().strip()
        finally:
            subprocess.run(
                [*podman, "rmi", "--no-prune", local],  # its parent layers are the cache
                env={**self.runtime.env, "PATH": SYSTEM_PATH},
                capture_output=True,
            )
