"""``dicube info FILE...``: what a .dcbs file holds, read from its head only (no frame is decoded).

With ``--json``, stdout carries one JSON object per line per file (JSON Lines; one file
gives one plain JSON object). Fields (absent information is ``null``):

``path``, ``ok`` (false with ``error`` when the file cannot be read), ``file_bytes``,
``format_version``, ``variant`` ("s", "a" or "l"), ``writer``, ``frame_codec``, ``loss`` (.dcbl
only: ``bound`` and ``units`` of the guaranteed maximum error, ``stored_bound``, ``step``,
``inner_codec``, ``ratio`` raw / stored frames; else null), ``shape`` (array shape as loaded:
slices, rows, columns[, 3]), ``dtype``, ``spacing``/``origin`` (mm, x/y/z = columns/rows/
slices, as ``Space``), ``orientation`` (``x``/``y``/``z`` unit vectors, patient LPS),
``rescale`` (``slope``/``intercept``), ``tags`` (key DICOM attributes, first slice's value),
``qc`` (the QC report stored in the file, else computed from the metadata; its ``source``),
``frames`` (``count``, ``min``/``mean``/``max``/``total`` stored bytes per frame,
``raw_bytes``, ``ratio`` = raw / stored), ``warnings``.

``dicube info --build`` describes this installation's codec instead (see
:func:`dicube.codecs.jph.build_info`): the OpenJPH version compiled against and loaded, its
library file, TLM support (hence .202 or .201) and SIMD level; ``--json`` gives the same fields.
"""
from __future__ import annotations

import json
import os
import sys
from typing import Any, Optional

from ._output import error_message, human_bytes, print_error

CMD = "info"

#: Key DICOM attributes shown, by keyword.
KEY_TAGS = ("PatientID", "PatientName", "PatientSex", "PatientAge", "StudyDate",
            "StudyDescription", "SeriesDescription", "SeriesNumber", "Modality",
            "BodyPartExamined", "Manufacturer", "ManufacturerModelName", "StudyInstanceUID",
            "SeriesInstanceUID", "SliceThickness")


def register(sub) -> None:
    p = sub.add_parser("info", help="show shape, geometry, key tags, QC and frame sizes of .dcbs files",
                       description="Describe .dcbs files from their head (fast: no frame decoded).")
    p.add_argument("files", nargs="*", metavar="FILE", help=".dcbs file")
    p.add_argument("--json", action="store_true",
                   help="one JSON object per file and line on stdout (see the module docs)")
    p.add_argument("--build", action="store_true",
                   help="describe this installation's HTJ2K codec (OpenJPH version, TLM, SIMD)")
    p.set_defaults(func=run)


def _jsonable(v: Any) -> Any:
    if isinstance(v, bytes):
        return f"<{len(v)} bytes>"
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, float) and v != v:
        return None
    return v


def _tags(meta) -> dict:
    out = {}
    for kw in KEY_TAGS:
        try:
            present = kw in meta
        except Exception:  # noqa: BLE001 - keyword unknown to this pydicom
            present = False
        out[kw] = _jsonable(meta.get_values(kw)[0]) if present else None
    return out


def _loss(reader) -> Optional[dict]:
    """What the LOSS section of a .dcbl says (validated; CodecError when inconsistent)."""
    from ..codecs import bounded

    if reader.frame_codec != bounded.CODEC_ID:
        return None
    p = bounded.bind(reader).params
    _, extra = bounded.parse_loss(reader.section_json(bounded.SECTION), p.dtype, p.bits)
    return {"bound": extra["real_bound"], "units": extra["units"], "stored_bound": p.bound,
            "step": p.step, "offset": p.offset, "bits": p.bits, "inner_codec": p.inner,
            "ratio": extra["ratio"]}


def _codec_params(info) -> Optional[dict]:
    """INFO ``codec`` (frame codec parameters recorded at save, e.g. JPEG XL effort), or None."""
    codec = info.get("codec") if isinstance(info, dict) else None
    return codec if isinstance(codec, dict) else None


def describe(path: "os.PathLike[str] | str") -> dict:
    """The ``--json`` object of one file (raises DicomCubeError when it cannot be read)."""
    import numpy as np

    from ..core.io import meta_from_reader, pixel_header_from_reader, space_from_reader
    from ..storage.format import CODEC_NAMES, SEC_INFO, SEC_QC
    from ..storage.reader import DcbsReader

    path = os.fspath(path)
    with DcbsReader(path) as r:
        shape = (r.frame_count,) + tuple(r.frame_shape)
        lengths = np.asarray(r.layout.index["length"], dtype=np.int64)
        info = r.section_json(SEC_INFO) if r.version == 2 else None
        meta = meta_from_reader(r)
        space = space_from_reader(r)
        ph = pixel_header_from_reader(r)
        qc_doc = r.section_json(SEC_QC)
        d: dict = {"path": path, "ok": True, "file_bytes": r.size, "format_version": r.version,
                   "variant": r.layout.header.variant,
                   "writer": (info or {}).get("writer") if isinstance(info, dict) else None,
                   "frame_codec": CODEC_NAMES.get(r.frame_codec, str(r.frame_codec)),
                   "shape": list(shape), "dtype": str(r.dtype), "loss": _loss(r),
                   "codec": _codec_params(info)}
        warnings = list(r.warnings)
    d["spacing"] = list(map(float, space.spacing)) if space is not None else None
    d["origin"] = list(map(float, space.origin)) if space is not None else None
    d["orientation"] = None if space is None else {
        a: list(map(float, getattr(space, f"{a}_orientation"))) for a in "xyz"}
    d["rescale"] = None if ph is None else {"slope": ph.RescaleSlope, "intercept": ph.RescaleIntercept}
    d["tags"] = _tags(meta) if meta is not None else None
    d["metadata_slices"] = len(meta) if meta is not None else None
    if qc_doc is not None:
        d["qc"] = {**qc_doc, "source": "stored"}
    elif meta is not None:
        from ..dicom.dicom_status import check_series

        d["qc"] = {**check_series(meta).to_dict(), "source": "computed"}
    else:
        d["qc"] = None
    raw = int(np.prod(shape)) * np.dtype(d["dtype"]).itemsize
    stored = lengths[lengths > 0]
    total = int(lengths.sum())
    d["frames"] = {"count": int(shape[0]),
                   "min": int(stored.min()) if len(stored) else 0,
                   "mean": float(stored.mean()) if len(stored) else 0.0,
                   "max": int(stored.max()) if len(stored) else 0,
                   "total": total, "raw_bytes": raw,
                   "ratio": round(raw / total, 4) if total else None}
    d["warnings"] = warnings
    return d


