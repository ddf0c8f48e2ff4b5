"""Reading DICOM series: discovery, parallel parsing, slice ordering, pixel stacking.

Every file is read and parsed once (header and pixels in the same pass, in threads);
pixels are written straight into one preallocated volume, which is then put in slice
order in place.

No file that may hold a slice is dropped in silence. Folder entries fall in four kinds:
regular files that parse (read); files that are not DICOM at all (no "DICM" prefix, no
parsable header: counted, ignored); files that look like DICOM, or cannot be opened, but
cannot be read completely ("unreadable": an error, or skipped on request and recorded in
the QC report); entries that are not regular files after following symbolic links (FIFOs,
sockets, devices: never opened, reported). Symbolic links to files and folders are
followed, each folder walked and each file read once (see :func:`_scan`). Identical copies
of an instance (same SOPInstanceUID, same bytes) are read once and reported; different
files under one SOPInstanceUID are refused.
"""
from __future__ import annotations

import errno
import json
import os
import stat
import warnings
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Optional, Union

import numpy as np

from ..exceptions import (
    DamagedDicomError,
    DataConsistencyError,
    DicomReadError,
    DuplicateInstanceError,
    InconsistentSeriesError,
    MultipleSeriesError,
    SkippedFileWarning,
    UnreadableFilesError,
)
from ..storage.listing import SkippedFile, _kind, _os_reason, _scan, list_files
from . import geometry
from .dicom_meta import DicomMeta
from .file_parser import (
    NotDicomError,
    ParsedFile,
    decode_pixels,
    frame_count,
    incomplete,
    parse_bytes,
)

__all__ = ["SeriesInfo", "DiscoveryResult", "SkippedFile", "discover_series",
           "read_dicom_series", "load_from_dicom_folder", "list_files", "ON_UNREADABLE"]

#: values of ``on_unreadable``: raise UnreadableFilesError, or read the rest and report
ON_UNREADABLE = ("error", "skip")
SKIP_HINT = "pass on_unreadable='skip' to read the rest"
SOP_UID = "00080018"

PathLike = Union[str, "os.PathLike[str]"]
DICOMDIR_CLASS = "1.2.840.10008.1.3.10"
SERIES_UID, SERIES_DESC, MODALITY = "0020000E", "0008103E", "00080060"
ROWS, COLS = "00280010", "00280011"
#: how a file stores its pixels: files differing in any of these cannot share a volume
PIXEL_FORMAT_TAGS = {"SamplesPerPixel": "00280002", "PhotometricInterpretation": "00280004",
                     "BitsAllocated": "00280100", "PixelRepresentation": "00280103"}
#: ``SeriesInfo.split_by`` of a multi-frame file split off a series of several files
MULTI_FRAME = "NumberOfFrames"
#: tags tried, in order, to separate several volumes sharing the same positions
VOLUME_SPLIT_TAGS = {
    "EchoNumbers": "00180086", "EchoTime": "00180081", "DiffusionBValue": "00189087",
    "TemporalPositionIdentifier": "00200100", "TriggerTime": "00181060",
    "AcquisitionNumber": "00200012", "ImageType": "00080008", "AcquisitionTime": "00080032",
    "ContentTime": "00080033",
}


@dataclass
class SeriesInfo:
    """One series (or one volume of a split series) found in a folder."""

    key: str                     # unique id: the SeriesInstanceUID, or "<uid>#<n>" when split
    series_uid: str
    description: str
    modality: str
    files: list[str]
    rows: Optional[int] = None
    columns: Optional[int] = None
    orientation: Optional[list[float]] = None
    split_by: Optional[str] = None  # why this series was split off (tag keyword or "geometry")
    has_pixels: bool = True

    @property
    def num_files(self) -> int:
        return len(self.files)

    def summary(self) -> dict:
        return {"key": self.key, "series_uid": self.series_uid, "count": self.num_files,
                "description": self.description, "modality": self.modality,
                "rows": self.rows, "columns": self.columns, "split_by": self.split_by}


