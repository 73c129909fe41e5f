"""What a task sees of its spaces, as sandbox binds (the executors that use the sandbox)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from primage.errors import PrimageError
from primage.executors.base import TaskRun
from primage.host import procs
from primage.host.containers import Runtime, task_container
from primage.host.sandbox import Bind
from primage.storage import reach


def space_binds(run: TaskRun, storage_root: Path) -> tuple[list[Bind], list[tuple[str, int, int]]]:
    """What a task sees of its spaces: each whole, or the one folder it names, at the same path
    as on the host; and for each folder, (that path, device, inode) to check once mounted."""
    binds, check = [], []
    for name, read_only in sorted(run.mounts.items()):
        path = str(storage_root / name)
        folder = run.folders.get(name)
        if folder is None:  # the space's own folder: no task can move it
            binds.append(Bind(path, read_only))
            continue
        source, (device, inode) = reach.identity(name, storage_root / name, folder)
        binds.append(Bind(f"{path}/{folder}", read_only, source))
        check.append((f"{path}/{folder}", device, inode))
    return binds, check


def container_mounts(run: TaskRun, storage_root: Path) -> dict[str, tuple[str, bool]]:
    """A container task's spaces for ``Runtime.argv``: NAME (or NAME/FOLDER) → (the folder on
    this machine, read-only); a ``PrimageError`` when a folder cannot be mounted safely."""
    return {
        bind.path.removeprefix(f"{storage_root}/"): (bind.source or bind.path, bind.read_only)
        for bind in space_binds(run, storage_root)[0]
    }


def container_argv(
    runtime: Runtime,
    run: TaskRun,
    storage_root: Path,
    *,
    workdir: str,
    base_env: Mapping[str, str],
    **options: Any,
) -> list[str]:
    """The ``podman run`` of one task attempt, as every executor with containers runs it: its
    spaces (``container_mounts``), resources and network from ``run``; ``options`` as
    ``Runtime.argv`` takes them. A folder that cannot be mounted safely: a command that fails
    saying so."""
    try:
        mounts = container_mounts(run, storage_root)
    except PrimageError as exc:  # a folder that vanished, or became a link out
        return procs.failing(exc.detail)
    key = run.key
    return runtime.argv(
        image=run.image or "",
        command=procs.argv_for(run.command),
        name=task_container(key.job_id, key.index, key.attempt),
        workdir=workdir,
        mounts=mounts,
        env=run.env,
        base_env=base_env,
        cpus=run.cpus,
        memory_bytes=run.memory_bytes,
        network=run.network,
        **options,
    )


# Run inside the sandbox, before the task: each folder mounted must be the one checked at
# submission (bwrap mounts by path: a link put in its place meanwhile would lead elsewhere).
# Arguments: PATH DEVICE:INODE pairs, then --, then the task's argv. Exit 125: nothing ran.
_VERIFY = """while [ "$1" != -- ]; do
  [ "$(stat -c %d:%i "$1" 2>/dev/null)" = "$2" ] || {
    echo "primage: folder '$1' changed before the task started (a link put in its place?);" \
      "nothing ran" >&2; exit 125; }
  shift 2
done
shift; exec "$@"
"""


def verified(argv: list[str], check: list[tuple[str, int, int]]) -> list[str]:
    """``argv`` run inside the sandbox only once the folders it mounted are those checked
    (where the sandbox is made later, on another machine, than the check at submission)."""
    if not check:
        return argv
    pairs = [word for path, device, inode in check for word in (path, f"{device}:{inode}")]
    return ["/bin/sh", "-c", _VERIFY, "sh", *pairs, "--", *argv]
