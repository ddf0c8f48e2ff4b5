"""NIfTI in and out through nibabel, converting between DICOM LPS and NIfTI RAS.

A DicomCubeImage array is (slices, rows, columns) = (z, y, x) and its ``space`` gives
voxel (x, y, z) -> LPS world coordinates. A NIfTI array is indexed (i, j, k) = (x, y, z)
and its affine maps voxels to RAS, so the affine is ``diag(-1, -1, 1, 1) @ LPS affine``.
"""
from __future__ import annotations

import gzip
import os

import numpy as np

from ..exceptions import DataConsistencyError, DicomCubeError
from ..storage import limits
from ..storage.atomic import atomic_write
from .image import DicomCubeImage
from .pixel_header import PixelDataHeader

__all__ = ["save_to_nifti", "load_from_nifti", "space_to_ras_affine", "space_from_ras_affine"]

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def space_to_ras_affine(space) -> np.ndarray:
    """4x4 voxel (x, y, z) -> RAS affine of a spacetransformer Space (LPS)."""
    rot = np.column_stack([np.asarray(space.x_orientation, float) * space.spacing[0],
                           np.asarray(space.y_orientation, float) * space.spacing[1],
                           np.asarray(space.z_orientation, float) * space.spacing[2]])
    lps = np.eye(4)
    lps[:3, :3] = rot
    lps[:3, 3] = np.asarray(space.origin, float)
    return LPS_TO_RAS @ lps


def space_from_ras_affine(affine: np.ndarray, shape_xyz: tuple):
    """spacetransformer Space (LPS) of a NIfTI affine and (x, y, z) shape."""
    from spacetransformer import Space

    if not np.isfinite(np.asarray(affine, float)).all():
        raise DataConsistencyError(f"NIfTI affine is not finite: {np.asarray(affine).tolist()}")
    lps = LPS_TO_RAS @ np.asarray(affine, float)
    rot = lps[:3, :3]
    spacing = np.linalg.norm(rot, axis=0)
    if (spacing == 0).any() or not np.isfinite(spacing).all():
        raise DataConsistencyError(f"NIfTI affine has a zero-length or overflowing axis: {spacing.tolist()}")
    axes = rot / spacing
    return Space(shape=tuple(int(s) for s in shape_xyz), origin=tuple(lps[:3, 3].tolist()),
                 spacing=tuple(spacing.tolist()), x_orientation=tuple(axes[:, 0].tolist()),
                 y_orientation=tuple(axes[:, 1].tolist()), z_orientation=tuple(axes[:, 2].tolist()))


def save_to_nifti(image: DicomCubeImage, path: "os.PathLike[str] | str") -> None:
    """Write ``image`` as NIfTI-1 (.nii, or gzipped when the name ends in .gz): stored values
    with the shared rescale as scl_slope/scl_inter (real values when the rescale varies per
    slice). Written atomically like a .dcbs file (:func:`dicube.storage.atomic.atomic_write`):
    a file it replaces keeps its permissions; errors are :class:`WriteError` naming ``path``."""
    import nibabel as nib
    from nibabel.spatialimages import HeaderDataError

    if image.space is None:
        raise DataConsistencyError("the image has no space (geometry) to write", path)
    if image.raw_image.ndim != 3:
        raise DataConsistencyError(f"NIfTI export needs a 3D image, got {image.raw_image.shape}", path)
    try:
        nii = _nifti_image(image)
    except (ValueError, HeaderDataError) as exc:  # e.g. a dtype NIfTI-1 cannot hold
        raise DataConsistencyError(f"cannot write NIfTI: {exc}", path) from exc
    name = os.path.basename(os.fspath(path))
    with atomic_write(path) as fh:
        if name.lower().endswith(".gz"):  # as nibabel writes it: level 1, no time stamp
            with gzip.GzipFile(name[:-3], "wb", 1, fh, mtime=0) as gz:
                nii.to_file_map({"image": nib.FileHolder(fileobj=gz)})
        else:
            nii.to_file_map({"image": nib.FileHolder(fileobj=fh)})


