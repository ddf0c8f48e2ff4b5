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
    "DcbStreamingReader",
]


def __getattr__(name):
    # lazy: the streaming reader imports dicube.core, which imports this package
    if name == "DcbStreamingReader":
        from .streaming import DcbStreamingReader

        return DcbStreamingReader
    raise AttributeError(f"module 'dicube.dicom' has no attribute {name!r}")
