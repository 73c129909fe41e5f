"""An image reference resolved to its digest through a registry's HTTP API (Docker Registry v2,
the OCI distribution spec), as a client of that registry, without pulling anything.

For executors whose nodes pull images themselves (Slurm with containers, later Kubernetes): the
server pins the job's image to ``repository@sha256:…`` at submission, and every node runs that
digest. Authentication is the registry's own token flow: the registry answers 401 with a
``WWW-Authenticate: Bearer realm=…,service=…`` challenge; the realm (the platform, as the
registry's token server) issues a pull token for the user's credentials.
"""

from __future__ import annotations

import re

import httpx

from primage.errors import BadRequest
from primage.executors.base import Pull

MANIFESTS = ", ".join(
    (
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    )
)
TIMEOUT_S = 30.0


def split_tag(image: str) -> tuple[str, str]:
    """'host:port/alice/seg:1' → ('host:port/alice/seg', '1'); a digest stays a digest
    ('…@sha256:…'); no tag is 'latest'."""
    if "@" in image:
        name, _, reference = image.partition("@")
        return name, reference
    if ":" in image.rsplit("/", 1)[-1]:
        name, _, reference = image.rpartition(":")
        return name, reference
    return image, "latest"


def split_reference(image: str) -> tuple[str, str, str]:
    """'host:port/alice/seg:1' → ('host:port', 'alice/seg', '1')."""
    name, reference = split_tag(image)
    host, _, repository = name.partition("/")
    if not repository:
        raise BadRequest(f"image '{image}' names no registry: HOST/REPOSITORY:TAG")
    return host, repository, reference


def resolve_digest(image: str, pull: Pull) -> str:
    """``image`` as ``host/repository@sha256:…``, asking the registry as ``pull``'s user: a
    400 saying why when the image is not there or not theirs to pull."""
    host, repository, reference = split_reference(image)
    scheme = "https" if pull.tls_verify else "http"
    url = f"{scheme}://{host}/v2/{repository}/manifests/{reference}"
    user, password = pull.credentials
    with httpx.Client(timeout=TIMEOUT_S, verify=pull.tls_verify) as http:
        try:
            answer = http.head(url, headers={"Accept": MANIFESTS})
            if answer.status_code == 401:
                token = _token(http, answer, repository, (user, password))
                answer = http.head(
                    url, headers={"Accept": MANIFESTS, "Authorization": f"Bearer {token}"}
                )
        except httpx.HTTPError as exc:
            raise BadRequest(f"cannot reach the registry of image '{image}': {exc}") from None
    if answer.status_code in (401, 403, 404):
        raise BadRequest(
            f"cannot pull image '{image}' as {user}: not in the registry, or not yours to use "
            f"(HTTP {answer.status_code})"
        )
    digest = answer.headers.get("Docker-Content-Digest", "")
    if answer.status_code != 200 or not digest.startswith("sha256:"):
        raise BadRequest(f"the registry gave no digest for image '{image}' ({answer.status_code})")
    return f"{host}/{repository}@{digest}"


def _token(
    http: httpx.Client, challenge: httpx.Response, repository: str, auth: tuple[str, str]
) -> str:
    """A bearer token from the realm the registry's challenge names, for pulling ``repository``."""
    fields = dict(re.findall(r'(\w+)="([^"]*)"', challenge.headers.get("WWW-Authenticate", "")))
    realm = fields.get("realm")
    if realm is None:
        raise BadRequest("the registry asks for credentials but names no token server")
    params = {"service": fields.get("service", ""), "scope": f"repository:{repository}:pull"}
    answer = http.get(realm, params=params, auth=auth)
    if answer.status_code != 200:
        raise BadRequest(f"the registry's token server refused {auth[0]} ({answer.status_code})")
    found = answer.json()
    token: str = found.get("token") or found.get("access_token") or ""
    return token
