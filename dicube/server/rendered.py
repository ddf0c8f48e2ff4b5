"""Rendered images and thumbnails of WADO-RS (PS3.18 8.3.5.1): one frame as JPEG or PNG,
with the ``window``, ``viewport``, ``quality`` and ``annotation`` query parameters.

``annotation=patient,technique`` (PS3.18 8.3.5.1.3) burns text into the image, in
Pillow's built-in bitmap font (nothing to install): ``patient`` the patient's name and ID
at the top left, ``technique`` the modality, series and instance numbers, the window
shown and the slice position at the bottom left. None by default.

Pixels come from the preview code (:class:`dicube.preview.DcbsSeries`: rescaled, colour
converted, decoded at reduced resolution when the viewport is small); series are kept
in a small LRU keyed by file, size and modification time.
"""
from __future__ import annotations

import io
import math
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np

__all__ = ["RenderParams", "parse_params", "render", "voi", "annotation_lines", "ANNOTATIONS"]

#: Width of a thumbnail when the request gives no viewport.
THUMBNAIL_SIDE = 128
#: Largest viewport side served.
MAX_SIDE = 4096
_FUNCTIONS = ("linear", "linear-exact", "sigmoid")
#: What ``annotation=`` may ask for (PS3.18 8.3.5.1.3).
ANNOTATIONS = ("patient", "technique")
#: Longest annotation line drawn (characters); metadata is not trusted to be short.
_LINE_MAX = 64
_SERIES_KEPT = 8
_series: "OrderedDict[tuple, object]" = OrderedDict()
_lock = threading.Lock()


@dataclass(frozen=True)
class RenderParams:
    """What a rendered request asks: ``window`` (center, width, function) or None for the
    file's own window; ``viewport`` (width, height) and ``region`` (sx, sy, sw, sh in source
    pixels) or None; ``quality`` 1..100 for JPEG; ``annotation`` the texts to burn in
    (a subset of :data:`ANNOTATIONS`, in that order)."""

    window: Optional[Tuple[float, float, str]] = None
    viewport: Optional[Tuple[int, int]] = None
    region: Optional[Tuple[float, float, float, float]] = None
    quality: int = 90
    annotation: Tuple[str, ...] = ()


def _floats(text: str, name: str) -> list:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise ValueError(f"{name}={text!r}: comma-separated numbers expected") from None
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"{name}={text!r}: numbers must be finite")
    return values


def parse_params(query, thumbnail: bool = False) -> RenderParams:
    """A :class:`RenderParams` of the query parameters (a mapping); ValueError (HTTP 400)
    for malformed values. Thumbnails take ``viewport`` (PS3.18 8.3.5.1.4) and
    ``annotation``."""
    window = viewport = region = None
    quality = 90
    text = query.get("window")
    if text is not None and not thumbnail:
        parts = text.split(",")
        if len(parts) != 3:
            raise ValueError(f"window={text!r}: center,width,function expected")
        center, width = _floats(",".join(parts[:2]), "window")
        function = parts[2].strip().lower()
        if function not in _FUNCTIONS:
            raise ValueError(f"window function {parts[2]!r}: one of {', '.join(_FUNCTIONS)}")
        if width <= 0 or (function == "linear" and width < 1):
            raise ValueError(f"window width {width:g} is too small")
        window = (center, width, function)
    text = query.get("viewport")
    if text is not None:
        values = _floats(text, "viewport")
        if len(values) not in (2, 6):
            raise ValueError(f"viewport={text!r}: vw,vh or vw,vh,sx,sy,sw,sh expected")
        vw, vh = values[:2]
        if not (vw.is_integer() and vh.is_integer() and 1 <= vw <= MAX_SIDE and 1 <= vh <= MAX_SIDE):
            raise ValueError(f"viewport size {vw:g}x{vh:g}: whole numbers 1..{MAX_SIDE}")
        viewport = (int(vw), int(vh))
        if len(values) == 6:
            sx, sy, sw, sh = values[2:]
            if sx < 0 or sy < 0 or sw <= 0 or sh <= 0:
                raise ValueError(f"viewport region {sx:g},{sy:g},{sw:g},{sh:g}: positive sizes "
                                 "from a non-negative origin expected")
            region = (sx, sy, sw, sh)
    elif thumbnail:
        viewport = (THUMBNAIL_SIDE, THUMBNAIL_SIDE)
    text = query.get("quality")
    if text is not None and not thumbnail:
        if not text.isdigit() or not 1 <= int(text) <= 100:
            raise ValueError(f"quality={text!r}: a whole number 1..100")
        quality = int(text)
    return RenderParams(window, viewport, region, quality, _annotation(query.get("annotation")))


