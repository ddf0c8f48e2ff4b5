"""MONAI image reader for .dcbs files (needs ``pip install 'dicube[monai]'``).

>>> from monai.transforms import LoadImaged
>>> load = LoadImaged("image", reader=DcbsImageReader())
>>> load({"image": "ct.dcbs"})["image"].shape        # (columns, rows, slices), float32 HU

The volume comes back as MONAI's ``ITKReader`` returns a DICOM series read from its folder:
indexed (x, y, z) = (column, row, slice), real values (RescaleSlope/Intercept applied, like
every MONAI DICOM reader), ``affine`` and ``original_affine`` in RAS (LPS with
``affine_lps_to_ras=False``), ``spatial_shape``, ``space``, ``spacing`` and
``original_channel_dim`` ("no channel" for grey volumes; RGB channel-last, -1).
"""
from __future__ import annotations

import math
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Optional, Sequence, Union
from urllib.parse import urlsplit

try:
    from monai.data import ImageReader
    from monai.utils import MetaKeys, SpaceKeys
except ImportError as exc:  # pragma: no cover - exercised in a subprocess test
    raise ImportError(
        "dicube.monai needs MONAI: pip install 'dicube[monai]' (or pip install monai); "
        "dicube.load works without it") from exc

import numpy as np

from . import _native
from .codecs import buffers
from .core.image import DicomCubeImage
from .core.io import load, subset_pixel_header
from .data.intensity import to_float
from .exceptions import DataConsistencyError

__all__ = ["DcbsImageReader", "SUFFIXES", "LPS_TO_RAS"]

SUFFIXES = (".dcbs", ".dcba", ".dcbl")
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
_SCHEMES = ("http", "https", "s3")
#: frames converted per task: a chunk of float32 output stays in the caches of one core
_CHUNK = 8


def _name(path: Any) -> str:
    """``path`` as a string; an http(s)/s3 URL that went through ``pathlib.Path`` (LoadImage
    does so unless ``expanduser=False``: "https:/host/a") gets its second slash back."""
    s = os.fspath(path) if not isinstance(path, str) else path
    for scheme in _SCHEMES:
        head = scheme + ":/"
        if s.lower().startswith(head) and not s.lower().startswith(head + "/"):
            return s[:len(head)] + "/" + s[len(head):]
    return s


def _suffix_ok(path: Any) -> bool:
    try:
        s = _name(path)
    except TypeError:
        return False
    if "://" in s:
        s = urlsplit(s).path  # a signed URL's query is not part of the name
    return s.lower().endswith(SUFFIXES)


def _checked_frames(frames: Any) -> Any:
    """``frames`` when every file can give its slab an affine (int, slice, range, or
    evenly spaced indices, all negative or none); ValueError otherwise, rather than a volume
    whose affine would be the identity."""
    if frames is None or isinstance(frames, (int, np.integer, slice, range)):
        return frames
    sel = np.asarray(frames)
    if sel.ndim != 1 or sel.size == 0 or sel.dtype.kind not in "iu":
        raise ValueError(f"frames must be an int, slice, range or non-empty integer sequence, "
                         f"got {frames!r}")
    step = np.diff(sel)
    if (step == 0).any() or (step != step[:1]).any() or ((sel < 0).any() and (sel >= 0).any()):
        raise ValueError("frames must be evenly spaced (and not mix negative and other "
                         "indices): the slab needs an affine")
    return frames


def _worker_threads() -> Optional[int]:
    """1 inside a torch DataLoader worker (the workers already use the cores), else None."""
    try:
        from torch.utils.data import get_worker_info
    except ImportError:  # pragma: no cover - MONAI brings torch
        return None
    return 1 if get_worker_info() is not None else None


def _dicom_string(elem: dict) -> Optional[str]:
    """A DICOM JSON element as the text ITK's GDCM gives (values joined by backslashes,
    padding stripped); None for sequences and binary values, which ITKReader leaves out."""
    if elem.get("vr") == "SQ" or "InlineBinary" in elem or "BulkDataURI" in elem:
        return None
    vr, out = elem.get("vr"), []
    for v in elem.get("Value", []):
        if isinstance(v, dict):  # person name
            v = v.get("Alphabetic", "")
        elif isinstance(v, float):
            v = (int(v) if v.is_integer() else f"{v:.12g}" if vr == "DS"
                 else str(np.float32(v)) if vr == "OF" or vr == "FL" else repr(v))
        out.append("" if v is None else str(v).strip())
    return "\\".join(out)


