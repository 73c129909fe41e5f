"""Base images without the internet: a Debian root filesystem made by mmdebstrap, imported.

The machines of a PRIMAGE site often reach Debian's package mirror but no public container
registry, so ``FROM python:3.11-slim`` cannot be pulled. ``primage image bootstrap`` builds the
equivalent from Debian's packages (``mmdebstrap``, no root filesystem tricks, about 25 s for
Python), imports it into the local container store, and pushes it to the platform registry
(``library/…``, which every user may pull) when asked. Sites with a registry mirror simply use
their usual base images.

Sites whose traffic passes a TLS-inspecting proxy give the image their CA bundle
(``ca_bundle``): it replaces the image's, and pip, requests and Python's ``ssl`` are pointed at
it, so that builds over this base (``pip install`` in a Dockerfile) reach the package index.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

from primage.errors import BadRequest, PrimageError
from primage.host.containers import Runtime

EXCLUDE = ("/usr/share/man/*", "/usr/share/doc/*", "/usr/share/locale/*", "/usr/share/info/*")
CA_FILE = "/etc/ssl/certs/ca-certificates.crt"  # where Debian's OpenSSL looks
CA_VARIABLES = ("SSL_CERT_FILE", "PIP_CERT", "REQUESTS_CA_BUNDLE")


def image_changes(packages: Sequence[str], ca_bundle: Path | None) -> list[str]:
    """The ``podman import --change`` instructions: a command, a locale, the CA bundle."""
    command = 'CMD ["/usr/bin/python3"]' if "python3" in packages else 'CMD ["/bin/bash"]'
    changes = [command, "ENV LANG=C.UTF-8"]
    if ca_bundle is not None:
        changes += [f"ENV {variable}={CA_FILE}" for variable in CA_VARIABLES]
    return changes


APT_SOURCES = Path("/etc/apt")


def apt_mirror(suite: str, apt: Path = APT_SOURCES) -> str | None:
    """The Debian archive this machine installs ``suite`` from: the first enabled ``deb`` source
    naming it (``sources.list.d/*.sources``, deb822, then the one-line ``sources.list`` and
    ``*.list``), so that a site with its own mirror (or a snapshot) bootstraps from it."""
    for path in sorted((apt / "sources.list.d").glob("*.sources")):
        for paragraph in path.read_text(errors="replace").split("\n\n"):
            fields: dict[str, str] = {}
            for line in paragraph.splitlines():
                key, sep, value = line.partition(":")
                if sep and not line.startswith(("#", " ", "\t")):
                    fields[key.strip().lower()] = value.strip()
            if (
                "deb" in fields.get("types", "").split()
                and suite in fields.get("suites", "").split()
                and fields.get("enabled", "yes").lower() != "no"
                and fields.get("uris")
            ):
                return fields["uris"].split()[0]
    for path in [apt / "sources.list", *sorted((apt / "sources.list.d").glob("*.list"))]:
        try:
            lines = path.read_text(errors="replace").splitlines()
        except OSError:
            continue
        for line in lines:
            words = re.sub(r"\[[^\]]*\]", " ", line.split("#", 1)[0]).split()  # [options]
            if len(words) > 2 and words[0] == "deb" and words[2] == suite:
                return words[1]
    return None


def bootstrap(
    runtime: Runtime,
    name: str,
    *,
    packages: Sequence[str],
    suite: str,
    mirror: str,
    ca_bundle: Path | None = None,
    log: Path | None = None,
) -> None:
    """Build a Debian ``suite`` image with ``packages`` and import it as ``name``."""
    if ca_bundle is not None and not ca_bundle.is_file():
        raise BadRequest(f"CA bundle '{ca_bundle}' is not a file (PEM certificates)")
    trust = []
    if ca_bundle is not None:
        trust = [
            f'--customize-hook=mkdir -p "$1{Path(CA_FILE).parent}"',
            f"--customize-hook=upload {ca_bundle.resolve()} {CA_FILE}",
        ]
    with tempfile.TemporaryDirectory(prefix="primage-bootstrap-") as work:
        tar = Path(work) / "rootfs.tar"
        command = [
            "mmdebstrap",
            "--variant=apt",
            f"--include={','.join(packages)}",
            *(f"--dpkgopt=path-exclude={pattern}" for pattern in EXCLUDE),
            *trust,
            suite,
            str(tar),
            mirror,
        ]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=1800)
        except FileNotFoundError:
            raise BadRequest("mmdebstrap is not installed: apt-get install mmdebstrap") from None
        if log is not None:
            log.write_text(done.stdout + done.stderr)
        if done.returncode != 0:
            why = (done.stderr.strip().splitlines() or ["no message"])[-1]
            raise PrimageError(f"mmdebstrap failed: {why}")
        changes = [arg for change in image_changes(packages, ca_bundle) for arg in ("-c", change)]
        imported = subprocess.run(
            [*runtime.command, "import", *changes, str(tar), name],
            env={**os.environ, **runtime.env},
            capture_output=True,
            text=True,
            timeout=600,
        )
        if imported.returncode != 0:
            raise PrimageError(f"podman import failed: {imported.stderr.strip()[-300:]}")


def push(runtime: Runtime, source: str, target: str, *, user: str, token: str, tls: bool) -> None:
    """Tag ``source`` as ``target`` and push it with the user's platform token."""
    env = {**os.environ, **runtime.env}
    for args in (
        ["tag", source, target],
        ["push", f"--tls-verify={str(tls).lower()}", "--creds", f"{user}:{token}", target],
    ):
        done = subprocess.run(
            [*runtime.command, *args], env=env, capture_output=True, text=True, timeout=600
        )
        if done.returncode != 0:
            why = (done.stderr.strip().splitlines() or ["no message"])[-1]
            raise PrimageError(f"podman {args[0]} {target} failed: {why}")
