"""``dicube verify FILE...``: check every checksum of .dcbs files and decode every frame.

Version-2 files: the header, section table and every section checksum (checked on open),
every section decoded and parsed, the bytes no checksum covers (alignment padding) are
zero, metadata/geometry agree with the frame count, and every frame's CRC-32C is
checked and the frame decoded. Version-1 files (dicube 0.3.0) carry no checksums: their
sections are parsed and frames decoded, and the missing checks are reported as warnings.
JPEG XL frames (.dcba) are decoded as well (so verifying one needs the ``archive`` extra;
without it every frame checksum is still checked and the file FAILS with what is missing),
and the codec parameters INFO records must agree with the header.
Prints ``<file>: OK`` or ``<file>: FAILED: <problems>`` per file, then its warnings (not
with ``-q``); exit status 1 when any failed.
"""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from typing import Optional

from ._output import error_message, plural

CMD = "verify"
#: Frames decoded per batch (bounds memory on large series).
BATCH = 32
#: Bad frames listed by name before the rest are only counted.
MAX_LISTED = 10


def register(sub) -> None:
    p = sub.add_parser("verify", help="check every checksum and decode every frame of .dcbs/.dcba files",
                       description="Check the header, section and frame checksums of each FILE "
                                   "and decode all its frames.")
    p.add_argument("files", nargs="+", metavar="FILE", help=".dcbs file")
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help="decoding threads (default: all cores)")
    p.set_defaults(func=run)


@dataclass
class Report:
    """What :func:`verify_file` found in one file."""

    path: str
    version: Optional[int] = None
    frames: int = 0
    sections: int = 0
    problems: list = field(default_factory=list)
    warnings: list = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _reason(exc: BaseException, path: str) -> str:
    """The problem without the ``<path>: `` prefix (the report line names the file)."""
    text = error_message(exc, path)
    return text[len(path) + 2:] if text.startswith(path + ": ") else text


def _check_sections(r, rep: Report) -> Optional[int]:
    """Decode and parse every section; return the number of metadata slices (or None)."""
    from ..core.io import (
        meta_from_reader,
        pixel_header_from_reader,
        qc_report_from_reader,
        space_from_reader,
    )
    from ..storage.format import SEC_INDEX

    for kind in r.sections:
        if kind == SEC_INDEX:
            continue
        try:
            r.section_bytes(kind)  # checksum and decompression
        except Exception as exc:  # noqa: BLE001 - every problem is reported
            rep.problems.append(_reason(exc, r.path))
    _check_info(r, rep)
    meta_slices = None
    for what, parse in (("metadata", meta_from_reader), ("space", space_from_reader),
                        ("pixel header", pixel_header_from_reader),
                        ("QC report", qc_report_from_reader)):
        try:
            value = parse(r)
            if what == "metadata" and value is not None:
                meta_slices = len(value)
            elif what == "space" and value is not None:
                _check_space(value, r, rep)
        except Exception as exc:  # noqa: BLE001
            msg = _reason(exc, r.path)
            if msg not in rep.problems:
                rep.problems.append(f"{what}: {msg}")
    return meta_slices


def _check_info(r, rep: Report) -> None:
    """The INFO section's shape and dtype must be those of the header (version 2)."""
    from ..storage.format import SEC_INFO

    try:
        info = r.section_json(SEC_INFO)
    except Exception as exc:  # noqa: BLE001
        rep.problems.append(f"info: {_reason(exc, r.path)}")
        return
    if not isinstance(info, dict):
        return
    shape = [r.frame_count, *r.frame_shape]
    if "shape" in info and list(info["shape"]) != shape:
        rep.problems.append(f"INFO shape {info['shape']} differs from the header's {shape}")
    if "dtype" in info and str(info["dtype"]) != str(r.dtype):
        rep.problems.append(f"INFO dtype {info['dtype']} differs from the header's {r.dtype}")
    _check_codec_info(info, r, rep)


def _check_codec_info(info: dict, r, rep: Report) -> None:
    """JPEG XL frames: INFO ``codec`` (name, bits, signed offset) agrees with the header."""
    from ..codecs import jxl

    if r.frame_codec != jxl.CODEC_ID:
        return
    codec = info.get("codec")
    if codec is None:
        rep.warnings.append("INFO records no JPEG XL parameters (written before they were)")
        return
    bits = r.layout.header.bits_stored
    want = {"name": jxl.NAME, "bits": bits,
            "signed_offset": (1 << (bits - 1)) if r.dtype.kind == "i" and bits else 0}
    got = {k: codec.get(k) for k in want} if isinstance(codec, dict) else None
    if got != want:
        rep.problems.append(f"INFO codec {got} disagrees with the header ({want})")


def _check_space(space, r, rep: Report) -> None:
    rows, cols = r.frame_shape[:2]
    want = (cols, rows, r.frame_count)
    if tuple(int(s) for s in space.shape) != want:
        rep.problems.append(f"space shape {tuple(space.shape)} does not match the frames "
                            f"(x, y, z) = {want}")


