"""Images in the platform registry."""

from __future__ import annotations

from pydantic import BaseModel


class Image(BaseModel):
    repository: str
    tags: list[str]
