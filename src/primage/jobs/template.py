"""The variables of a task's command: ``{input}``, ``{output_dir}``, ``{spaces.NAME}`` and friends.

Only ``{name}`` forms that look like a variable are touched, so shell code such as ``${HOME}`` or
``awk '{print $1}'`` passes unchanged; ``{{`` and ``}}`` give literal braces. Substituted values
are shell-quoted, so paths with spaces or quotes are safe.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath

PATTERN = re.compile(r"\{\{|\}\}|(?<!\$)\{([a-z_][a-z0-9_]*(?:\.[A-Za-z0-9._-]+)?)\}")
VARIABLES = ("input", "inputs", "input_stem", "output_dir", "task_index", "spaces.NAME")
COMPOUND_SUFFIXES = (".nii.gz", ".tar.gz")


def space_variable(name: str) -> str:
    """The environment variable holding a mounted space's path: ``PRIMAGE_SPACE_<NAME>``."""
    return "PRIMAGE_SPACE_" + re.sub(r"[^A-Z0-9]", "_", name.upper())


def stem(path: str) -> str:
    """The file name without its extension; ``.nii.gz`` counts as one extension."""
    name = PurePosixPath(path).name
    for suffix in COMPOUND_SUFFIXES:
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return PurePosixPath(name).stem


def check_template(
    command: str, *, spaces: set[str], has_inputs: bool, batched: bool, has_output: bool
) -> None:
    """Raise ValueError naming the first variable this job cannot fill, and the fix."""
    for match in PATTERN.finditer(command):
        name = match[1]
        if name is None:
            continue
        if name.startswith("spaces."):
            space = name.removeprefix("spaces.")
            if space not in spaces:
                raise ValueError(f"command uses {{{name}}} but space '{space}' is not mounted")
        elif name in ("input", "input_stem"):
            if not has_inputs:
                raise ValueError(f"command uses {{{name}}} but the job has no inputs")
            if batched:
                raise ValueError(
                    f"command uses {{{name}}} with files_per_task > 1; use {{inputs}} (all files)"
                )
        elif name == "inputs":
            if not has_inputs:
                raise ValueError("command uses {inputs} but the job has no inputs")
        elif name == "output_dir":
            if not has_output:
                raise ValueError(
                    "command uses {output_dir} but the job has no output space; "
                    "set output.space or mount one writable space"
                )
        elif name != "task_index":
            known = ", ".join("{" + v + "}" for v in VARIABLES)
            raise ValueError(
                f"command uses unknown variable {{{name}}}; known: {known} "
                "(write {{ and }} for literal braces)"
            )


@dataclass(frozen=True)
class TaskValues:
    """What one task's variables stand for, as paths the task sees."""

    inputs: Sequence[str]
    output_dir: str | None
    task_index: int
    spaces: Mapping[str, str]


def substitute(command: str, value: Callable[[str], str]) -> str:
    """``command`` with each variable replaced by ``value(name)`` (shell-ready text) and
    ``{{``/``}}`` by literal braces; shell code such as ``${HOME}`` is left alone."""

    def fill(match: re.Match[str]) -> str:
        return match[0][0] if match[1] is None else value(match[1])

    return PATTERN.sub(fill, command)


def render(command: str, values: TaskValues) -> str:
    def value(name: str) -> str:
        if name == "task_index":
            return str(values.task_index)
        if name == "input":
            return shlex.quote(values.inputs[0])
        if name == "input_stem":
            return shlex.quote(stem(values.inputs[0]))
        if name == "inputs":
            return " ".join(shlex.quote(p) for p in values.inputs)
        if name == "output_dir":
            return shlex.quote(values.output_dir or "")
        return shlex.quote(values.spaces[name.removeprefix("spaces.")])

    return substitute(command, value)
