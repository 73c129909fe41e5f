"""The executors a platform has, from configuration: a name each, a kind, the kind's options.

``executors`` in the settings maps a name to ``{kind = "...", ...options}``; with none configured
the platform has one, ``local``, of kind ``local``. A kind is a class found through the entry
point group ``primage.executors`` (this package declares ``local``), so a site adds one by
installing a package. Each kind validates its options with its own pydantic model
(``Executor.Options``) and the ``executor_options`` a job gives with another
(``Executor.JobOptions``); both schemas are what ``GET /executors`` documents.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from importlib.metadata import entry_points
from typing import Any

from pydantic import ValidationError

from primage.errors import BadRequest, PrimageError, describe_invalid
from primage.executors.base import Executor, Host

GROUP = "primage.executors"
DEFAULT = {"local": {"kind": "local"}}


@cache
def kinds() -> dict[str, type[Executor]]:
    """Every executor kind installed, by name."""
    found: dict[str, type[Executor]] = {}
    for point in entry_points(group=GROUP):
        cls = point.load()
        if not (isinstance(cls, type) and issubclass(cls, Executor)):
            raise TypeError(f"entry point {point.name} = {point.value} is not an Executor")
        found[point.name] = cls
    return found


class ConfigError(PrimageError):
    """The executors setting cannot be used: the message names the executor and the fix."""


def build_executors(configured: Mapping[str, Mapping[str, Any]], host: Host) -> dict[str, Executor]:
    """An executor for each entry of the setting (or the default ``local``)."""
    available = kinds()
    made: dict[str, Executor] = {}
    for name, entry in (configured or DEFAULT).items():
        options = dict(entry)
        kind = options.pop("kind", None)
        if kind not in available:
            raise ConfigError(
                f"executors.{name}: kind {kind!r} is not one of {', '.join(sorted(available))} "
                f"(entry point group {GROUP})"
            )
        cls = available[kind]
        try:
            validated = cls.Options.model_validate(options)
        except ValidationError as exc:
            raise ConfigError(f"executors.{name}: {describe_invalid(exc.errors())}") from None
        made[name] = cls.from_config(name, validated, host)
    return made


@dataclass
class Executors:
    """The platform's executors by name, and the one a job that names none goes to."""

    by_name: dict[str, Executor]
    default: str

    @classmethod
    def of(cls, made: dict[str, Executor], default: str | None) -> Executors:
        chosen = default or ("local" if "local" in made else next(iter(made)))
        if chosen not in made:
            raise ConfigError(
                f"default_executor {chosen!r} is not configured; executors: {', '.join(made)}"
            )
        return cls(made, chosen)

    def __iter__(self) -> Iterator[Executor]:
        return iter(self.by_name.values())

    def get(self, name: str | None) -> Executor:
        """The executor a job names (or the default), or a 400 listing those there are."""
        chosen = name or self.default
        found = self.by_name.get(chosen)
        if found is None:
            raise BadRequest(
                f"no executor named '{chosen}'; this platform has {', '.join(self.by_name)} "
                "(primage executor ls)"
            )
        return found

    @property
    def host(self) -> Executor | None:
        """The executor of this machine that apps and interactive jobs run on: the default if it
        serves apps, else the first that does."""
        ordered = [self.by_name[self.default], *self.by_name.values()]
        return next((e for e in ordered if "apps" in e.supports), None)