@dataclass
class DiscoveryResult:
    """Series found by :func:`discover_series`.

    ``non_dicom``: files that are not DICOM at all (counted, not read); ``unreadable``:
    files that look like DICOM (or cannot be opened or listed) but cannot be read
    completely; ``not_regular``: FIFOs, sockets, devices (never opened); ``duplicates``:
    identical copies of an instance left out of their series (the reason names the copy kept);
    ``aliases``: other paths (symbolic or hard links) to a file already listed, which is read
    once under its first path and is no duplicate.
    """

    series: list[SeriesInfo]
    non_dicom: list[str] = field(default_factory=list)
    unreadable: list[SkippedFile] = field(default_factory=list)
    not_regular: list[SkippedFile] = field(default_factory=list)
    duplicates: list[SkippedFile] = field(default_factory=list)
    aliases: list[SkippedFile] = field(default_factory=list)

    @property
    def num_non_dicom(self) -> int:
        return len(self.non_dicom)

    def __iter__(self):
        return iter(self.series)

    def __len__(self) -> int:
        return len(self.series)

    def __getitem__(self, i: int) -> SeriesInfo:
        return self.series[i]


def _threads(num_threads: Optional[int]) -> int:
    return max(1, num_threads or min(8, (os.cpu_count() or 2) * 2))


_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_BINARY", 0) | getattr(os, "O_CLOEXEC", 0) \
    | getattr(os, "O_NONBLOCK", 0)  # a FIFO swapped in after the listing must not block


def _read(path: str) -> bytes:
    """The bytes of a regular file (OSError for anything else)."""
    fd = os.open(path, _OPEN_FLAGS)
    with open(fd, "rb") as fh:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise OSError(errno.EINVAL, f"not a regular file ({_kind(mode)})", path)
        return fh.read()


@dataclass
class _Item:
    pf: Optional[ParsedFile]
    problem: Optional[str] = None        # why the file cannot be read completely
    slot: int = -1                       # slice of the shared volume holding its pixels
    array: Optional[np.ndarray] = None   # pixels kept separately (shape/dtype differ)


def _parse(path: str) -> tuple[Optional[_Item], Optional[bytes], object]:
    """Read and parse one file: (item, bytes, pydicom dataset or None). The item is None
    for a file that is not DICOM at all; ``item.problem`` says why a file that looks like
    DICOM (or cannot be opened) cannot be read completely."""
    try:
        buf = _read(path)
    except OSError as exc:
        return _Item(None, _os_reason(exc)), None, None
    try:
        pf, ds = parse_bytes(path, buf)
    except NotDicomError:
        if not buf and not os.path.basename(path).startswith("."):
            return _Item(None, "empty file (0 bytes)"), None, None
        return None, None, None
    except DamagedDicomError as exc:
        return _Item(None, exc.reason), None, None
    except Exception as exc:  # noqa: BLE001 - never an untyped error out of a damaged file
        return _Item(None, f"cannot parse: {type(exc).__name__}: {exc}"), None, None
    return _Item(pf, incomplete(pf, len(buf))), buf, ds


def _parse_header(path: str) -> Optional[_Item]:
    """The parsed header of a file for discovery (see :func:`_parse`)."""
    return _parse(path)[0]


def _series_uid(pf: ParsedFile) -> str:
    v = pf.value(SERIES_UID, "")
    return str(v).rstrip("\x00 ") if isinstance(v, str) else ""


def _is_image(pf: ParsedFile) -> bool:
    sop = pf.value("00020002", "")
    return pf.pixel_tag is not None or (sop != DICOMDIR_CLASS and ROWS in pf.header)


