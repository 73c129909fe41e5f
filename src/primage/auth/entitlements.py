"""Group memberships from ``eduperson_entitlement`` values, as EGI Check-in releases them.

A value reads ``urn:mace:egi.eu:group:<vo>[:<subgroup>...][:role=<role>]#<authority>``, one per
group and role. The platform names the group ``<vo>[:<subgroup>...]``: the colon keeps these
names apart from local groups, whose names cannot contain one. Values in any other shape are
ignored, never an error: providers release entitlements of other services too.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

GROUP = r"[A-Za-z0-9][A-Za-z0-9._-]*(?::[A-Za-z0-9][A-Za-z0-9._-]*)*?"
ENTITLEMENT_RE = re.compile(
    r"^urn:mace:egi\.eu:group:"
    rf"(?P<group>{GROUP})"
    r"(?::role=(?P<role>[A-Za-z0-9._-]+))?"
    r"(?:#(?P<authority>[A-Za-z0-9._-]+))?$"
)
MAX_GROUP = 128  # the length of a group's name in the database


@dataclass(frozen=True, order=True)
class Entitlement:
    group: str
    role: str = "member"

    def satisfies(self, requirement: str) -> bool:
        """Whether this entitlement meets a configured ``GROUP`` or ``GROUP:role=ROLE``."""
        group, _, role = requirement.partition(":role=")
        return self.group == group and (not role or self.role == role)


def parse(value: object) -> Entitlement | None:
    if not isinstance(value, str) or len(value) > 512:
        return None
    match = ENTITLEMENT_RE.match(value)
    if match is None or len(match["group"]) > MAX_GROUP:
        return None
    return Entitlement(group=match["group"], role=match["role"] or "member")


def parse_all(values: object) -> frozenset[Entitlement]:
    """Every well-formed entitlement in a claim (a list, or a single string)."""
    if isinstance(values, str):
        values = [values]
    if not isinstance(values, list):
        return frozenset()
    return frozenset(e for e in map(parse, values) if e is not None)


def holds_any(entitlements: Iterable[Entitlement], requirements: Iterable[str]) -> bool:
    wanted = list(requirements)
    return any(e.satisfies(r) for e in entitlements for r in wanted)


def is_provider_group(name: str) -> bool:
    """Whether a group name is one entitlements give (``vo[:subgroup...]``, with a colon)."""
    return ":" in name and len(name) <= MAX_GROUP and re.fullmatch(GROUP, name) is not None


def group_names(entitlements: Iterable[Entitlement]) -> frozenset[str]:
    return frozenset(e.group for e in entitlements)
