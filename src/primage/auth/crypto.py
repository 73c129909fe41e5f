"""Encryption at rest for the secrets the platform must be able to read back (refresh tokens).

Tokens the platform only needs to recognise are hashed (see :mod:`primage.auth.tokens`); a
provider's refresh token must be sent back to the provider, so it is encrypted with Fernet
(AES-128-CBC + HMAC-SHA256) under the ``secret_key`` setting, or a key generated once into
``<data_dir>/secret.key`` (mode 0600).
"""

from __future__ import annotations

import base64
import hashlib
import os

from cryptography.fernet import Fernet, InvalidToken

from primage.config import Settings


def _key_material(settings: Settings) -> bytes:
    if settings.secret_key is not None:
        return settings.secret_key.get_secret_value().encode()
    path = settings.secret_key_file
    try:
        return path.read_bytes().strip()
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    key = Fernet.generate_key()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another server process wrote it first
        return path.read_bytes().strip()
    with os.fdopen(fd, "wb") as out:
        out.write(key)
    return key


class SecretBox:
    """Encrypts and decrypts short secrets with the platform's key."""

    def __init__(self, settings: Settings) -> None:
        digest = hashlib.sha256(_key_material(settings)).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(digest))

    def seal(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode()

    def open(self, sealed: str) -> str | None:
        """The plaintext, or None if it was sealed under another key or altered."""
        try:
            return self._fernet.decrypt(sealed.encode()).decode()
        except InvalidToken:
            return None