def _group_series(parsed: list[ParsedFile]) -> list[tuple[SeriesInfo, list[ParsedFile]]]:
    """Group files by SeriesInstanceUID, split by geometry (rows/columns, orientation),
    by volume when several volumes share the same slice positions, and each multi-frame
    file of a series of several files into its own part (a .dcbs holds either one
    multi-frame file or single-frame slices; several cine loops under one
    SeriesInstanceUID are common in ultrasound)."""
    by_key: dict = defaultdict(list)
    for pf in parsed:
        iop = geometry.orientation(pf.header)
        ori = None if iop is None else tuple(np.round(iop, 3).tolist())
        by_key[(_series_uid(pf), pf.value(ROWS), pf.value(COLS), ori)].append(pf)
    by_uid: dict = defaultdict(list)
    for (uid, rows, cols, ori), pfs in by_key.items():
        by_uid[uid].append(((rows, cols, ori), pfs))
    result = []
    for uid in sorted(by_uid):
        parts = []
        geo_split = len(by_uid[uid]) > 1
        for (rows, cols, ori), pfs in sorted(by_uid[uid], key=lambda p: -len(p[1])):
            multi = [pf for pf in pfs if frame_count(pf) > 1] if len(pfs) > 1 else []
            single = [pf for pf in pfs if frame_count(pf) <= 1] if multi else pfs
            for reason, vol in _split_volumes(single) if single else []:
                parts.append((rows, cols, ori, reason or ("geometry" if geo_split else None), vol))
            parts += [(rows, cols, ori, MULTI_FRAME, [pf])
                      for pf in sorted(multi, key=lambda p: p.path)]
        for n, (rows, cols, ori, reason, pfs) in enumerate(parts):
            first = pfs[0]
            info = SeriesInfo(
                key=uid if len(parts) == 1 else f"{uid}#{n + 1}",
                series_uid=uid,
                description=str(first.value(SERIES_DESC, "") or ""),
                modality=str(first.value(MODALITY, "") or ""),
                files=[pf.path for pf in pfs], rows=rows, columns=cols,
                orientation=list(ori) if ori else None, split_by=reason,
                has_pixels=any(pf.pixel_tag for pf in pfs))
            result.append((info, pfs))
    return result


def _split_volumes(pfs: list[ParsedFile]) -> list[tuple[Optional[str], list[ParsedFile]]]:
    """Split files holding k volumes at the same positions (multi-echo, diffusion...)."""
    pos = [geometry.position(pf.header) for pf in pfs]
    if len(pfs) < 2 or any(p is None for p in pos):
        return [(None, pfs)]
    keys = [tuple(np.round(p, 3).tolist()) for p in pos]
    counts = Counter(keys)
    k = next(iter(counts.values()))
    if k < 2 or any(c != k for c in counts.values()):
        return [(None, pfs)]
    for name, tag in VOLUME_SPLIT_TAGS.items():
        groups: dict = defaultdict(list)
        for pf in pfs:
            groups[json.dumps(pf.header.get(tag), sort_keys=True)].append(pf)
        if len(groups) == k and all(len({tuple(np.round(geometry.position(p.header), 3))
                                         for p in g}) == len(g) == len(counts)
                                    for g in groups.values()):
            return [(name, g) for _, g in sorted(groups.items())]
    return [(None, pfs)]


def _same_bytes(a: str, b: str) -> bool:
    try:
        return os.path.getsize(a) == os.path.getsize(b) and _read(a) == _read(b)
    except OSError:
        return False


