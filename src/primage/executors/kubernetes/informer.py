"""One shared list+watch of one kind of object, as client-go's informers keep one.

An :class:`Informer` lists the objects its label selector matches, then watches from the list's
``resourceVersion``, keeping a cache of them by name and calling ``on_change(name, object)``
(``None`` once deleted) for each change. A watch that expires (``410 Gone``: the API server no
longer has that version) is followed by a fresh list, whose differences with the cache are
reported as changes; other errors back off and list again. One thread per informer, whatever
the number of objects: the executor never polls an object by itself.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections.abc import Callable
from typing import Any

from kubernetes.client.exceptions import ApiException
from kubernetes.watch.watch import iter_resp_lines

log = logging.getLogger("primage.executors.kubernetes")

Obj = dict[str, Any]
#: Long enough to be cheap, short enough that a lost connection is noticed (the API server ends
#: a watch itself after a random 30-60 min otherwise).
WATCH_SECONDS = 240


class Expired(Exception):
    """The version to watch from is gone: list again."""


class Informer:
    def __init__(
        self,
        kind: str,
        lister: Callable[..., Any],
        namespace: str,
        selector: str,
        on_change: Callable[[str, Obj | None], None],
    ) -> None:
        self.kind = kind
        self._lister = lister
        self._namespace = namespace
        self._selector = selector
        self._on_change = on_change
        self._lock = threading.Lock()
        self._cache: dict[str, Obj] = {}
        self._stop = threading.Event()
        self._response: Any = None
        self._thread: threading.Thread | None = None
        #: Set once the first list is in the cache (and cleared while a list fails).
        self.synced = threading.Event()
        self.relists = 0

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=f"watch-{self.kind}",
                                            daemon=True)  # fmt: skip
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        response = self._response
        if response is not None:
            with contextlib.suppress(Exception):  # a stream that may be closing already
                response.shutdown()  # the socket: a read blocked in the thread returns now
                response.close()

    def get(self, name: str) -> Obj | None:
        with self._lock:
            return self._cache.get(name)

    def items(self) -> list[Obj]:
        with self._lock:
            return list(self._cache.values())

    # -- the loop -------------------------------------------------------------------------------

    def _run(self, version: str | None = None) -> None:
        """List, then watch from the list's version (or from ``version``, already listed)."""
        backoff = 0.5
        while not self._stop.is_set():
            try:
                if version is None:
                    version = self._list()
                    backoff = 0.5
                while not self._stop.is_set():
                    version = self._watch(version)
            except Exception as exc:
                version = None
                if self._stop.is_set():
                    return
                if isinstance(exc, Expired) or getattr(exc, "status", None) == 410:
                    self.relists += 1  # the cache stays: the next list says what changed
                    log.info("watch of %s expired: listing again", self.kind)
                    continue
                self.synced.clear()
                log.warning("watch of %s failed (%s): listing again in %.1f s", self.kind,
                            _why(exc), backoff)  # fmt: skip
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 30.0)

    def _list(self) -> str:
        response = self._lister(self._namespace, label_selector=self._selector,
                                _preload_content=False)  # fmt: skip
        listed = json.loads(response.data)
        fresh = {o["metadata"]["name"]: o for o in listed.get("items") or []}
        with self._lock:
            gone = [name for name in self._cache if name not in fresh]
            changed = [o for name, o in fresh.items() if self._cache.get(name) != o]
            self._cache = fresh
        for name in gone:
            self._on_change(name, None)
        for obj in changed:
            self._on_change(obj["metadata"]["name"], obj)
        self.synced.set()
        return str(listed["metadata"]["resourceVersion"])

    def _watch(self, version: str) -> str:
        response = self._lister(
            self._namespace, label_selector=self._selector, watch=True,
            resource_version=version, timeout_seconds=WATCH_SECONDS,
            allow_watch_bookmarks=True, _preload_content=False,
        )  # fmt: skip
        self._response = response
        try:
            for line in iter_resp_lines(response):  # type: ignore[no-untyped-call]
                if self._stop.is_set():
                    break
                event = json.loads(line)
                obj = event.get("object") or {}
                if event.get("type") == "ERROR":
                    if obj.get("code") == 410:
                        raise Expired
                    raise ApiException(status=obj.get("code"), reason=obj.get("message"))
                version = str(obj["metadata"]["resourceVersion"])
                if event["type"] == "BOOKMARK":
                    continue
                name = obj["metadata"]["name"]
                with self._lock:
                    if event["type"] == "DELETED":
                        self._cache.pop(name, None)
                    else:
                        self._cache[name] = obj
                self._on_change(name, None if event["type"] == "DELETED" else obj)
        finally:
            self._response = None
            response.release_conn()
        return version


def _why(exc: Exception) -> str:
    if isinstance(exc, ApiException):
        return f"{exc.status} {exc.reason}"
    return f"{type(exc).__name__}: {exc}"