def _fmt_vec(v) -> str:
    return "(" + ", ".join(f"{x:.4g}" for x in v) + ")"


def _print_text(d: dict, out) -> None:
    def line(label: str, text) -> None:
        print(f"  {label:<21} {text}", file=out)

    print(d["path"], file=out)
    suffix = {"a": ".dcba", "l": ".dcbl"}.get(d.get("variant"), ".dcbs")
    line("format", f"{suffix} v{d['format_version']}, {d['frame_codec']} frames"
         + (f", written by {d['writer']}" if d.get("writer") else "")
         + f", {human_bytes(d['file_bytes'])}")
    loss = d.get("loss")
    if loss:
        units = "stored units" if loss["units"] == "stored" else loss["units"]
        line("lossy", f"maximum error {loss['bound']:g} {units} on every pixel "
             f"({loss['stored_bound']} stored, steps of {loss['step']}), inner codec "
             f"{loss['inner_codec']}, ratio {loss['ratio']:.2f}x")
    codec = d.get("codec")
    if codec and codec.get("name") == "jxl":  # .dcba frames: as recorded at save
        vs = ""
        if codec.get("htj2k_bytes") and d["frames"]["total"]:
            vs = f", {d['frames']['total'] / codec['htj2k_bytes']:.3f}x the HTJ2K frames of a .dcbs"
        line("codec", f"JPEG XL lossless, effort {codec.get('effort')}, {codec.get('bits')} bits"
             + (f" (signed, offset {codec['signed_offset']})" if codec.get("signed_offset") else "")
             + f", {codec.get('library')}{vs}")
    line("shape", f"{' x '.join(map(str, d['shape']))} (slices x rows x columns), {d['dtype']}")
    if d["spacing"] is not None:
        o = d["orientation"]
        line("spacing", f"{_fmt_vec(d['spacing'])} mm (x, y, z)")
        line("origin", f"{_fmt_vec(d['origin'])} mm")
        line("orientation", f"x {_fmt_vec(o['x'])}  y {_fmt_vec(o['y'])}  z {_fmt_vec(o['z'])}")
    if d["rescale"] is not None:
        s, i = d["rescale"]["slope"], d["rescale"]["intercept"]
        per = isinstance(s, list) or isinstance(i, list)
        line("rescale", "per slice" if per else f"slope {s}, intercept {i}")
    for k, v in (d["tags"] or {}).items():
        if v not in (None, "", []):
            line(k, v)
    if d["qc"] is not None:
        line("QC", f"{d['qc']['status']} ({d['qc']['source']})")
        for issue in d["qc"].get("issues", []):
            print(f"    {issue['status']}: {issue['message']}", file=out)
    f = d["frames"]
    line("frames", f"{f['count']}: {human_bytes(f['min'])} min, {human_bytes(f['mean'])} mean, "
         f"{human_bytes(f['max'])} max; {human_bytes(f['total'])} total for "
         f"{human_bytes(f['raw_bytes'])} raw" + (f" ({f['ratio']:.2f}x)" if f["ratio"] else ""))
    for w in d["warnings"]:
        line("warning", w)


def _print_build(as_json: bool) -> None:
    from ..codecs.jph import build_info

    b = build_info()
    if as_json:
        print(json.dumps(b.to_dict()))
        return
    loaded = "and loaded" if b.runtime_matches else \
        f"; loaded {b.runtime_version or 'unknown'}"
    rows = [("OpenJPH", f"{b.openjph_version} (compiled against {loaded})"),
            ("library", b.library or "unknown"),
            ("TLM markers", f"{'yes' if b.tlm else 'no'} (codestreams meet {b.transfer_syntax})"),
            ("SIMD", b.simd or "unknown"),
            ("assertion guard", b.assert_guard)]
    print("dicube codec build")
    for label, text in rows:
        print(f"  {label:<21} {text}")


def run(args) -> int:
    if args.build:
        _print_build(args.json)
        if args.files and not args.json:
            print()
    elif not args.files:
        print_error(CMD, "give one or more FILEs, or --build")
        return 2
    failed = 0
    for k, path in enumerate(args.files):
        try:
            d = describe(path)
        except Exception as exc:  # noqa: BLE001 - reported per file, the others go on
            failed += 1
            print_error(CMD, exc, path)
            if args.json:
                print(json.dumps({"path": os.fspath(path), "ok": False,
                                  "error": error_message(exc, path)}))
            continue
        if args.json:
            print(json.dumps(d, default=str))
        else:
            if k:
                print()
            _print_text(d, sys.stdout)
    sys.stdout.flush()
    return 1 if failed else 0
