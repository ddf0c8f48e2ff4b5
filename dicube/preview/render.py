"""Preview images: slice choice, windowing, resizing, mosaic assembly, WebP/JPEG output."""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import List, Optional, Tuple, Union

import numpy as np

from ..exceptions import DicomCubeError
from ..storage.atomic import atomic_write
from .contrast import Contrast, apply_window, auto_window, parse_contrast
from .selection import normalized_positions, radiological_order, select_position, select_slices
from .series import Series

__all__ = ["Preview", "make_mosaic", "make_image", "save_image", "check_output", "check_size",
           "tile_size", "FORMATS", "MAX_SIDE"]

log = logging.getLogger("dicube.preview")

#: Output formats by file extension.
FORMATS = {".webp": "WEBP", ".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG"}
#: Largest side each format can encode (WebP 16383, libjpeg 65500).
MAX_SIDE = {"WEBP": 16383, "JPEG": 65500, "PNG": 65500}
#: Largest preview rendered, in pixels: beyond it the float tiles alone need gigabytes.
MAX_PIXELS = 1 << 27


@dataclass
class Preview:
    """A rendered preview: the image, which slices it shows (indices into the series'
    own order, in display order; -1 for a blank tile) and the window used."""

    image: "object"  # PIL.Image.Image
    slices: List[int]
    window: Tuple[float, float]
    window_source: str
    tile: Tuple[int, int]
    grid: Tuple[int, int] = (1, 1)
    positions: List[float] = field(default_factory=list)


def tile_size(frame_shape: tuple, width: int) -> Tuple[int, int]:
    """(width, height) of a tile ``width`` pixels wide with the frame's aspect ratio."""
    if width < 1:
        raise DicomCubeError(f"image width must be at least 1 pixel, got {width}")
    rows, cols = frame_shape[0], frame_shape[1]
    return width, max(1, int(round(width * rows / cols)))


def check_size(width: int, height: int, max_side: int = 65500) -> None:
    """Refuse a preview too large to encode (``max_side``) or to render (MAX_PIXELS)
    before any pixel is read."""
    if max(width, height) > max_side or width * height > MAX_PIXELS:
        raise DicomCubeError(f"the preview would be {width}x{height} pixels, more than "
                             f"{max_side} per side or {MAX_PIXELS} in all: use a smaller "
                             "image width or tile grid")


def _resize(values: np.ndarray, size: Tuple[int, int]) -> np.ndarray:
    """Float resize to (width, height) with Lanczos filtering (per channel for colour)."""
    from PIL import Image

    if values.shape[1] == size[0] and values.shape[0] == size[1]:
        return values
    if values.ndim == 3:
        return np.stack([_resize(values[..., c], size) for c in range(values.shape[2])], axis=-1)
    img = Image.fromarray(np.ascontiguousarray(values, np.float32), mode="F")
    return np.asarray(img.resize(size, Image.LANCZOS, reducing_gap=2.0), np.float32)


def _window(contrast: Contrast, series: Series, tiles: List[np.ndarray]) -> Tuple[float, float, str]:
    if contrast.kind == "window":
        return float(contrast.width), float(contrast.center), contrast.name
    if contrast.kind == "embedded" and tiles and tiles[0].ndim == 3:
        # colour: no VOI window applies (PS3.3 C.11.2); a viewer shows the full range
        return series.photometric.full_range() + ("full range",)
    if contrast.kind == "embedded" and series.embedded_window is not None:
        return series.embedded_window + ("embedded",)
    if contrast.kind == "embedded":
        log.info("no window in the file: using auto")
    values = np.concatenate([t.ravel() for t in tiles]) if tiles else np.zeros(1, np.float32)
    return auto_window(values) + ("auto",)


def _sorted(series: Series):
    order = radiological_order(series.z, series.instance)
    pos = normalized_positions([series.z[i] for i in order])
    return order, pos


