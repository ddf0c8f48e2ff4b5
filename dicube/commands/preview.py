"""``dicube mosaic`` and ``dicube get-image``: series previews as WebP or JPEG.

SOURCE is a .dcbs file, a DICOM series folder (local, ``s3://`` prefix, or ``http(s)://``
folder with a directory index), or, with ``--root``, a series id under ROOT laid out as
``{ROOT}/{id}/...`` or ``{ROOT}/{id}.dcbs`` (full id, 32 hex digits, or a prefix with
``*``); a bare id without ``--root`` is looked up under ``s3://idc-open-data``.
"""
from __future__ import annotations

import logging

from ..windows import ALIASES, PRESETS
from ._output import configure_logging, human_bytes

CONTRAST_HELP = ("a CT window preset, WIDTH,LEVEL in HU (Radiopaedia's typical values): "
                 + ", ".join(f"{k} {w:g},{c:g}" for k, (w, c) in PRESETS.items())
                 + "; also " + ", ".join(f"{a} = {k}" for a, k in ALIASES.items())
                 + " (any case, soft_tissue = soft-tissue); 'auto' (2nd-98th percentile); "
                 "'embedded' (the file's window, else auto; the default; colour images show "
                 "their full range); or WIDTH,CENTER (e.g. 350,50)")
log = logging.getLogger("dicube.preview")


def _common(p, image_width_help: str) -> None:
    p.add_argument("source", metavar="SOURCE", help=".dcbs file, DICOM series folder or URL, "
                   "or a series id with --root")
    p.add_argument("output", metavar="OUTPUT", help="output image (.webp or .jpg)")
    p.add_argument("--root", metavar="ROOT", help="root holding {ROOT}/{SERIES_ID}/... "
                   "(local path, s3:// or http(s)://); SOURCE is then a series id")
    p.add_argument("--series-uid", metavar="UID",
                   help="SeriesInstanceUID to show when the folder holds several series")
    p.add_argument("-w", "--image-width", type=int, default=128, metavar="PIXELS",
                   help=image_width_help)
    p.add_argument("-c", "--contrast", metavar="SPEC", help=CONTRAST_HELP)
    p.add_argument("-q", "--quality", type=int, default=25, metavar="LEVEL",
                   help="output quality 0-100 (default: 25)")
    p.add_argument("-v", "--verbose", action="count", default=0, help="log details to stderr")


def register(sub) -> None:
    m = sub.add_parser("mosaic", help="tile evenly spaced slices of a series into one image",
                       description="Tile evenly spaced slices (superior to inferior, first and last "
                                   "always shown) into a WebP/JPEG mosaic.")
    _common(m, "width of each tile in pixels (default: 128)")
    m.add_argument("-x", "--tile-width", type=int, default=6, metavar="N",
                   help="tiles per row (default: 6)")
    m.add_argument("-y", "--tile-height", type=int, metavar="N",
                   help="tiles per column (default: same as --tile-width)")
    m.add_argument("--start", type=float, default=0.0, metavar="F",
                   help="start of the normalized z range, 0.0 (superior) to 1.0 (default: 0.0)")
    m.add_argument("--end", type=float, default=1.0, metavar="F",
                   help="end of the normalized z range (default: 1.0)")
    m.set_defaults(func=run_mosaic)

    g = sub.add_parser("get-image", help="one slice of a series as an image",
                       description="Extract the slice nearest a normalized z position as WebP/JPEG.")
    _common(g, "width of the image in pixels (default: 128)")
    g.add_argument("-p", "--position", type=float, required=True, metavar="F",
                   help="normalized z position, 0.0 (superior) to 1.0 (inferior)")
    g.add_argument("--slice-offset", type=int, default=0, metavar="N",
                   help="move this many slices from the position (default: 0)")
    g.set_defaults(func=run_get_image)


def _report(p, output: str) -> None:
    shown = sum(1 for s in p.slices if s >= 0)
    log.info("%s -> %s: %dx%d, %d slice(s) %s, window %g/%g (%s), read %s in %d request(s)",
             p.location, output, p.image.size[0], p.image.size[1], shown,
             [s for s in p.slices if s >= 0], p.window[0], p.window[1], p.window_source,
             human_bytes(p.stats.bytes), p.stats.requests)


def run_mosaic(args) -> int:
    from ..preview import mosaic

    configure_logging(args.verbose)
    p = mosaic(args.source, args.output, root=args.root, series_uid=args.series_uid,
               tile_width=args.tile_width, tile_height=args.tile_height,
               image_width=args.image_width, contrast=args.contrast, start=args.start,
               end=args.end, quality=args.quality)
    _report(p, args.output)
    return 0


def run_get_image(args) -> int:
    from ..preview import get_image

    configure_logging(args.verbose)
    p = get_image(args.source, args.output, position=args.position,
                  slice_offset=args.slice_offset, root=args.root, series_uid=args.series_uid,
                  image_width=args.image_width, contrast=args.contrast, quality=args.quality)
    _report(p, args.output)
    return 0
