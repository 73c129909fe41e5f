"""Images in the platform registry."""

from __future__ import annotations

from primage.models import Model


class Image(Model):
    repository: str
    tags: list[str]
