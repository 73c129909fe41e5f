"""primage: a self-hosted research cloud for medical imaging.

``from primage import Client`` gives the Python SDK (``primage.client``), imported only when it is
asked for: the server's processes that import this package do not pay for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["Client", "PrimageError", "__version__"]

if TYPE_CHECKING:
    from primage.client import Client
    from primage.errors import PrimageError


def __getattr__(name: str) -> Any:
    if name == "Client":
        from primage.client import Client

        return Client
    if name == "PrimageError":
        from primage.errors import PrimageError

        return PrimageError
    raise AttributeError(f"module 'primage' has no attribute {name!r}")
