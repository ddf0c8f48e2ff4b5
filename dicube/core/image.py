"""DicomCubeImage: a volume, its pixel header, its DICOM metadata and its 3D space."""
from __future__ import annotations

from typing import Any, Optional

import numpy as np

from ..exceptions import DataConsistencyError, MetaDataError
from .pixel_header import PixelDataHeader

__all__ = ["DicomCubeImage"]


class DicomCubeImage:
    """A 3D (or 3D+channels) image with its metadata.

    ``raw_image`` has shape (slices, rows, columns) (``(..., 3)`` for RGB) and holds the
    stored values; ``space`` is a spacetransformer ``Space`` whose (x, y, z) axes are
    (columns, rows, slices) -- see :mod:`dicube.dicom.geometry`.
    """

    def __init__(self, raw_image: np.ndarray, pixel_header: Optional[PixelDataHeader] = None,
                 dicom_meta: Any = None, space: Any = None):
        self.raw_image = raw_image
        if pixel_header is not None and not isinstance(pixel_header, PixelDataHeader):
            raise MetaDataError(f"pixel_header must be a PixelDataHeader, not "
                                f"{type(pixel_header).__name__}")
        self.pixel_header = pixel_header or PixelDataHeader(
            OriginalPixelDtype=str(raw_image.dtype), PixelDtype=str(raw_image.dtype))
        self.pixel_header.check()  # MetaDataError for values that are not numbers
        self.dicom_meta = dicom_meta
        self.space = space
        if self.pixel_header.per_slice_rescale:
            n = raw_image.shape[0]
            for name in ("RescaleSlope", "RescaleIntercept"):
                v = getattr(self.pixel_header, name)
                if isinstance(v, list) and len(v) != n:
                    raise DataConsistencyError(f"{name} has {len(v)} values for {n} slices")

    @property
    def shape(self) -> tuple:
        return self.raw_image.shape

    @property
    def dtype(self) -> np.dtype:
        return self.raw_image.dtype

    def get_fdata(self, dtype: Any = np.float32) -> np.ndarray:
        """Real-world values: raw * RescaleSlope + RescaleIntercept, per slice when the
        rescale differs between slices."""
        h = self.pixel_header
        out = self.raw_image.astype(dtype)
        slope, inter = h.RescaleSlope, h.RescaleIntercept
        shape = (-1,) + (1,) * (out.ndim - 1)
        if isinstance(slope, list):
            out *= np.asarray(slope, dtype=dtype).reshape(shape)
        elif slope is not None and slope != 1:
            out *= dtype(slope) if isinstance(dtype, type) else slope
        if isinstance(inter, list):
            out += np.asarray(inter, dtype=dtype).reshape(shape)
        elif inter:
            out += dtype(inter) if isinstance(dtype, type) else inter
        return out

    def __repr__(self) -> str:
        return (f"DicomCubeImage(shape={self.raw_image.shape}, dtype={self.raw_image.dtype}, "
                f"slices_meta={None if self.dicom_meta is None else len(self.dicom_meta)})")