def _dedupe(pfs: list[ParsedFile]) -> tuple[list[ParsedFile], list[tuple[str, str]],
                                             dict[str, list[str]]]:
    """Files sharing a SOPInstanceUID: identical copies after the first (in path order)
    are left out, returned as (copy, kept); different files are returned as conflicts
    (path -> the other paths). Only colliding files are compared, byte for byte."""
    by_uid: dict = defaultdict(list)
    for pf in pfs:
        uid = pf.value(SOP_UID)
        if isinstance(uid, str) and uid.strip("\x00 "):
            by_uid[uid.strip("\x00 ")].append(pf)
    dropped: dict[str, str] = {}
    conflicts: dict[str, list[str]] = defaultdict(list)
    for group in by_uid.values():
        if len(group) < 2:
            continue
        group.sort(key=lambda p: p.path)
        kept: list[ParsedFile] = []
        for pf in group:
            same = next((k for k in kept if _same_bytes(k.path, pf.path)), None)
            if same is not None:
                dropped[pf.path] = same.path
                continue
            for k in kept:
                conflicts[k.path].append(pf.path)
                conflicts[pf.path].append(k.path)
            kept.append(pf)
    if not dropped:
        return pfs, [], dict(conflicts)
    return [pf for pf in pfs if pf.path not in dropped], sorted(dropped.items()), dict(conflicts)


def discover_series(folder: PathLike, recursive: bool = True,
                    num_threads: Optional[int] = None) -> DiscoveryResult:
    """List the series in a folder tree (headers parsed once, in parallel threads).

    Series are keyed by SeriesInstanceUID and split when geometry differs or when several
    volumes share the same positions. Nothing is dropped in silence: non-DICOM files are
    counted, damaged or unreadable ones, non-regular entries and identical duplicates
    listed (see :class:`DiscoveryResult`); a damaged file does not hide the other series.
    """
    listing = _scan(folder, recursive)
    files = listing.files
    with ThreadPoolExecutor(_threads(num_threads)) as ex:
        parsed = list(ex.map(_parse_header, files))
    non_dicom = [f for f, it in zip(files, parsed) if it is None]
    unreadable = list(listing.unreadable)
    unreadable += [SkippedFile(f, it.problem, _series_uid(it.pf) if it.pf else "")
                   for f, it in zip(files, parsed) if it is not None and it.problem]
    images = [it.pf for it in parsed if it is not None and not it.problem and _is_image(it.pf)]
    images, duplicates, _ = _dedupe(images)
    return DiscoveryResult([info for info, _ in _group_series(images)], non_dicom,
                           sorted(unreadable), listing.not_regular,
                           [SkippedFile(p, f"identical copy of {k}") for p, k in duplicates],
                           listing.aliases)


def _select(groups: list, series_uid: Optional[str], folder: str):
    candidates = [g for g in groups if g[0].has_pixels] or groups
    if series_uid is not None:
        chosen = [g for g in groups if g[0].key == series_uid] or \
                 [g for g in groups if g[0].series_uid == series_uid]
        if not chosen and "#" in series_uid:
            # a part numbered in a larger tree ("<uid>#2" of a root): in a folder that
            # holds a single part of that series, that part is the one
            same = [g for g in groups if g[0].series_uid == series_uid.split("#")[0]]
            chosen = same if len(same) == 1 else []
        if not chosen:
            raise DicomReadError(f"series {series_uid} not found; found: "
                                 + ", ".join(g[0].key for g in groups), folder)
        candidates = chosen
    if len(candidates) > 1:
        listing = "; ".join(_part_text(g[0], folder) for g in candidates)
        raise MultipleSeriesError(f"{len(candidates)} series found, pick one with "
                                  f"series_uid=: {listing}", folder,
                                  series=[g[0].summary() for g in candidates])
    return candidates[0]


def _part_text(info: SeriesInfo, folder: str) -> str:
    """``key (n files, 'description')``, with why it was split and its file when it has one."""
    what = [_files(info.num_files), repr(info.description)]
    if info.split_by:
        what.append(f"split by {info.split_by}")
    if info.num_files == 1:
        what.append(_rel(info.files[0], folder))
    return f"{info.key} ({', '.join(what)})"


def _rel(path: str, folder: str) -> str:
    """``path`` relative to ``folder`` when it lies under it."""
    root = folder if os.path.isdir(folder) else os.path.dirname(folder)
    return os.path.relpath(path, root) if path.startswith(root.rstrip(os.sep) + os.sep) else path