def _check_padding(r, rep: Report) -> None:
    """Bytes outside the header, table, sections and frames (alignment) must be zero."""
    import numpy as np

    from ..storage.format import HEADER_SIZE, SECTION_SIZE

    h = r.layout.header
    spans = [(0, HEADER_SIZE + SECTION_SIZE * h.section_count)]
    spans += [(s.offset, s.offset + s.length) for s in r.sections.values()]
    base = h.frames_offset
    idx = r.layout.index
    spans += [(base + int(o), base + int(o) + int(n)) for o, n in zip(idx["offset"], idx["length"])]
    spans.sort()
    pos = 0
    for start, end in spans + [(r.size, r.size)]:
        if start > pos:
            gap = np.frombuffer(r.pread(start - pos, pos), np.uint8)
            if gap.any():
                rep.problems.append(f"{int(np.count_nonzero(gap))} nonzero byte(s) in unused space "
                                    f"at offset {pos} (no checksum covers it)")
        pos = max(pos, end)


def _decoder_missing(r) -> Optional[str]:
    """Why this installation cannot decode the file's frames (CodecUnavailableError), or None."""
    from ..codecs import jxl
    from ..exceptions import CodecUnavailableError

    if r.frame_codec != jxl.CODEC_ID:
        return None
    try:
        jxl.backend()
    except CodecUnavailableError as exc:
        return exc.reason
    return None


def _check_crcs(r, rep: Report) -> None:
    """Every frame's checksum, without decoding."""
    bad = []
    for i in range(r.frame_count):
        try:
            r.codestream(i)
        except Exception as exc:  # noqa: BLE001
            bad.append(_reason(exc, r.path))
    rep.problems.extend(bad[:MAX_LISTED])
    if len(bad) > MAX_LISTED:
        rep.problems.append(f"... {len(bad) - MAX_LISTED} more bad frame(s)")


def _check_frames(r, rep: Report, num_threads: Optional[int]) -> None:
    import numpy as np

    missing = _decoder_missing(r)
    if missing is not None:
        _check_crcs(r, rep)
        rep.problems.append(f"frames not decoded (their checksums were checked): {missing}")
        return
    n = r.frame_count
    bad: list[str] = []
    count_bad = 0
    buf = None
    for start in range(0, n, BATCH):
        sel = np.arange(start, min(n, start + BATCH))
        if buf is None or len(buf) != len(sel):
            buf = np.empty((len(sel),) + tuple(r.frame_shape), r.dtype)
        try:
            r.read_frames(sel, out=buf, num_threads=num_threads)
            continue
        except Exception:  # noqa: BLE001 - find which frames of the batch are bad
            pass
        one = np.empty((1,) + tuple(r.frame_shape), r.dtype)
        for i in sel.tolist():
            try:
                r.read_frames([i], out=one, num_threads=1)
            except Exception as exc:  # noqa: BLE001
                count_bad += 1
                if len(bad) < MAX_LISTED:
                    msg = _reason(exc, r.path).replace(f"cannot decode frames: frame {i}: ",
                                                       "cannot decode: ")
                    bad.append(msg if f"frame {i}" in msg else f"frame {i}: {msg}")
    rep.problems.extend(bad)
    if count_bad > len(bad):
        rep.problems.append(f"... {count_bad - len(bad)} more bad frame(s)")


def verify_file(path: "os.PathLike[str] | str", num_threads: Optional[int] = None) -> Report:
    """Check one file completely; never raises for a bad file (see :class:`Report`)."""
    from ..storage.reader import DcbsReader

    rep = Report(os.fspath(path))
    try:
        r = DcbsReader(rep.path)  # v2: header, table and section checksums verified here
    except Exception as exc:  # noqa: BLE001
        rep.problems.append(_reason(exc, rep.path))
        return rep
    with r:
        rep.version, rep.frames, rep.sections = r.version, r.frame_count, len(r.sections)
        meta_slices = _check_sections(r, rep)
        rep.warnings.extend(w for w in r.warnings if w not in rep.warnings)
        if meta_slices and r.frame_count % meta_slices:
            rep.problems.append(f"{meta_slices} metadata slices for {r.frame_count} frames")
        if r.version == 2:
            _check_padding(r, rep)
        _check_frames(r, rep, num_threads)
    return rep


def run(args) -> int:
    failed = 0
    for path in args.files:
        rep = verify_file(path, args.threads)
        if rep.ok:
            what = "all checksums match" if rep.version == 2 else "no checksums to check"
            print(f"{rep.path}: OK (v{rep.version}, {plural(rep.frames, 'frame')} decoded, "
                  f"{plural(rep.sections, 'section')}; {what})")
        else:
            failed += 1
            print(f"{rep.path}: FAILED: " + "; ".join(rep.problems))
        for w in [] if getattr(args, "quiet", False) else rep.warnings:
            print(f"{rep.path}: warning: {w}")
        sys.stdout.flush()
    return 1 if failed else 0