#: a type torch has for each item size, to move any samples bit for bit (no uint16 in torch)
_BITS = {1: "uint8", 2: "int16", 4: "int32", 8: "int64"}


def _transpose_2d(a: np.ndarray) -> np.ndarray:
    """``a.T`` as a new C-contiguous array, with torch's cache-blocked transposing copy
    (several times faster than numpy's element-wise one for a (frames, pixels) matrix)."""
    import torch

    out = np.empty(a.shape[::-1], a.dtype)
    bits = np.dtype(_BITS[a.dtype.itemsize])
    torch.from_numpy(out.view(bits)).copy_(torch.from_numpy(np.ascontiguousarray(a).view(bits)).t())
    return out


def _rescale(header, dtype) -> tuple:
    """(slope, intercept) as ``dtype`` scalars or per-slice vectors (broadcast along z);
    None for an identity part. The operations of DicomCubeImage.get_fdata."""
    if header is None:
        return None, None
    dt = np.dtype(dtype).type
    slope, inter = header.RescaleSlope, header.RescaleIntercept
    slope = np.asarray(slope, dt) if isinstance(slope, list) else (
        None if slope is None or slope == 1 else dt(slope))
    inter = np.asarray(inter, dt) if isinstance(inter, list) else (
        None if not inter else dt(inter))
    return slope, inter


def _native_layout(raw: np.ndarray, dtype: np.dtype) -> bool:
    """Whether the native (z, y, x) -> (x, y, z) conversion does this one: stored integers
    of up to 32 bits, native byte order, to float32 or float64."""
    return (raw.dtype.kind in "iu" and raw.dtype.itemsize <= 4 and raw.dtype.isnative
            and np.dtype(dtype) in (np.dtype(np.float32), np.dtype(np.float64)))


def _itk_key(tag: str) -> str:
    """"GGGGEEEE" -> "gggg|eeee", ITK's key for a DICOM element."""
    return f"{tag[:4].lower()}|{tag[4:].lower()}"


