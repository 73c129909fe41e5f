"""Names and paths a user may give, checked before anything touches the disk.

A path inside a space is relative, made of components that are not ``.``/``..``, hold no NUL and
are at most 255 bytes. After that lexical check the real path is resolved and must still lie
inside the space (a symlink pointing out is refused).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from primage.errors import BadRequest, UnsafePath

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
MAX_COMPONENT_BYTES = 255
MAX_PATH_BYTES = 4096


def check_name(kind: str, name: str) -> str:
    """Names of spaces, users and groups: lowercase letters, digits, '.', '_' and '-'."""
    if not NAME_RE.fullmatch(name):
        raise BadRequest(
            f"invalid {kind} name {name!r}: use 1-63 lowercase letters, digits, '.', '_' or '-',"
            " starting with a letter or digit"
        )
    return name


def normalise_relpath(path: str) -> str:
    """The canonical form of a path inside a space ('' is the space's root)."""
    if "\x00" in path:
        raise UnsafePath("path contains a NUL byte")
    if path.startswith("/") and path.strip("/"):
        raise UnsafePath(f"absolute path {path!r}: give a path relative to the space")
    if len(path.encode()) > MAX_PATH_BYTES:
        raise UnsafePath(f"path is longer than {MAX_PATH_BYTES} bytes")
    parts = [part for part in path.split("/") if part not in ("", ".")]
    for part in parts:
        if part == "..":
            raise UnsafePath(f"path {path!r} leaves the space ('..' is not allowed)")
        if len(part.encode()) > MAX_COMPONENT_BYTES:
            raise UnsafePath(f"name {part[:40]!r}… is longer than {MAX_COMPONENT_BYTES} bytes")
    return "/".join(parts)


def _inside(root: Path, candidate: str) -> bool:
    return candidate == str(root) or candidate.startswith(str(root) + os.sep)


def resolve(root: Path, path: str) -> tuple[str, Path]:
    """The normalised relative path and the real absolute one, proven to lie inside ``root``."""
    rel = normalise_relpath(path)
    real_root = root.resolve()
    target = real_root / rel if rel else real_root
    # Resolve the parent strictly through symlinks; the last component is checked on its own so
    # that a dangling or outward symlink at the leaf is refused, not followed.
    parent = os.path.realpath(target.parent) if rel else str(real_root)
    if not _inside(real_root, parent):
        raise UnsafePath(f"path {path!r} leads outside the space through a symbolic link")
    if rel and os.path.islink(target):
        leaf = os.path.realpath(target)
        if not _inside(real_root, leaf):
            raise UnsafePath(f"path {path!r} is a symbolic link pointing outside the space")
    return rel, Path(parent) / target.name if rel else real_root


def as_space_paths(text: str, storage_root: Path, work_root: Path) -> str:
    """A task's message as its user reads it: paths of the server's disk written the way users
    name files (``<root>/scans/ct/1.dcm`` → ``scans:ct/1.dcm``; a task's working folder →
    ``<task folder>``), so that no listing shows where the server keeps things."""
    spaces = re.escape(str(storage_root).rstrip("/")) + r"/([a-z0-9][a-z0-9._-]{0,62})(?:/|\b)"
    work = re.escape(str(work_root).rstrip("/")) + r"/\d+/\d+\.\d+/work\b"
    return re.sub(spaces, r"\1:", re.sub(work, "<task folder>", text))
