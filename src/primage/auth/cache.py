"""A short-lived cache of authenticated principals, so a token costs no query per request.

Entries live ``ttl`` seconds at most and never past the token's expiry. Anything in this process
that changes who a token stands for (revocation, group membership) calls ``clear()``; the TTL
bounds how stale another server process sharing the database can be.
"""

from __future__ import annotations

import hashlib
import threading
import time

from primage.auth.principal import Principal
from primage.db.tables import utcnow


class PrincipalCache:
    def __init__(self, ttl: float = 10.0, size: int = 4096) -> None:
        self.ttl, self.size = ttl, size
        self._entries: dict[str, tuple[float, Principal]] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _key(raw_token: str) -> str:
        return hashlib.sha256(raw_token.encode()).hexdigest()

    def get(self, raw_token: str) -> Principal | None:
        key = self._key(raw_token)
        with self._lock:
            entry = self._entries.get(key)
        if entry is None:
            return None
        stored_at, principal = entry
        expires = principal.expires_at
        if time.monotonic() - stored_at > self.ttl or (expires and expires <= utcnow()):
            with self._lock:
                self._entries.pop(key, None)
            return None
        return principal

    def put(self, raw_token: str, principal: Principal) -> None:
        with self._lock:
            if len(self._entries) >= self.size:
                self._entries.clear()
            self._entries[self._key(raw_token)] = (time.monotonic(), principal)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