def _annotation(text: Optional[str]) -> Tuple[str, ...]:
    if text is None:
        return ()
    asked = {t.strip().lower() for t in text.split(",")}
    unknown = sorted(asked - set(ANNOTATIONS))
    if unknown:
        raise ValueError(f"annotation={text!r}: {', '.join(map(repr, unknown))} unknown "
                         f"(one or more of {', '.join(ANNOTATIONS)})")
    return tuple(a for a in ANNOTATIONS if a in asked)


def voi(values: np.ndarray, center: float, width: float, function: str) -> np.ndarray:
    """uint8 display values by the VOI LUT functions of PS3.3 C.11.2.1.2 and C.11.2.1.3
    (LINEAR as the previews apply it: :func:`dicube.preview.apply_window`)."""
    if function == "linear" and width > 1:
        from ..preview import apply_window

        return apply_window(values, width, center)
    v = np.asarray(values, np.float64)
    if function == "sigmoid":
        y = 255.0 / (1.0 + np.exp(-4.0 * (v - center) / width))
    elif function == "linear-exact":
        y = ((v - center) / width + 0.5) * 255.0
    else:  # LINEAR with a width of 1: a step at the center
        y = np.where(v > center - 0.5, 255.0, 0.0)
    return np.clip(np.rint(y), 0, 255).astype(np.uint8)


def _entry_of(path) -> list:
    """[series, its DicomMeta or None until first needed] of ``path``, from the LRU."""
    from ..preview import open_series

    st = os.stat(path)
    key = (os.fspath(path), st.st_size, st.st_mtime_ns)
    with _lock:
        e = _series.get(key)
        if e is not None:
            _series.move_to_end(key)
            return e
    e = [open_series(os.fspath(path)), None]  # dropped from the LRU unclosed: closes on GC
    with _lock:
        _series[key] = e
        while len(_series) > _SERIES_KEPT:
            _series.popitem(last=False)
    return e


def _meta_of(entry: list):
    if entry[1] is None:
        from ..core.io import meta_from_reader

        entry[1] = meta_from_reader(entry[0].reader) or False
    return entry[1] or None


def _clean(text: str) -> str:
    """Printable Latin-1 (the bitmap font's), at most _LINE_MAX characters."""
    text = "".join(c if c.isprintable() else " " for c in str(text))
    text = text.encode("latin-1", "replace").decode("latin-1")
    return text[:_LINE_MAX - 3] + "..." if len(text) > _LINE_MAX else text


def _number(v) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def annotation_lines(meta, frame: int, annotation: Tuple[str, ...],
                     window: Optional[Tuple[float, float]] = None) -> Tuple[list, list]:
    """(top-left lines, bottom-left lines) of text for ``annotation`` of frame ``frame``
    (``meta`` a :class:`~dicube.dicom.dicom_meta.DicomMeta` or None; ``window`` the
    (center, width) shown, None for colour)."""
    from .index import _value

    def get(keyword: str):
        if meta is None:
            return ""
        from pydicom.datadict import tag_for_keyword

        return _value(meta.get_element(f"{tag_for_keyword(keyword):08X}", frame))

    top: list = []
    bottom: list = []
    if "patient" in annotation:
        name, pid = get("PatientName"), get("PatientID")
        top.append(_clean(str(name).replace("^", " ").strip() or "(no name)"))
        top.append(_clean(f"ID {pid}" if pid != "" else "(no ID)"))
    if "technique" in annotation:
        words = [str(get("Modality")) or "?"]
        series, number = get("SeriesNumber"), get("InstanceNumber")
        if series != "":
            words.append(f"Se {series}")
        if number != "":
            words.append(f"Im {number}")
        bottom.append(_clean("  ".join(words)))
        if window is not None:
            center, width = window
            bottom.append(_clean(f"W {_number(width)}  L {_number(center)}"))
        pos = get("ImagePositionPatient")
        z = str(pos).split("\\")[2] if str(pos).count("\\") == 2 else get("SliceLocation")
        try:
            bottom.append(_clean(f"Z {float(z):.2f} mm"))
        except (TypeError, ValueError):
            pass
    return top, bottom