def _check_pixel_format(info: SeriesInfo, pfs: list[ParsedFile], folder: str) -> None:
    """Refuse a series whose files store their pixels differently (InconsistentSeriesError
    naming each differing attribute, its values and their files)."""
    def norm(v):
        v = v[0] if isinstance(v, list) and len(v) == 1 else v
        return v.strip("\x00 ") if isinstance(v, str) else v

    differing: dict = {}
    fields = dict(PIXEL_FORMAT_TAGS, PixelDataElement=None)
    for name, tag in fields.items():
        by_value: dict = defaultdict(list)
        for pf in pfs:
            v = pf.pixel_tag if tag is None else norm(pf.value(tag))
            by_value["(absent)" if v in (None, "") else str(v)].append(pf.path)
        if len(by_value) > 1:
            differing[name] = dict(sorted(by_value.items(), key=lambda kv: -len(kv[1])))
    if not differing:
        return

    def names(paths: list[str], limit: int = 5) -> str:
        shown = ", ".join(_rel(p, folder) for p in paths[:limit])
        return shown + (f", ... ({len(paths)} in all)" if len(paths) > limit else "")

    text = "; ".join(f"{name} " + " vs ".join(f"{v} ({names(ps)})" for v, ps in d.items())
                     for name, d in differing.items())
    raise InconsistentSeriesError(
        f"series {info.key}: its files cannot be stacked, they store pixels differently: {text}",
        folder, differing)


def _permute_in_place(vol: np.ndarray, perm: list[int]) -> None:
    """Reorder ``vol`` so that new[k] = old[perm[k]], with one slice of extra memory."""
    done = [False] * len(perm)
    for start in range(len(perm)):
        if done[start] or perm[start] == start:
            done[start] = True
            continue
        tmp = vol[start].copy()
        k = start
        while True:
            done[k] = True
            src = perm[k]
            if src == start:
                vol[k] = tmp
                break
            vol[k] = vol[src]
            k = src


def _files(n: int) -> str:
    return f"{n} file{'s' if n != 1 else ''}"


def _listing_names(entries: list, limit: int = 20) -> str:
    text = "; ".join(f"{e[0]}: {e[1]}" for e in entries[:limit])
    return text + (f"; ... ({len(entries)} in all)" if len(entries) > limit else "")


