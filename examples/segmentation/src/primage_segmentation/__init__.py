"""Canonical primage application 1: segment the tumour-like lesion of one CT or MR image."""

from primage_segmentation.segment import Lesion, Params, segment

__all__ = ["Lesion", "Params", "segment"]
__version__ = "0.1.0"
