"""The database: the single source of truth for users, tokens, spaces and (later) jobs."""

from primage.db.engine import Database

__all__ = ["Database"]