def read_dicom_series(folder: PathLike, *, series_uid: Optional[str] = None,
                      num_threads: Optional[int] = None, recursive: bool = True,
                      on_unreadable: str = "error"
                      ) -> tuple[np.ndarray, DicomMeta, list[int]]:
    """Read one series: (volume in slice order, DicomMeta in slice order, frames per file).

    Raises DicomReadError (nothing readable), MultipleSeriesError (several series and no
    ``series_uid``), DataConsistencyError (slices that cannot be stacked),
    DuplicateInstanceError (different files under one SOPInstanceUID) or, unless
    ``on_unreadable="skip"``, UnreadableFilesError naming every file that may belong to
    the series but cannot be read completely. Files skipped and identical copies left out
    are recorded in ``meta.read_report`` (see :func:`dicube.dicom.dicom_status.check_series`).
    """
    if on_unreadable not in ON_UNREADABLE:
        raise ValueError(f"on_unreadable must be one of {ON_UNREADABLE}, got {on_unreadable!r}")
    folder_s = os.fspath(folder)
    listing = _scan(folder_s, recursive)
    files = listing.files
    for entry in listing.not_regular:
        warnings.warn(f"{entry.path}: skipped, {entry.reason}", SkippedFileWarning, stacklevel=3)
    if not files and not listing.unreadable:
        if listing.not_regular:
            raise DicomReadError("no regular file in the folder: "
                                 + _listing_names(listing.not_regular), folder_s)
        raise DicomReadError("folder is empty", folder_s)

    def wanted(pf: ParsedFile) -> bool:
        if pf.pixel_tag is None or not _is_image(pf):
            return False
        return series_uid is None or _series_uid(pf) == series_uid.split("#")[0]

    items: list[Optional[_Item]] = [None] * len(files)
    state: dict = {}

    def work(i: int) -> None:
        item, buf, ds = _parse(files[i])
        items[i] = item
        if item is None or item.problem or not wanted(item.pf):
            return
        try:
            arr = decode_pixels(item.pf, buf, ds)
        except Exception as exc:  # noqa: BLE001 - decoder failures of any plugin
            item.problem = f"cannot decode pixel data: {exc}"
            return
        vol = state.get("vol")
        if vol is not None and arr.shape[0] == 1 and arr.shape[1:] == vol.shape[1:] \
                and arr.dtype == vol.dtype:
            vol[i] = arr[0]
            item.slot = i
        else:
            item.array = arr if arr.flags.owndata else arr.copy()

    # parse files until one yields pixels: it fixes the volume's slice shape and dtype
    start = 0
    while start < len(files):
        work(start)
        it = items[start]
        start += 1
        if it is not None and it.array is not None:
            if it.array.shape[0] == 1:
                state["vol"] = np.empty((len(files),) + it.array.shape[1:], it.array.dtype)
                state["vol"][start - 1] = it.array[0]
                it.slot, it.array = start - 1, None
            break
    if start < len(files):
        with ThreadPoolExecutor(_threads(num_threads)) as ex:
            list(ex.map(work, range(start, len(files))))

    good = [it for it in items if it is not None and not it.problem and _is_image(it.pf)]
    pfs_all, dropped, conflicts = _dedupe([it.pf for it in good])
    groups = _group_series(pfs_all)
    # a file whose series is unknown may belong to any series; with no series asked for,
    # a damaged file of another series would have been a reason to refuse (several series)
    bad = list(listing.unreadable) + [
        SkippedFile(f, it.problem) for f, it in zip(files, items)
        if it is not None and it.problem and (
            series_uid is None or it.pf is None or _series_uid(it.pf) in
            ("", series_uid.split("#")[0]))]
    if not groups:
        if bad:
            raise UnreadableFilesError(
                f"no readable DICOM image; {_files(len(bad))} cannot be read: "
                f"{_listing_names(bad)}", folder_s, [b[:2] for b in bad])
        raise DicomReadError(f"no DICOM image found ({len(files)} files)", folder_s)
    info, pfs = _select(groups, series_uid, folder_s)
    if not info.has_pixels:
        raise DicomReadError(f"series {info.key} has no pixel data", folder_s)
    if bad and on_unreadable == "error":
        raise UnreadableFilesError(
            f"{_files(len(bad))} that may hold slices cannot be read ({SKIP_HINT}): "
            f"{_listing_names(bad)}", folder_s, [b[:2] for b in bad])
    # one SOPInstanceUID in two series is another series' problem; within this one, refuse
    same_series = {pf.path for pf in pfs_all if _series_uid(pf) == info.series_uid}
    clash = sorted({(min(a, b), max(a, b)) for a in (pf.path for pf in pfs)
                    for b in conflicts.get(a, []) if b in same_series})
    if clash:
        raise DuplicateInstanceError(
            f"{len(clash)} pairs of different files share a SOPInstanceUID: "
            + "; ".join(f"{a} and {b}" for a, b in clash[:20]), folder_s, clash)
    _check_pixel_format(info, [pf for pf in pfs if pf.pixel_tag is not None], folder_s)
    if bad:
        warnings.warn(f"{folder_s}: skipped {_files(len(bad))} that cannot be read: "
                      f"{_listing_names(bad)}",
                      SkippedFileWarning, stacklevel=3)
    series_paths = {pf.path for pf in pfs}
    dropped = [(p, k) for p, k in dropped if k in series_paths]

    by_path = {it.pf.path: it for it in good}
    pfs = [pf for pf in pfs if pf.pixel_tag is not None]
    order = geometry.sort_order([pf.header for pf in pfs])
    chosen = [by_path[pfs[k].path] for k in order]

    volume = _assemble(state.get("vol"), chosen, len(files), folder_s)
    frames = [frame_count(it.pf) for it in chosen]
    root = folder_s if os.path.isdir(folder_s) else os.path.dirname(folder_s)
    names = [os.path.relpath(it.pf.path, root) for it in chosen]
    slice_info = []
    for it in chosen:
        d = {"pixel_tag": it.pf.pixel_tag, "pixel_vr": it.pf.pixel_vr}
        if it.pf.preamble:
            import base64
            d["preamble"] = base64.b64encode(it.pf.preamble).decode("ascii")
        slice_info.append(d)
    meta = DicomMeta.from_json_headers([it.pf.header for it in chosen], names, slice_info)
    rel = lambda p: os.path.relpath(p, root) if p.startswith(root + os.sep) else p  # noqa: E731
    meta.read_report = {"unreadable": [[rel(b.path), b.reason] for b in bad],
                        "duplicates": [[rel(p), rel(k)] for p, k in dropped]}
    return volume, meta, frames