def _burn(img, top: list, bottom: list) -> None:
    """Draw the lines in white with a black outline (legible on any grey)."""
    from PIL import ImageDraw, ImageFont

    font = getattr(ImageFont, "load_default_imagefont", ImageFont.load_default)()
    draw = ImageDraw.Draw(img)
    white = 255 if img.mode == "L" else (255, 255, 255)
    black = 0 if img.mode == "L" else (0, 0, 0)
    step = font.getbbox("Ag")[3] + 2
    at = [(2, 2 + i * step, t) for i, t in enumerate(top)]
    at += [(2, img.height - 2 - (len(bottom) - i) * step, t) for i, t in enumerate(bottom)]
    for x, y, text in at:
        for dx, dy in ((-1, 0), (1, 0), (0, -1), (0, 1)):
            draw.text((x + dx, y + dy), text, fill=black, font=font)
    for x, y, text in at:
        draw.text((x, y), text, fill=white, font=font)


def _geometry(shape: tuple, p: RenderParams) -> Tuple[tuple, Tuple[int, int]]:
    """(source region (x, y, w, h), output size (w, h)) of a frame of ``shape``."""
    rows, cols = shape[0], shape[1]
    region = p.region or (0.0, 0.0, float(cols), float(rows))
    x, y, w, h = region
    if x >= cols or y >= rows:
        raise ValueError(f"viewport region starts outside the {cols}x{rows} image")
    w, h = min(w, cols - x), min(h, rows - y)
    if p.viewport is None:
        return (x, y, w, h), (max(1, round(w)), max(1, round(h)))
    vw, vh = p.viewport
    scale = min(vw / w, vh / h)  # fit the region inside the viewport, aspect kept
    return (x, y, w, h), (max(1, round(w * scale)), max(1, round(h * scale)))


def render(path, frame: int, p: RenderParams, media: str = "image/jpeg",
           instance: "int | None" = None) -> bytes:
    """Frame ``frame`` of the .dcbs file ``path`` rendered as ``media`` (JPEG or PNG);
    ``instance``: the instance holding it, whose metadata annotates it (default: the
    instance numbered as the frame, as in a series of single-frame instances)."""
    from PIL import Image

    from ..preview import auto_window

    entry = _entry_of(path)
    series = entry[0]
    (x, y, w, h), size = _geometry(series.frame_shape, p)
    rows, cols = series.frame_shape[:2]
    # the decoder may skip wavelet levels while the decoded image stays >= the output
    need_w = max(1, math.ceil(size[0] * cols / w))
    need_h = max(1, math.ceil(size[1] * rows / h))
    (values,) = series.read([frame], need_w, need_h)
    fy, fx = values.shape[0] / rows, values.shape[1] / cols
    box = (x * fx, y * fy, (x + w) * fx, (y + h) * fy)
    colour = values.ndim == 3
    if p.window is not None:
        center, width, function = p.window
    elif colour:
        width, center = series.photometric.full_range()
        function = "linear"
    elif series.embedded_window is not None:
        width, center = series.embedded_window
        function = "linear"
    else:
        width, center = auto_window(values)
        function = "linear"
    chans = [values[..., c] for c in range(values.shape[2])] if colour else [values]
    out = []
    for ch in chans:
        img = Image.fromarray(np.ascontiguousarray(ch, np.float32), mode="F")
        img = img.resize(size, Image.LANCZOS, box=box, reducing_gap=2.0)
        out.append(voi(np.asarray(img), center, width, function))
    shown = np.stack(out, axis=-1) if colour else out[0]
    if series.photometric.inverted:
        shown = np.subtract(255, shown, dtype=np.uint8)
    img = Image.fromarray(shown, "RGB" if colour else "L")
    if p.annotation:
        top, bottom = annotation_lines(_meta_of(entry), frame if instance is None else instance,
                                       p.annotation,
                                       None if colour and p.window is None else (center, width))
        _burn(img, top, bottom)
    buf = io.BytesIO()
    if media == "image/png":
        img.save(buf, "PNG")
    else:
        img.save(buf, "JPEG", quality=p.quality)
    return buf.getvalue()
