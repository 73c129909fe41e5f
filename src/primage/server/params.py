"""Path and query parameters that several routers share, with their bounds: an id or an offset
past what the database stores is a 400 naming the parameter, never a 500."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Query

from primage.models import BIGINT_MAX

Id = Annotated[int, Path(ge=1, le=BIGINT_MAX, description="The id (a positive number).")]
Offset = Annotated[int, Query(ge=0, le=BIGINT_MAX, description="Rows to skip.")]
