"""dicube: lossless single-file storage of DICOM series (.dcbs) with HTJ2K frames."""
from __future__ import annotations

__version__ = "0.4.0"

from .exceptions import (  # noqa: F401
    CodecError,
    DataConsistencyError,
    DicomCubeError,
    InvalidCubeFileError,
    MetaDataError,
)
