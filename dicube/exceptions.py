"""Exceptions raised by dicube.

Every error carries a message naming the file (when there is one) and the problem.
All derive from :class:`DicomCubeError`, so ``except DicomCubeError`` catches any of them.
"""
from __future__ import annotations

import os
from typing import Optional, Union

PathLike = Union[str, "os.PathLike[str]"]


class DicomCubeError(Exception):
    """Base class of all dicube errors.

    ``path`` is the file or folder concerned (or ``None``); it is prefixed to the message.
    """

    def __init__(self, message: str, path: Optional[PathLike] = None):
        self.path = os.fspath(path) if path is not None else None
        self.reason = message
        super().__init__(f"{self.path}: {message}" if self.path else message)


class InvalidCubeFileError(DicomCubeError):
    """A file is not a readable dicube file: wrong magic, unknown version, truncated, bad layout."""


class CorruptFileError(InvalidCubeFileError):
    """A dicube file's checksum does not match: its bytes changed after it was written."""


class CodecError(DicomCubeError):
    """Encoding or decoding pixel data failed (bad codestream, unsupported image, value range)."""


class MetaDataError(DicomCubeError):
    """Metadata is missing, malformed, or cannot be represented."""


class DataConsistencyError(DicomCubeError):
    """Pixels, metadata and geometry do not agree (e.g. frame count vs slice count)."""


class DicomReadError(DicomCubeError):
    """A DICOM file or folder cannot be read as a series."""


class DamagedDicomError(DicomReadError):
    """A file that looks like DICOM ("DICM" at byte 128, or a parsable header) cannot be read
    completely: truncated, a damaged header or pixel data, or unreadable."""


class UnreadableFilesError(DicomReadError):
    """Files of a DICOM folder that may hold slices cannot be read (opened, parsed or decoded).

    ``files`` lists every such file as ``(path, reason)``; pass ``on_unreadable="skip"``
    (``--skip-unreadable``) to read the rest, with the skipped files in the QC report.
    """

    def __init__(self, message: str, path: Optional[PathLike] = None, files=()):
        self.files = [(str(p), str(r)) for p, r in files]
        super().__init__(message, path)


class DuplicateInstanceError(DicomReadError):
    """Files that differ carry the same SOPInstanceUID; ``files`` lists them as
    ``(path, other_path)`` pairs (which one is right cannot be decided)."""

    def __init__(self, message: str, path: Optional[PathLike] = None, files=()):
        self.files = [(str(a), str(b)) for a, b in files]
        super().__init__(message, path)


class SkippedFileWarning(UserWarning):
    """A folder entry was not read: not a regular file (FIFO, socket, device), or a file
    skipped on request (``on_unreadable="skip"``)."""


class FrameIndexError(DicomCubeError, IndexError):
    """A frame number is out of range (also an :class:`IndexError`)."""


class MultiFrameInstanceError(DicomCubeError, ValueError):
    """A per-frame request on a file whose instances hold several frames each: ask for
    the instance instead (``DcbStreamingReader.get_dicom_for_instance``)."""


class ClosedReaderError(DicomCubeError, ValueError):
    """An operation on a reader that was closed (also a :class:`ValueError`, like closed files)."""


class SourceError(DicomCubeError):
    """A file or remote object (http(s)://, s3://) cannot be opened, listed or read."""


class WriteError(DicomCubeError):
    """A file cannot be written (no space, no permission, read-only file system, a folder in
    the way); ``path`` is the file asked for, never a temporary file."""


class UnsafeTargetError(WriteError):
    """Writing would go through a symbolic link inside an output folder, or out of it."""


class SourceNotFoundError(SourceError, DicomReadError):
    """A local file or folder given as input does not exist ("no such file or folder"); also
    a :class:`SourceError` and a :class:`DicomReadError`. Only URLs and the documented
    series-id forms are looked up remotely, so a mistyped path fails at once."""


class CubeFileNotFoundError(SourceNotFoundError, InvalidCubeFileError):
    """A .dcbs file to read does not exist: a :class:`SourceNotFoundError`, and an
    :class:`InvalidCubeFileError` as before."""


class InconsistentSeriesError(DicomReadError, DataConsistencyError):
    """The files of one series cannot be stacked into one volume: they differ in how their
    pixels are stored (SamplesPerPixel, PhotometricInterpretation, BitsAllocated,
    PixelRepresentation). ``attributes`` maps each differing attribute to
    ``{value: [files]}``; ``files`` lists every file concerned."""

    def __init__(self, message: str, path: Optional[PathLike] = None, attributes=None):
        self.attributes = {k: {str(v): [str(f) for f in fs] for v, fs in d.items()}
                           for k, d in (attributes or {}).items()}
        self.files = sorted({f for d in self.attributes.values() for fs in d.values() for f in fs})
        super().__init__(message, path)


class ColourConversionWarning(UserWarning):
    """Exported pixels were converted to another colour space (YBR_FULL -> RGB, which
    rounds) because the instance's IOD does not allow the stored one."""


class UnsupportedTransferSyntaxError(DicomCubeError):
    """A DICOM transfer syntax cannot be produced: unknown to dicube, missing from this
    build (e.g. HTJ2K RPCL without an OpenJPH that writes TLM markers), its encoder is not
    installed, or it cannot hold the pixels unchanged. The message names what is missing."""


class MultipleSeriesError(DicomReadError):
    """A folder holds several series and none was chosen; ``series`` lists them."""

    def __init__(self, message: str, path: Optional[PathLike] = None, series=None):
        super().__init__(message, path)
        self.series = list(series or [])


__all__ = [
    "DicomCubeError",
    "InvalidCubeFileError",
    "CorruptFileError",
    "CodecError",
    "MetaDataError",
    "DataConsistencyError",
    "DicomReadError",
    "MultipleSeriesError",
    "InconsistentSeriesError",
    "SourceNotFoundError",
    "CubeFileNotFoundError",
    "SourceError",
    "DamagedDicomError",
    "UnreadableFilesError",
    "DuplicateInstanceError",
    "SkippedFileWarning",
    "FrameIndexError",
    "ClosedReaderError",
    "WriteError",
    "UnsafeTargetError",
    "UnsupportedTransferSyntaxError",
    "ColourConversionWarning",
]


class CodecUnavailableError(CodecError):
    """The codec a file or option needs is not installed (e.g. JPEG XL without the
    ``archive`` extra); the message names what to install."""


class ErrorBoundError(CodecError):
    """A bounded-error (lossy) encoding broke its maximum absolute error on some pixel."""