def _nifti_image(image: DicomCubeImage):
    import nibabel as nib

    ph = image.pixel_header
    if ph is not None and ph.per_slice_rescale:
        data, slope, inter = image.get_fdata(np.float32), 1.0, 0.0
    else:
        data = image.raw_image
        slope = float(ph.RescaleSlope) if ph is not None and ph.RescaleSlope is not None else 1.0
        inter = float(ph.RescaleIntercept) if ph is not None and ph.RescaleIntercept else 0.0
    affine = space_to_ras_affine(image.space)
    nii = nib.Nifti1Image(np.ascontiguousarray(data.transpose(2, 1, 0)), affine)
    nii.header.set_slope_inter(slope, inter)
    nii.set_qform(affine, code=1)
    nii.set_sform(affine, code=1)
    return nii


def load_from_nifti(path: "os.PathLike[str] | str") -> DicomCubeImage:
    """Read a 3D NIfTI file: stored values as ``raw_image`` (z, y, x), scl_slope/inter as
    the rescale, the affine (RAS) as an LPS ``space``; no DICOM metadata."""
    import nibabel as nib

    try:
        nii = nib.load(os.fspath(path))
        _check_declared_data(nii, path)
        raw = np.asarray(nii.dataobj.get_unscaled()) if hasattr(nii.dataobj, "get_unscaled") \
            else np.asarray(nii.dataobj)
    except DicomCubeError:
        raise
    except Exception as exc:  # nibabel raises many types for bad files
        raise DicomCubeError(f"cannot read NIfTI: {type(exc).__name__}: {exc}", path) from exc
    while raw.ndim > 3 and raw.shape[-1] == 1:
        raw = raw[..., 0]
    if raw.ndim == 2:
        raw = raw[..., np.newaxis]
    if raw.ndim != 3:
        raise DataConsistencyError(f"only 3D NIfTI images are supported, got {raw.shape}", path)
    # nibabel moves scl_slope/scl_inter from the header to the array proxy on load
    slope = getattr(nii.dataobj, "slope", None)
    inter = getattr(nii.dataobj, "inter", None)
    slope = 1.0 if slope is None or not np.isfinite(slope) else float(slope)
    inter = 0.0 if inter is None or not np.isfinite(inter) else float(inter)
    try:
        space = space_from_ras_affine(nii.affine, raw.shape)
    except DataConsistencyError as exc:
        raise DataConsistencyError(str(exc), path) from None
    volume = np.ascontiguousarray(raw.transpose(2, 1, 0))
    dt = str(volume.dtype)
    ph = PixelDataHeader(RescaleSlope=slope, RescaleIntercept=inter, OriginalPixelDtype=dt,
                         PixelDtype=dt)
    return DicomCubeImage(volume, ph, None, space)


def _check_declared_data(nii, path) -> None:
    """Refuse a header whose dimensions, sample type or data offset the file cannot hold
    before nibabel allocates the array: an uncompressed file must contain all the declared
    bytes; a compressed one may inflate to at most :func:`limits.inflate_cap` of its size."""
    hdr = nii.header
    shape = tuple(int(n) for n in hdr.get_data_shape())
    if not shape or min(shape) < 1:
        raise DataConsistencyError(f"NIfTI dimensions {shape} are not all positive", path)
    limits.check_dtype(np.dtype(hdr.get_data_dtype()), path)
    nbytes = int(np.prod(shape, dtype=object)) * hdr.get_data_dtype().itemsize
    offset = hdr.get_data_offset()
    image = nii.file_map["image"].filename or os.fspath(path)  # a pair's .img holds the data
    size = os.path.getsize(image)
    if image.lower().endswith((".gz", ".bz2", ".zst")):
        cap = limits.inflate_cap(size)
        if nbytes > cap:
            raise DataConsistencyError(
                f"NIfTI header declares {nbytes} data bytes {shape} for a compressed file of "
                f"{size} bytes, above the limit of {int(cap)}: refused as a likely decompression "
                "bomb (limits MAX_INFLATE_RATIO above DECODE_FREE_BYTES; env "
                "DICUBE_MAX_INFLATE_RATIO=0 disables)", path)
    elif not 0 <= offset <= size or nbytes > size - offset:
        raise DataConsistencyError(
            f"NIfTI header declares {nbytes} data bytes {shape} at offset {offset}, the data "
            f"file {image} has {size} bytes (truncated or damaged header)", path)

