"""Series previews: a mosaic of evenly spaced slices, or one slice, as WebP/JPEG.

>>> from dicube.preview import mosaic, get_image
>>> p = mosaic("ct.dcbs", "ct.webp", tile_width=6, contrast="lung")
>>> p.slices            # frames shown, superior to inferior (-1 = blank tile)
>>> p.stats.bytes       # bytes read from the source

SOURCE is a .dcbs file, a DICOM series folder, or (with ``root``) a series id under a root
laid out as ``{root}/{id}/...`` or ``{root}/{id}.dcbs``; local paths, ``http(s)://`` and
``s3://`` URLs alike (see :mod:`dicube.storage.sources`).
"""
from __future__ import annotations

import os
from typing import Optional, Union

from ..storage.sources import TransferStats
from .contrast import ALIASES, PRESETS, Contrast, apply_window, auto_window, parse_contrast
from .locate import DEFAULT_ROOT, find_series, resolve_source
from .render import MAX_SIDE, Preview, check_output, make_image, make_mosaic, save_image, tile_size
from .selection import normalized_positions, radiological_order, select_position, select_slices
from .series import DcbsSeries, DicomSeries, Series, open_series, reduce_for

__all__ = ["mosaic", "get_image", "open_series", "Series", "DcbsSeries", "DicomSeries", "Preview",
           "make_mosaic", "make_image", "save_image", "PRESETS", "ALIASES", "Contrast",
           "parse_contrast", "apply_window", "auto_window", "radiological_order",
           "normalized_positions", "select_slices", "select_position", "resolve_source",
           "find_series", "reduce_for", "tile_size", "DEFAULT_ROOT"]

Output = Union[None, str, "os.PathLike[str]"]


def _run(build, source: str, output: Output, root: Optional[str], series_uid: Optional[str],
         quality: int) -> Preview:
    max_side = MAX_SIDE[check_output(output, quality)] if output is not None else 65500
    stats = TransferStats()
    location = resolve_source(os.fspath(source), root, stats)
    with open_series(location, series_uid, stats) as series:
        preview = build(series, max_side)
    preview.stats = stats  # type: ignore[attr-defined]
    preview.location = location  # type: ignore[attr-defined]
    if output is not None:
        save_image(preview.image, output, quality)
    return preview


def mosaic(source, output: Output = None, *, root: Optional[str] = None,
           series_uid: Optional[str] = None, tile_width: int = 6, tile_height: Optional[int] = None,
           image_width: int = 128, contrast: Union[str, Contrast, None] = None,
           start: float = 0.0, end: float = 1.0, quality: int = 25) -> Preview:
    """Render (and write to ``output`` if given) a mosaic of a series; see
    :func:`~dicube.preview.render.make_mosaic`. The result has ``stats`` (bytes, requests)."""
    return _run(lambda s, m: make_mosaic(s, tile_width=tile_width, tile_height=tile_height,
                                         image_width=image_width, contrast=contrast, start=start,
                                         end=end, max_side=m), source, output, root, series_uid,
                quality)


def get_image(source, output: Output = None, *, position: float, slice_offset: int = 0,
              root: Optional[str] = None, series_uid: Optional[str] = None,
              image_width: int = 128, contrast: Union[str, Contrast, None] = None,
              quality: int = 25) -> Preview:
    """Render (and write) one slice of a series; see :func:`~dicube.preview.render.make_image`."""
    return _run(lambda s, m: make_image(s, position=position, slice_offset=slice_offset,
                                        image_width=image_width, contrast=contrast, max_side=m),
                source, output, root, series_uid, quality)
