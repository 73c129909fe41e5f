"""Every problem a template has, gathered and refused at once, each saying where it is."""

from __future__ import annotations

from primage.errors import BadRequest


class Problems:
    """What is wrong with a template so far; :meth:`check` refuses it, naming each problem."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.found: list[str] = []

    def add(self, problem: str) -> None:
        if problem not in self.found:
            self.found.append(problem)

    def refuse(self, problem: str) -> BadRequest:
        """The refusal, with ``problem`` after those found before it."""
        self.add(problem)
        return self._error()

    def check(self) -> None:
        """Nothing more to check until these are fixed: a 400 listing them, if any."""
        if self.found:
            raise self._error()

    def _error(self) -> BadRequest:
        if len(self.found) == 1:
            return BadRequest(f"{self.source}: {self.found[0]}")
        listed = "; ".join(f"({i}) {p}" for i, p in enumerate(self.found, 1))
        return BadRequest(f"{self.source}: {len(self.found)} problems: {listed}")
