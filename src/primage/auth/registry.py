"""The platform as the token server of its private registry (Docker Registry v2 token auth).

``docker login`` / ``podman login`` against the registry send the user to
``GET /registry/token`` with Basic credentials (any user name, a platform token or a provider's
access token as the password). The platform answers with a short-lived JWT, signed with its
registry key, granting the repository actions :func:`primage.auth.policy.registry_actions`
allows, and nothing else; an action it does not grant is simply absent, and the registry refuses
it (the registry's ``denied``/``unauthorized``).

The signing key and a self-signed certificate for it live in ``<data_dir>/registry/`` (created
once, mode 0600 for the key); the registry trusts the certificate (``rootcertbundle``) and finds
the key by its libtrust key id in the token's ``kid`` header.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from primage.errors import BadRequest

TOKEN_LIFETIME = dt.timedelta(minutes=5)


@dataclass(frozen=True)
class Scope:
    type: str  # "repository" or "registry"
    name: str  # e.g. "alice/segmentation", or "catalog"
    actions: tuple[str, ...]

    @classmethod
    def parse(cls, text: str) -> Scope:
        """``repository:alice/app:pull,push`` (the name may itself hold a port: split from both
        ends)."""
        kind, _, rest = text.partition(":")
        name, _, actions = rest.rpartition(":")
        if not kind or not name or not actions:
            raise BadRequest(f"malformed scope {text!r}: expected TYPE:NAME:ACTIONS")
        return cls(kind, name, tuple(a for a in actions.split(",") if a))


def libtrust_kid(public_der: bytes) -> str:
    """The key id the registry computes for a key: SHA-256 of its DER, first 240 bits, base32,
    in groups of four."""
    digest = base64.b32encode(hashlib.sha256(public_der).digest()[:30]).decode().rstrip("=")
    return ":".join(digest[i : i + 4] for i in range(0, len(digest), 4))


class RegistryKey:
    """The key the platform signs registry tokens with, and the certificate the registry trusts."""

    def __init__(self, folder: Path) -> None:
        self.key_file, self.cert_file = folder / "token.key", folder / "token.crt"
        if not self.key_file.exists():
            self._create(folder)
        self.key = serialization.load_pem_private_key(self.key_file.read_bytes(), None)
        public = self.key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.kid = libtrust_kid(public)

    def _create(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "primage registry tokens")])
        now = dt.datetime.now(dt.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=3650))
            .sign(key, hashes.SHA256())
        )
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        fd = os.open(self.key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(pem)
        self.cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))

    def sign(self, *, issuer: str, subject: str, service: str, access: list[Scope]) -> str:
        now = dt.datetime.now(dt.UTC)
        claims = {
            "iss": issuer,
            "sub": subject,
            "aud": service,
            "iat": now,
            "nbf": now - dt.timedelta(seconds=5),
            "exp": now + TOKEN_LIFETIME,
            "jti": secrets.token_hex(16),
            "access": [
                {"type": s.type, "name": s.name, "actions": list(s.actions)} for s in access
            ],
        }
        return jwt.encode(claims, self.key, algorithm="ES256", headers={"kid": self.kid})  # type: ignore[arg-type]