def _assemble(vol: Optional[np.ndarray], chosen: list[_Item], n_files: int,
              folder: str) -> np.ndarray:
    if vol is not None and all(it.slot >= 0 for it in chosen):
        perm = [it.slot for it in chosen]
        if len(perm) == n_files:
            _permute_in_place(vol, perm)
            return vol
        return vol[perm]
    arrays = [vol[it.slot][np.newaxis] if it.slot >= 0 else it.array for it in chosen]
    shapes = Counter(a.shape[1:] for a in arrays)
    dtypes = Counter(str(a.dtype) for a in arrays)
    if len(shapes) > 1 or len(dtypes) > 1:
        common_shape, common_dtype = shapes.most_common(1)[0][0], dtypes.most_common(1)[0][0]
        odd = [_rel(it.pf.path, folder) for it, a in zip(chosen, arrays)
               if a.shape[1:] != common_shape or str(a.dtype) != common_dtype]
        raise DataConsistencyError(
            f"slices cannot be stacked: shapes {dict(shapes)}, dtypes {dict(dtypes)}; "
            f"differing files: {', '.join(odd[:20])}", folder)
    return np.concatenate(arrays, axis=0)


def load_from_dicom_folder(folder: PathLike, *, series_uid: Optional[str] = None,
                           num_threads: Optional[int] = None, recursive: bool = True,
                           on_unreadable: str = "error"):
    """Load a DICOM series (folder, or a single/multi-frame file) as a DicomCubeImage.

    ``raw_image`` holds the stored values (dtype of pydicom's ``pixel_array``), shape
    (slices, rows, columns) (``(..., 3)`` for color), slices sorted along the slice
    normal (InstanceNumber as fallback); multi-frame files keep their frame order.
    ``space`` follows spacetransformer's (x, y, z) = (columns, rows, slices) convention
    (see :mod:`dicube.dicom.geometry`). ``series_uid`` picks a series (or a split part,
    by its ``SeriesInfo.key``) when the folder holds several.

    A file that looks like DICOM (or cannot be opened) but cannot be read completely is
    never dropped in silence: by default UnreadableFilesError names every such file and
    why; ``on_unreadable="skip"`` reads the rest and records the skipped files in the
    QC report (status UNREADABLE_FILES). Identical copies of an instance are read once
    (QC DUPLICATE_FILES); different files under one SOPInstanceUID raise
    DuplicateInstanceError. FIFOs, sockets and devices are never opened (SkippedFileWarning).
    Slices naming different patients or studies load (nothing is lost), with QC status
    NON_UNIFORM_PATIENT / NON_UNIFORM_STUDY_UID; ``dicube convert`` refuses such a series
    unless ``--allow-mixed-identity``.
    """
    from ..core.image import DicomCubeImage

    volume, meta, frames = read_dicom_series(folder, series_uid=series_uid,
                                             num_threads=num_threads, recursive=recursive,
                                             on_unreadable=on_unreadable)
    if len(meta) == 1 and volume.shape[0] > 1:
        volume = _ascending_frames(meta, volume)
    return DicomCubeImage(volume, pixel_header_from_meta(meta, volume),
                          meta, space_from_meta(meta, volume.shape, frames))


