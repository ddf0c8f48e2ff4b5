"""The frame codecs of the container, selected by the codec id in its header.

A frame codec is a module (or any object) with these attributes:

``CODEC_ID``
    The number in the .dcbs header (``dicube.storage.format.CODEC_*``).
``NAME``
    Its name in ``dicube info``; ``SAVE_NAME`` the name ``save(codec=...)`` takes, or None.
``FALLBACK``
    The codec id tried when ``encode`` cannot hold the samples (None: none).
``CHECKS_CRCS``
    Whether ``decode`` verifies the frames' CRC-32C itself (else the reader checks them
    before calling it: checksums before decode).
``encode(volume, bits_stored, num_threads)``
    (list of frame bytes, bits stored recorded in the header), or None when the codec
    cannot hold this sample type or these values.
``decode(buffer, offsets, lengths, out, *, crcs, num_threads, verify)``
    Decode frame k from ``buffer[offsets[k]:offsets[k] + lengths[k]]`` into ``out[k]``;
    raises CodecError ("frame k ...", k counted in this call) or CorruptFileError.
``decode_file``
    None, or ``(fd, base, offsets, lengths, out, *, crcs, num_threads) -> bool``: decode
    straight from a local file's descriptor (False: use ``decode`` on a buffer instead).
``header``
    None when the stored frames are not codestreams DICOM knows (they are decoded and
    served as native pixel data), else ``header(frame)``: the facts of one stored frame, a
    :class:`~dicube.codecs.jph.CodestreamInfo` (what the DICOM export matches to the pixel
    module).
``bind`` (optional)
    ``bind(reader) -> codec``: for frames that need per-file parameters (codec 5 reads the
    LOSS section); the reader decodes with the codec it returns.
``transfer_syntax(facts)``
    The DICOM Transfer Syntax UID a frame with these facts is served as without
    re-encoding, or None (the frame meets no syntax: an error).

Adding a codec: one module in dicube/codecs/ and one line in ``_BUILTIN`` (or
:func:`register` at run time).
"""
from __future__ import annotations

import importlib
from typing import Dict

__all__ = ["get", "known", "register", "unregister", "by_save_name", "save_names"]

#: Built-in codecs, imported when first used (import of the native extension is deferred).
_BUILTIN: Dict[int, str] = {
    1: "dicube.codecs.htj2k",  # CODEC_HTJ2K
    2: "dicube.codecs.zstd_raw",  # CODEC_ZSTD
    3: "dicube.codecs.zstd_planes",  # CODEC_ZSTD_PLANES
    4: "dicube.codecs.jxl",  # CODEC_JXL (.dcba; needs the archive extra)
    5: "dicube.codecs.bounded",  # CODEC_BOUNDED (.dcbl; parameters from bind(reader))
}
_loaded: Dict[int, object] = {}
_extra: Dict[int, object] = {}


def known(codec_id: int) -> bool:
    """Whether ``codec_id`` names a registered codec (nothing is imported)."""
    return codec_id in _BUILTIN or codec_id in _extra


def get(codec_id: int):
    """The codec with this id, or None."""
    codec = _extra.get(codec_id) or _loaded.get(codec_id)
    if codec is None and codec_id in _BUILTIN:
        codec = _loaded[codec_id] = importlib.import_module(_BUILTIN[codec_id])
    return codec


def register(codec) -> None:
    """Add a codec (an object with the attributes above); its id must be new."""
    if known(codec.CODEC_ID):
        raise ValueError(f"frame codec id {codec.CODEC_ID} is already registered")
    _extra[int(codec.CODEC_ID)] = codec


def unregister(codec_id: int) -> None:
    """Remove a codec added with :func:`register`."""
    _extra.pop(codec_id, None)


def _all() -> list:
    return [get(i) for i in sorted(set(_BUILTIN) | set(_extra))]


def save_names() -> tuple:
    """The names ``save(codec=...)`` accepts."""
    return tuple(c.SAVE_NAME for c in _all() if c.SAVE_NAME)


def by_save_name(name: str):
    """The codec ``save(codec=name)`` selects, or None."""
    for c in _all():
        if c.SAVE_NAME and c.SAVE_NAME == name:
            return c
    return None