class DcbsImageReader(ImageReader):
    """Read .dcbs / .dcba / .dcbl files (local paths or http(s)/s3 URLs) for MONAI's
    ``LoadImage`` / ``LoadImaged``, with the conventions of MONAI's ``ITKReader``.

    Args:
        channel_dim: as for ``ITKReader``; None gives "no channel" for grey volumes and -1
            (channel-last) for RGB.
        affine_lps_to_ras: RAS affine (default, as ``ITKReader`` and ``NibabelReader``);
            False keeps DICOM's LPS (``meta["space"]`` says which).
        frames: a slab: the frames (slices) to read, as for :func:`dicube.load` (int, slice,
            range or evenly spaced indices; ValueError for others, which have no affine);
            the affine's origin and z step follow them.
        dtype: output type of the real values ``raw * RescaleSlope + RescaleIntercept``
            (per slice when the rescale varies). Default float32, the type ``LoadImage``
            converts to anyway, so no second conversion happens there. None: float32 when
            rescaling, else the stored type.
        rescale: False returns the stored values (in ``dtype``, or the stored type).
        series_meta: False (default, as ``ITKReader``): geometry keys only. True: every
            element of the first slice (slice 0 of the selection) under ITK's
            "gggg|eeee" keys with its text value, as ``ITKReader(series_meta=True)`` gives
            (sequences and binary values left out). A list of tags (keywords such as
            "Modality", "0008|0060" or "00080060"): those, always present ("" when absent),
            so batches of different series still collate.
        num_threads: decode and conversion threads (default: all cores; 1 inside a torch
            DataLoader worker).
        source_options: passed to :func:`dicube.load` (``timeouts``, ``stats``,
            ``coalesce_gap``... for URLs).
    """

    def __init__(self, channel_dim: Union[str, int, None] = None, affine_lps_to_ras: bool = True,
                 frames: Any = None, dtype: Any = np.float32, rescale: bool = True,
                 series_meta: Union[bool, Sequence[str]] = False,
                 num_threads: Optional[int] = None, **source_options):
        super().__init__()
        self.channel_dim = float("nan") if channel_dim == "no_channel" else channel_dim
        self.affine_lps_to_ras = affine_lps_to_ras
        self.frames = _checked_frames(frames)
        self.dtype = None if dtype is None else np.dtype(dtype)
        self.rescale = rescale
        self.series_meta = series_meta
        self.num_threads = num_threads
        self.source_options = source_options

    def verify_suffix(self, filename) -> bool:
        """True when every name ends in .dcbs, .dcba or .dcbl (a URL's query ignored)."""
        names = [filename] if isinstance(filename, (str, os.PathLike)) else list(filename)
        return bool(names) and all(_suffix_ok(n) for n in names)

    def read(self, data, **kwargs):
        """Load (decode) each file: a DicomCubeImage, or a list of them for several names.
        ``kwargs`` override the constructor's ``source_options``."""
        names = [data] if isinstance(data, (str, os.PathLike)) else list(data)
        options = {**self.source_options, **kwargs}
        threads = self.num_threads or _worker_threads()
        images = [load(_name(n), frames=self.frames, num_threads=threads, **options)
                  for n in names]
        return images if len(names) > 1 else images[0]

    def get_data(self, img) -> tuple:
        """(array, meta) as MONAI's readers return them; several images are stacked on a
        new first (channel) axis, or joined along their channel axis, as ITKReader does."""
        images = img if isinstance(img, (list, tuple)) else [img]
        arrays, meta = [], None
        for im in images:
            if not isinstance(im, DicomCubeImage):
                raise TypeError(f"expected a DicomCubeImage from read(), got {type(im).__name__}")
            array = self._array(im)
            header = self._meta(im, array)
            if meta is None:
                meta = header
            elif not (np.allclose(header[MetaKeys.AFFINE], meta[MetaKeys.AFFINE])
                      and np.array_equal(header[MetaKeys.SPATIAL_SHAPE], meta[MetaKeys.SPATIAL_SHAPE])):
                raise DataConsistencyError(
                    "images stacked as channels need the same affine and spatial shape")
            arrays.append(array)
        if len(arrays) == 1:
            return arrays[0], meta
        dim = meta[MetaKeys.ORIGINAL_CHANNEL_DIM]
        if isinstance(dim, float) and math.isnan(dim):
            meta[MetaKeys.ORIGINAL_CHANNEL_DIM] = 0
            return np.stack(arrays, axis=0), meta
        return np.concatenate(arrays, axis=int(dim)), meta

    # ------------------------------------------------------------------ array
    def _out_dtype(self, raw: np.ndarray) -> np.dtype:
        if self.dtype is not None:
            return self.dtype
        return np.dtype(np.float32) if self.rescale else raw.dtype

    def _array(self, im: DicomCubeImage) -> np.ndarray:
        """The volume as (x, y, z[, c]), C-contiguous, as MONAI's LoadImage makes every
        array (ITKReader's transposed view gets a full, slow transposing copy there).

        Reversing the axes of a (z, y, x) volume element by element is what costs: each
        output run along z gathers values a whole frame apart. Stored integers to float32 or
        float64 go through one native pass (``_native.to_xyz``: tiles of 16 slices x 32
        columns converted, rescaled and written as runs along z, on ``num_threads``
        threads) into memory reused from freed volumes (:mod:`dicube.codecs.buffers`).
        Other types: each block of frames gets one cache-blocked 2-D transpose (torch's
        copy kernel) of its stored values, to (y, x, z); the conversion then writes
        (x, y, z) reading whole runs along z, the per-slice rescale broadcast along them."""
        raw = im.raw_image
        dtype = self._out_dtype(raw)
        header = im.pixel_header if self.rescale else None
        if raw.ndim != 3:  # RGB: frames of (rows, columns, 3)
            return self._array_generic(raw, header, dtype)
        nz, ny, nx = raw.shape
        out = buffers.empty((nx, ny, nz), dtype)
        slope, inter = _rescale(header, dtype)
        if _native_layout(raw, dtype):  # the same arithmetic in one native pass
            per_slice = [None if v is None else np.ascontiguousarray(np.broadcast_to(v, (nz,)), dtype)
                         for v in (slope, inter)]
            _native.to_xyz(np.ascontiguousarray(raw), out, *per_slice, self._threads())
            return out
        step = max(16, -(-nz // (2 * self._threads())))

        def block(z0: int) -> None:
            z1 = min(z0 + step, nz)
            part = _transpose_2d(raw[z0:z1].reshape(z1 - z0, ny * nx))
            s = part.reshape(ny, nx, z1 - z0).transpose(1, 0, 2)  # (x, y, z) runs along z
            o = out[:, :, z0:z1]
            a = slope[z0:z1] if isinstance(slope, np.ndarray) else slope
            b = inter[z0:z1] if isinstance(inter, np.ndarray) else inter
            if a is not None:
                np.multiply(s, a, out=o, dtype=dtype, casting="unsafe")
                if b is not None:
                    o += b
            elif b is not None:
                np.add(s, b, out=o, dtype=dtype, casting="unsafe")
            else:
                np.copyto(o, s, casting="unsafe")

        self._map(block, range(0, nz, step))
        return out

    def _array_generic(self, raw: np.ndarray, header, dtype) -> np.ndarray:
        """(z, y, x, c) -> (x, y, z, c): chunks of frames converted, then transposed."""
        n = raw.shape[0]
        out = np.empty(raw.shape[:3][::-1] + raw.shape[3:], dtype)
        axes = (2, 1, 0) + tuple(range(3, raw.ndim))

        def chunk(z0: int) -> None:
            z1 = min(z0 + _CHUNK, n)
            part = raw[z0:z1]
            if header is not None or part.dtype != dtype:
                h = subset_pixel_header(header, np.arange(z0, z1)) if header is not None else None
                part = to_float(part, h, np.empty(part.shape, dtype))
            out[:, :, z0:z1] = part.transpose(axes)

        self._map(chunk, range(0, n, _CHUNK))
        return out

    def _threads(self) -> int:
        return self.num_threads or _worker_threads() or os.cpu_count() or 1

    def _map(self, fn, starts) -> None:
        threads = min(self._threads(), len(starts))
        if threads > 1:
            with ThreadPoolExecutor(threads) as pool:
                list(pool.map(fn, starts))
        else:
            for s in starts:
                fn(s)

    # ------------------------------------------------------------------ metadata
    def _affine(self, space) -> np.ndarray:
        """voxel (x, y, z) -> LPS or RAS mm; the identity without geometry (as
        PydicomReader does when the position tags are missing)."""
        affine = np.eye(4)
        if space is None:
            warnings.warn("the file has no geometry (space): its affine is the identity",
                          stacklevel=4)
            return affine
        for i, axis in enumerate((space.x_orientation, space.y_orientation, space.z_orientation)):
            affine[:3, i] = np.asarray(axis, float) * float(space.spacing[i])
        affine[:3, 3] = np.asarray(space.origin, float)
        return LPS_TO_RAS @ affine if self.affine_lps_to_ras else affine

    def _meta(self, im: DicomCubeImage, array: np.ndarray) -> dict:
        meta = self._dicom_keys(im.dicom_meta)
        affine = self._affine(im.space)
        nx, ny, nz = array.shape[:3]
        meta["spacing"] = (np.asarray(im.space.spacing, float) if im.space is not None
                           else np.ones(3))
        meta[MetaKeys.ORIGINAL_AFFINE] = affine
        meta[MetaKeys.AFFINE] = affine.copy()
        meta[MetaKeys.SPACE] = SpaceKeys.RAS if self.affine_lps_to_ras else SpaceKeys.LPS
        meta[MetaKeys.SPATIAL_SHAPE] = np.asarray([nx, ny, nz])
        if self.channel_dim is None:
            meta[MetaKeys.ORIGINAL_CHANNEL_DIM] = float("nan") if array.ndim == 3 else -1
        else:
            meta[MetaKeys.ORIGINAL_CHANNEL_DIM] = self.channel_dim
        return meta

    def _dicom_keys(self, dicom_meta) -> dict:
        if not self.series_meta:
            return {}
        if self.series_meta is True:
            if dicom_meta is None or len(dicom_meta) == 0:
                return {}
            out = {}
            for tag, elem in dicom_meta.slice_json(0).items():
                text = _dicom_string(elem)
                if text is not None and int(tag[:4], 16) % 2 == 0 and not tag.startswith("0002"):
                    out[_itk_key(tag)] = text
            return out
        from .dicom.dicom_tags import tag_key

        out = {}
        for name in self.series_meta:
            key = tag_key(name.replace("|", "") if "|" in name else name)
            elem = None if dicom_meta is None or len(dicom_meta) == 0 \
                else dicom_meta.get_element(key, 0)
            text = None if elem is None else _dicom_string(elem)
            out[_itk_key(key) if "|" in name or name.upper() == key else name] = text or ""
        return out