def _ascending_frames(meta: DicomMeta, volume: np.ndarray) -> np.ndarray:
    """Reverse the frames of an enhanced multi-frame volume stored in descending position
    order, so that z spacing is positive; recorded as ``slice_info[0]["frame_order"] =
    "reversed"`` (a writer restores the file order by reversing again)."""
    pos, iop, _ = geometry.frame_geometry(meta.slice_json(0), volume.shape[0])
    if pos is None or iop is None:
        return volume
    proj = pos @ geometry.slice_normal(iop)
    if len(proj) > 1 and np.all(np.diff(proj) < 0):
        meta.slice_info[0]["frame_order"] = "reversed"
        return volume[::-1].copy()
    return volume


def pixel_header_from_meta(meta: DicomMeta, volume: np.ndarray):
    """PixelDataHeader (rescale per slice when it varies, window, dtype) for a volume."""
    from ..core.pixel_header import PixelDataHeader

    def per_slice(tag: str, default: float):
        if meta.is_shared(tag):
            v = meta.get_shared_value(tag)
            return float(v[0] if isinstance(v, list) else v) if v not in (None, "") else default
        vals = meta.get_values(tag)
        if all(v in (None, "") for v in vals):
            return default
        out = [float((v[0] if isinstance(v, list) else v)) if v not in (None, "") else default
               for v in vals]
        return out if len(out) == volume.shape[0] else out[0]

    def first(tag: str) -> Optional[float]:
        v = meta.get_values(tag)[0] if len(meta) else None
        v = v[0] if isinstance(v, list) and v else v
        return float(v) if isinstance(v, (int, float)) else None

    dt = str(volume.dtype)
    return PixelDataHeader(
        RescaleSlope=per_slice("00281053", 1.0), RescaleIntercept=per_slice("00281052", 0.0),
        OriginalPixelDtype=dt, PixelDtype=dt,
        WindowCenter=first("00281050"), WindowWidth=first("00281051"))


def space_from_meta(meta: DicomMeta, shape: tuple, frames: Optional[list[int]] = None):
    """spacetransformer Space of a volume described by ``meta`` (see geometry module)."""
    nz, ny, nx = shape[0], shape[1], shape[2]
    if len(meta) == 1 and nz > 1:  # enhanced multi-frame
        pos, iop, spacing = geometry.frame_geometry(meta.slice_json(0), nz)
        if pos is not None and meta.slice_info[0].get("frame_order") == "reversed":
            pos = pos[::-1]
    else:
        h0 = meta.slice_json(0)
        iop = geometry.orientation(h0)
        spacing = geometry.floats(h0.get(geometry.PIXEL_SPACING), 2)
        p = meta.get_array("00200032")
        pos = p if p.ndim == 2 and p.shape[1] == 3 and np.all(np.isfinite(p)) else None
        if pos is not None and len(pos) != nz:
            pos = None
    step = None
    h0 = meta.slice_json(0)
    for tag in (geometry.BETWEEN, geometry.THICKNESS):
        v = geometry.floats(h0.get(tag))
        if v is not None and v.size:
            step = float(v[0])
            break
    try:
        return geometry.build_space((nz, ny, nx), pos, iop, spacing, step)
    except Exception:  # invalid geometry: identity space rather than failing the load
        return geometry.build_space((nz, ny, nx), None, None, spacing, step)
