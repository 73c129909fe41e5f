"""primage: a self-hosted research cloud for medical imaging."""

__version__ = "0.1.0"
