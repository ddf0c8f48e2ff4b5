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

# --- DICOM reading / metadata / QC (issue 3); imported lazily to keep `import dicube` fast
_DICOM_EXPORTS = {
    "load_from_dicom_folder": "dicube.dicom.dicom_io",
    "discover_series": "dicube.dicom.dicom_io",
    "get_dicom_status": "dicube.dicom.dicom_status",
    "check_series": "dicube.dicom.dicom_status",
    "DicomStatus": "dicube.dicom.dicom_status",
    "QCReport": "dicube.dicom.dicom_status",
    "DicomMeta": "dicube.dicom.dicom_meta",
    "CommonTags": "dicube.dicom.dicom_tags",
    "DicomCubeImage": "dicube.core.image",
    "PixelDataHeader": "dicube.core.pixel_header",
}


def __getattr__(name):
    module = _DICOM_EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'dicube' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value

# --- .dcbs container, DICOM export and NIfTI (issue 4); lazy like the above
_DICOM_EXPORTS.update({
    "save": "dicube.core.io",
    "load": "dicube.core.io",
    "load_meta": "dicube.core.io",
    "load_qc_report": "dicube.core.io",
    "save_to_dicom_folder": "dicube.dicom.export",
    "load_from_nifti": "dicube.core.nifti_io",
    "save_to_nifti": "dicube.core.nifti_io",
    "DcbsReader": "dicube.storage.reader",
})
# --- streaming reader: per-frame DICOM instances (issue 5)
_DICOM_EXPORTS["DcbStreamingReader"] = "dicube.dicom.streaming"


def __dir__():
    """The public API, the lazily imported names included (``dir(dicube)``)."""
    return sorted(__all__)


__all__ = ["__version__", "CodecError", "DataConsistencyError", "DicomCubeError",
           "InvalidCubeFileError", "MetaDataError", *_DICOM_EXPORTS]
