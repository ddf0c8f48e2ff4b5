"""DICOM reading, the exact metadata model (DicomMeta), geometry and series QC."""
from __future__ import annotations

from .dicom_io import (
    DiscoveryResult,
    SeriesInfo,
    discover_series,
    load_from_dicom_folder,
    read_dicom_series,
)
from .dicom_meta import DicomMeta
from .dicom_status import DicomStatus, QCIssue, QCReport, check_series, get_dicom_status
from .dicom_tags import CommonTags

__all__ = [
    "CommonTags",
    "DicomMeta",
    "DicomStatus",
    "QCIssue",
    "QCReport",
    "check_series",
    "get_dicom_status",
    "discover_series",
    "load_from_dicom_folder",
    "read_dicom_series",
    "SeriesInfo",
    "DiscoveryResult",
]