def _render(series: Series, chosen: List[int], size: Tuple[int, int], contrast):
    contrast = contrast if isinstance(contrast, Contrast) else parse_contrast(contrast)
    raw = series.read(chosen, size[0], size[1])
    tiles = [_resize(v, size) for v in raw]
    ww, wc, source = _window(contrast, series, tiles)
    log.info("window width %g centre %g (%s)", ww, wc, source)
    shown = [apply_window(t, ww, wc) for t in tiles]
    if series.photometric.inverted:  # MONOCHROME1: the lowest value is white
        shown = [np.subtract(255, t, dtype=np.uint8) for t in shown]
    return shown, (ww, wc), source


def make_mosaic(series: Series, *, tile_width: int = 6, tile_height: Optional[int] = None,
                image_width: int = 128, contrast: Union[str, Contrast, None] = None,
                start: float = 0.0, end: float = 1.0, max_side: int = 65500) -> Preview:
    """A grid of ``tile_width`` x ``tile_height`` tiles, each ``image_width`` pixels wide:
    evenly spaced slices of the normalized range [start, end], superior to inferior,
    row by row; blank (black) tiles when the range has fewer slices than tiles.
    Raises DicomCubeError when the mosaic would exceed ``max_side`` (see check_size)."""
    tile_height = tile_width if tile_height is None else tile_height
    if tile_width < 1 or tile_height < 1:
        raise DicomCubeError(f"tile grid must be at least 1x1, got {tile_width}x{tile_height}")
    order, pos = _sorted(series)
    picks = select_slices(pos, tile_width * tile_height, start, end)
    if len(picks) == 0:
        raise DicomCubeError(f"no slice in the range {start}..{end}", series.location)
    chosen = [int(order[k]) for k in picks]
    log.info("%d of %d slices chosen for a %dx%d mosaic", len(chosen), len(series), tile_width,
             tile_height)
    size = tile_size(series.frame_shape, image_width)
    check_size(size[0] * tile_width, size[1] * tile_height, max_side)
    tiles, window, source = _render(series, chosen, size, contrast)
    from PIL import Image

    colour = tiles[0].ndim == 3
    mode = "RGB" if colour else "L"
    mosaic = Image.new(mode, (size[0] * tile_width, size[1] * tile_height), 0)
    for k, t in enumerate(tiles):
        r, c = divmod(k, tile_width)
        mosaic.paste(Image.fromarray(t, mode), (c * size[0], r * size[1]))
    slices = chosen + [-1] * (tile_width * tile_height - len(chosen))
    return Preview(mosaic, slices, window, source, size, (tile_width, tile_height),
                   [float(pos[k]) for k in picks])


def make_image(series: Series, *, position: float, slice_offset: int = 0, image_width: int = 128,
               contrast: Union[str, Contrast, None] = None, max_side: int = 65500) -> Preview:
    """The slice nearest the normalized ``position`` (0 superior .. 1 inferior), moved by
    ``slice_offset`` slices, ``image_width`` pixels wide (see check_size for limits)."""
    order, pos = _sorted(series)
    k = select_position(pos, position, slice_offset)
    chosen = [int(order[k])]
    size = tile_size(series.frame_shape, image_width)
    check_size(size[0], size[1], max_side)
    tiles, window, source = _render(series, chosen, size, contrast)
    from PIL import Image

    img = Image.fromarray(tiles[0], "RGB" if tiles[0].ndim == 3 else "L")
    return Preview(img, chosen, window, source, size, (1, 1), [float(pos[k])])


def check_output(path: "os.PathLike[str] | str", quality: int = 25) -> str:
    """The image format for ``path`` (by extension); raises DicomCubeError if unsupported."""
    path = os.fspath(path)
    fmt = FORMATS.get(os.path.splitext(path)[1].lower())
    if fmt is None:
        raise DicomCubeError("output must end in .webp, .jpg or .jpeg (or .png)", path)
    if not 0 <= quality <= 100:
        raise DicomCubeError(f"quality must be 0..100, got {quality}", path)
    return fmt


def save_image(image, path: "os.PathLike[str] | str", quality: int = 25) -> None:
    """Write ``image`` as WebP or JPEG (PNG too, lossless) chosen by the file extension."""
    fmt = check_output(path, quality)
    options = {} if fmt == "PNG" else {"quality": int(quality)}
    with atomic_write(path) as fh:  # never through a link at ``path``; WriteError names it
        image.save(fh, fmt, **options)
