"""Core data structures: DicomCubeImage and PixelDataHeader."""
from __future__ import annotations

from .image import DicomCubeImage
from .pixel_header import PixelDataHeader

__all__ = ["DicomCubeImage", "PixelDataHeader"]
