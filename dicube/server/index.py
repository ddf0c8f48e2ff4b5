"""The archive index: patient, study, series and instance attributes of every .dcbs (.dcba,
.dcbl) file under a folder, read from the files' heads only (never a frame).

:class:`ArchiveIndex` lists the folder with :mod:`dicube.storage.listing`, reads the head
of each new or changed file (size and modification time differ) and keeps compact
records: per series one tuple of study and series values, per instance its SOP Instance
UID and the few values that differ between instances. A query swaps nothing: each
refresh builds a new immutable view and publishes it with one assignment, so readers
never lock. A file that cannot be indexed is logged once and listed in :meth:`errors`,
with the study it belongs to when that can still be read, so that study alone answers
with an error.
"""
from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple, Optional

from pydicom.datadict import tag_for_keyword

from ..dicom.dicom_json import _pn_text
from ..exceptions import DicomCubeError, DicomReadError
from ..storage.listing import list_files
from . import qido

__all__ = ["ArchiveIndex", "InstanceRef", "LEVELS", "SUFFIXES"]

log = logging.getLogger("dicube.server")

SUFFIXES = (".dcbs", ".dcba", ".dcbl")
LEVELS = ("PATIENT", "STUDY", "SERIES", "IMAGE")

PATIENT_KEYS = ("PatientName", "PatientID", "IssuerOfPatientID", "PatientBirthDate", "PatientSex")
STUDY_KEYS = ("StudyInstanceUID", "StudyDate", "StudyTime", "AccessionNumber",
              "ReferringPhysicianName", "StudyID", "StudyDescription")
SERIES_KEYS = ("SeriesInstanceUID", "Modality", "SeriesNumber", "SeriesDescription", "SeriesDate",
               "SeriesTime", "BodyPartExamined", "PerformedProcedureStepStartDate",
               "PerformedProcedureStepStartTime")
INSTANCE_KEYS = ("SOPInstanceUID", "SOPClassUID", "InstanceNumber", "Rows", "Columns",
                 "BitsAllocated", "NumberOfFrames")
#: Attributes computed by the index, per level (every instance is ONLINE).
COUNT_KEYS = {
    "PATIENT": ("NumberOfPatientRelatedStudies", "NumberOfPatientRelatedSeries",
                "NumberOfPatientRelatedInstances"),
    "STUDY": ("ModalitiesInStudy", "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances",
              "InstanceAvailability"),
    "SERIES": ("NumberOfSeriesRelatedInstances", "InstanceAvailability"),
    "IMAGE": ("InstanceAvailability",),
}
ONLINE = "ONLINE"
#: Seconds between publications of a long scan's partial results.
PUBLISH_EVERY = 5.0
#: The same during the first scan (answers come from what is indexed so far): at least
#: this often, unless building a view costs more than a tenth of the time between two.
FIRST_PUBLISH_EVERY = 0.25
_OWN = {"PATIENT": PATIENT_KEYS, "STUDY": STUDY_KEYS, "SERIES": SERIES_KEYS, "IMAGE": INSTANCE_KEYS}
_TAGS = {kw: f"{tag_for_keyword(kw):08X}" for kw in
         PATIENT_KEYS + STUDY_KEYS + SERIES_KEYS + INSTANCE_KEYS}
_STUDY_TAG = _TAGS["StudyInstanceUID"]
_INSTANCE_SET = frozenset(INSTANCE_KEYS)


def level_keys(level: str) -> tuple:
    """Keywords a record of ``level`` holds: its own, its counts, and those of the levels above."""
    i = LEVELS.index(level)
    out: tuple = ()
    for lv in LEVELS[:i + 1]:
        out += _OWN[lv] + (COUNT_KEYS[lv] if lv == level else ())
    return out


class InstanceRef(NamedTuple):
    """Where an instance is: instance ``frame`` of the file ``path`` (its source file
    ``frame``; the same as its frame number unless the file holds multi-frame instances,
    see :meth:`~dicube.dicom.streaming.DcbStreamingReader.frames_of_instance`)."""

    path: Path
    frame: int
    sop_uid: str
    series_uid: str
    study_uid: str


@dataclass(eq=False)
class _Series:
    """The instances of one series held by one file (usually the whole series)."""

    path: Path
    patient: tuple                     # values of PATIENT_KEYS
    study: tuple                       # values of STUDY_KEYS
    series: tuple                      # values of SERIES_KEYS
    frames: tuple                      # instance numbers in the file
    sops: tuple                        # SOP Instance UID per instance
    varying: dict                      # INSTANCE_KEYS keyword -> value, or tuple per frame

    @property
    def study_uid(self) -> str:
        return self.study[0]

    @property
    def series_uid(self) -> str:
        return self.series[0]


@dataclass
class _File:
    size: int
    mtime: int
    parts: tuple = ()                  # _Series of the file
    error: str = ""
    study_uid: str = ""                # of an unreadable file, when known


@dataclass
class _View:
    """An immutable snapshot of the index, published by one assignment."""

    files: dict = field(default_factory=dict)        # path str -> _File
    studies: dict = field(default_factory=dict)      # study uid -> [_Series parts], path order
    series: dict = field(default_factory=dict)       # (study, series) -> [_Series parts]
    sop: dict = field(default_factory=dict)          # sop uid -> InstanceRef
    study_records: dict = field(default_factory=dict)   # study uid -> STUDY record dict
    series_records: dict = field(default_factory=dict)  # (study, series) -> SERIES record dict
    patient_records: dict = field(default_factory=dict)  # (id, name) -> PATIENT record dict
    study_errors: dict = field(default_factory=dict)    # study uid -> {Path: reason}


class ArchiveIndex:
    """Patient/study/series/instance records of the .dcbs (and .dcba, .dcbl) files under ``root``.

    ``header_cache`` bounds the streaming readers kept open (each holds the encoded data
    set of the frames it served, see :class:`~dicube.dicom.streaming.DcbStreamingReader`);
    ``cached_frames`` bounds the frames of all open readers together (the most recent
    reader stays whatever its size). Thread-safe.

    ``wait=False`` returns at once and runs the first scan on a thread: queries answer
    from what is indexed so far (published every quarter second or so) while
    :attr:`ready` is False; :meth:`scan_progress` says how far it got, :meth:`wait_ready`
    waits for it.
    """

    def __init__(self, root: "os.PathLike[str] | str", *, header_cache: int = 256,
                 cached_frames: int = 2048, wait: bool = True):
        self.root = Path(root)
        if not self.root.is_dir():
            raise DicomReadError("not a folder", os.fspath(root))
        self.header_cache = max(1, int(header_cache))
        self.cached_frames = max(1, int(cached_frames))
        self._view = _View()
        self._refresh_lock = threading.Lock()
        self._readers: "OrderedDict[str, object]" = OrderedDict()
        self._readers_lock = threading.Lock()
        self._opening: dict = {}          # path -> Lock, so one thread opens a given file
        self._watch: Optional[threading.Thread] = None
        self._stop = threading.Event()
        self._closed = threading.Event()
        self._ready = threading.Event()
        self._progress = (0, 0)           # (files scanned, files listed) of the first scan
        self.last_refresh = 0.0
        self.first_scan_seconds: Optional[float] = None
        if wait:
            self.refresh()
            self._ready.set()  # even when the folder could not be listed: watching retries
        else:
            threading.Thread(target=self._first_scan, name="dicube-index-scan",
                             daemon=True).start()

    def _first_scan(self) -> None:
        try:
            self.refresh()
        except Exception:  # queries keep answering from what was published
            log.exception("indexing %s failed", self.root)
        finally:
            self._ready.set()

    @property
    def ready(self) -> bool:
        """Whether the first scan of the folder is over (queries see every file)."""
        return self._ready.is_set()

    def wait_ready(self, timeout: Optional[float] = None) -> bool:
        """Wait for the first scan to end; False on timeout."""
        return self._ready.wait(timeout)

    def scan_progress(self) -> "tuple[int, int]":
        """(files scanned, files found) of the first scan; equal once :attr:`ready`."""
        return self._progress

    # ------------------------------------------------------------------ scanning
    def refresh(self) -> None:
        """Rescan the folder: new files are indexed, removed ones dropped, changed ones
        (size or modification time differ) re-read; unchanged files are not opened."""
        with self._refresh_lock:
            old = self._view.files
            try:
                paths = [p for p in list_files(self.root) if p.lower().endswith(SUFFIXES)]
            except DicomCubeError as exc:
                log.error("cannot list %s: %s", self.root, exc)
                return
            files: dict = {}
            changed = False
            added = reread = 0
            started = published = time.monotonic()
            first = not self.last_refresh
            every = FIRST_PUBLISH_EVERY if first else PUBLISH_EVERY
            if first:
                self._progress = (0, len(paths))
            for n, p in enumerate(paths):
                if self._closed.is_set():
                    return  # closed mid-scan: nothing more is published
                if first:
                    self._progress = (n, len(paths))
                if changed and time.monotonic() - published > every:
                    # a long scan (many new files) shows what it found so far
                    t = time.monotonic()
                    self._view = _build_view({**{q: old[q] for q in paths[n:] if q in old},
                                              **files})
                    published = time.monotonic()
                    every = max(every, 10 * (published - t))
                try:
                    st = os.stat(p)
                except OSError:
                    changed = True
                    continue  # removed meanwhile
                prev = old.get(p)
                if prev is not None and prev.size == st.st_size and prev.mtime == st.st_mtime_ns:
                    files[p] = prev
                    continue
                changed = True
                added += prev is None
                reread += prev is not None
                files[p] = self._index_file(p, st, prev)
                self._drop_reader(p)
            removed = old.keys() - files.keys()
            for p in removed:
                changed = True
                self._drop_reader(p)
            if changed or first:
                self._view = _build_view(files)
                if not first:
                    log.info("index of %s: %d file(s) added, %d changed, %d removed", self.root,
                             added, reread, len(removed))
            if first:
                self._progress = (len(paths), len(paths))
                self.first_scan_seconds = time.monotonic() - started
            self.last_refresh = time.monotonic()

    def _index_file(self, path: str, st: os.stat_result, prev: Optional[_File]) -> _File:
        entry = _File(st.st_size, st.st_mtime_ns)
        try:
            entry.parts = _read_parts(path)
        except Exception as exc:  # one bad file never stops the index (dicube's are typed)
            entry.error = _reason(exc) if isinstance(exc, (DicomCubeError, OSError)) \
                else f"{type(exc).__name__}: {exc}"
            entry.study_uid = (prev.parts[0].study_uid if prev is not None and prev.parts
                               else prev.study_uid if prev is not None else "") or _guess_study(path)
            log.error("cannot index %s: %s", path, entry.error)
        return entry

    def start_watching(self, interval: float = 2.0) -> None:
        """Refresh every ``interval`` seconds (or ten times as long as a scan takes) on a
        daemon thread until :meth:`stop_watching`."""
        if self._watch is not None:
            return
        self._stop.clear()

        def loop() -> None:
            while not self._ready.wait(0.2):  # the first scan is still running
                if self._stop.is_set():
                    return
            wait = interval
            while not self._stop.wait(wait):
                started = time.monotonic()
                try:
                    self.refresh()
                except Exception:  # keep watching whatever one scan met
                    log.exception("index refresh failed")
                # a huge folder is rescanned less often: scans take at most ~10% of a core
                wait = max(interval, 10 * (time.monotonic() - started))

        self._watch = threading.Thread(target=loop, name="dicube-index-watch", daemon=True)
        self._watch.start()

    def stop_watching(self) -> None:
        """Stop the background refresh (waits for a scan in progress)."""
        thread, self._watch = self._watch, None
        if thread is not None:
            self._stop.set()
            thread.join()

    def refresh_if_older(self, seconds: float) -> None:
        """Refresh when the last scan is older than ``seconds`` (a refresh on request
        with a minimum interval)."""
        if time.monotonic() - self.last_refresh >= seconds and not self._refresh_lock.locked():
            self.refresh()

    # ------------------------------------------------------------------ queries
    def errors(self) -> "dict[Path, str]":
        """Files that could not be indexed, and why."""
        return {Path(p): f.error for p, f in self._view.files.items() if f.error}

    def study_errors(self, study: str) -> "dict[Path, str]":
        """Unreadable files known to belong to ``study`` (empty: the study serves)."""
        return dict(self._view.study_errors.get(study, {}))

    def counts(self) -> dict:
        """Numbers of patients, studies, series, instances and unreadable files."""
        v = self._view
        return {"patients": len(v.patient_records), "studies": len(v.study_records),
                "series": len(v.series_records), "instances": len(v.sop),
                "errors": sum(1 for f in v.files.values() if f.error)}

    def find(self, level: str, filters: "dict[str, str]", *, limit: Optional[int] = None,
             offset: int = 0, fuzzy: bool = False) -> "list[dict]":
        """Records of ``level`` ("PATIENT", "STUDY", "SERIES" or "IMAGE") matching every
        filter (keyword or GGGGEEEE -> DICOM query value); each a dict keyword -> value
        (str or int, '' when empty; ModalitiesInStudy a backslash-joined str) of the level,
        its counts and the levels above. ValueError for a malformed filter or an attribute
        that cannot be matched at that level."""
        level = level.upper()
        if level not in LEVELS:
            raise ValueError(f"unknown query level {level!r}")
        if limit is not None and limit < 0 or offset < 0:
            raise ValueError("limit and offset must not be negative")
        keys = level_keys(level)
        tests = []
        for name, value in filters.items():
            kw = qido.keyword_of(name)
            value = "" if value is None else str(value)
            if kw not in keys:
                if value.strip(" *") == "":
                    continue  # a universal key on an attribute the index does not hold
                raise ValueError(f"{kw}: matching is not supported at the {level} level")
            test = qido.matcher(kw, value, fuzzy)
            if test is not qido.UNIVERSAL:
                tests.append((kw, test))
        v = self._view
        if limit == 0:
            return []
        if level == "IMAGE":  # tested there: series first, then their instances
            records = self._image_records(v, dict(filters), tests)
            tests = []
        else:
            records = _candidates(v, level, filters)
        out = []
        skip = offset
        for rec in records:
            if all(t(rec[kw]) for kw, t in tests):
                if skip:
                    skip -= 1
                    continue
                out.append(rec if level == "IMAGE" else dict(rec))
                if limit is not None and len(out) >= limit:
                    break
        return out

    def _image_records(self, v: _View, filters: dict, tests: list):
        study = _uid_filter(filters, "StudyInstanceUID")
        series = _uid_filter(filters, "SeriesInstanceUID")
        sop = _uid_filter(filters, "SOPInstanceUID")
        if sop is not None and study is None and series is None:
            refs = [v.sop[s] for s in sop if s in v.sop]
            keys = list(dict.fromkeys((r.study_uid, r.series_uid) for r in refs))
        elif study is not None and series is not None:
            keys = [(a, b) for a in study for b in series if (a, b) in v.series]
        elif study is not None:
            keys = [k for a in study for k in _series_keys_of(v, a)]
        elif series is not None:
            keys = [k for k in v.series if k[1] in series]
        else:
            keys = list(v.series)
        upper = [(kw, t) for kw, t in tests if kw not in _INSTANCE_SET]
        lower = [(kw, t) for kw, t in tests if kw in _INSTANCE_SET]
        above = [kw for kw in level_keys("SERIES") if kw not in COUNT_KEYS["SERIES"]]
        for key in keys:
            srec = v.series_records[key]
            if not all(t(srec[kw]) for kw, t in upper):
                continue
            base = {kw: srec[kw] for kw in above}
            for part in v.series[key]:
                var = part.varying
                for i, uid in enumerate(part.sops):
                    if sop is not None and uid not in sop:
                        continue
                    inst = {"SOPInstanceUID": uid, "InstanceAvailability": ONLINE}
                    for kw in INSTANCE_KEYS[1:]:
                        val = var[kw]
                        inst[kw] = val[i] if isinstance(val, tuple) else val
                    if all(t(inst[kw]) for kw, t in lower):
                        rec = dict(base)
                        rec.update(inst)
                        yield rec

    def instances(self, study: str, series: Optional[str] = None,
                  sop: Optional[str] = None) -> "list[InstanceRef]":
        """Where the instances of a study (or one series of it, or one instance) are;
        [] when nothing matches; ordered by series, then file and frame."""
        v = self._view
        if sop is not None:
            ref = v.sop.get(sop)
            if ref is None or ref.study_uid != study or (series is not None
                                                         and ref.series_uid != series):
                return []
            return [ref]
        keys = [(study, series)] if series is not None else _series_keys_of(v, study)
        out = []
        for key in keys:
            for part in v.series.get(key, ()):
                out.extend(InstanceRef(part.path, f, uid, key[1], key[0])
                           for f, uid in zip(part.frames, part.sops))
        return out

    # ------------------------------------------------------------------ readers
    def streaming_reader(self, path: "os.PathLike[str] | str"):
        """A :class:`~dicube.dicom.streaming.DcbStreamingReader` of ``path`` from a bounded
        LRU. An evicted reader is not closed under a request still using it: it closes
        when the last reference goes."""
        from ..dicom.streaming import DcbStreamingReader

        key = os.fspath(path)
        with self._readers_lock:
            reader = self._readers.get(key)
            if reader is not None:
                self._readers.move_to_end(key)
                return reader
            lock = self._opening.setdefault(key, threading.Lock())
        with lock:
            with self._readers_lock:
                reader = self._readers.get(key)
                if reader is not None:
                    return reader
            try:
                reader = DcbStreamingReader(key)
            finally:
                with self._readers_lock:
                    self._opening.pop(key, None)
            with self._readers_lock:
                self._readers[key] = reader
                self._evict()
            return reader

    def _evict(self) -> None:
        frames = sum(r.frame_count for r in self._readers.values())
        while len(self._readers) > 1 and (len(self._readers) > self.header_cache
                                          or frames > self.cached_frames):
            _, old = self._readers.popitem(last=False)
            frames -= old.frame_count

    def _drop_reader(self, path: str) -> None:
        with self._readers_lock:
            self._readers.pop(path, None)

    def close(self) -> None:
        """Stop watching (and a first scan still running) and forget the open readers."""
        self._closed.set()
        self.stop_watching()
        with self._readers_lock:
            self._readers.clear()

    def __enter__(self) -> "ArchiveIndex":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ---------------------------------------------------------------------- reading heads
def _reason(exc: BaseException) -> str:
    return getattr(exc, "reason", None) or str(exc) or type(exc).__name__


def _value(elem: Optional[dict]):
    """A compact value of a DICOM JSON element: str (multiple values joined by a
    backslash, PN as its text), int for integer VRs, '' when empty or absent."""
    if elem is None:
        return ""
    values = elem.get("Value")
    if not values:
        return ""
    vr = elem.get("vr")
    if vr == "PN":
        return sys.intern("\\".join(_pn_text(v) for v in values))
    if vr in ("US", "SS", "UL", "SL"):
        return values[0] if len(values) == 1 and isinstance(values[0], int) else \
            "\\".join(str(x) for x in values)
    if vr == "IS" and len(values) == 1:
        try:
            return int(str(values[0]).strip())
        except ValueError:
            return str(values[0]).strip()
    if vr == "SQ":
        return ""
    return sys.intern("\\".join(str(x).strip(" ") if vr != "UI" else str(x).rstrip("\0 ")
                                for x in values))


def _read_parts(path: str) -> tuple:
    """The series parts of one file, from its head (metadata validated on the way)."""
    import warnings

    from ..core.io import meta_from_reader
    from ..dicom.streaming_layout import frames_per_instance
    from ..storage.reader import DcbsReader

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with DcbsReader(path) as reader:
            meta = meta_from_reader(reader)
            n = reader.frame_count
    if meta is None or len(meta) == 0:
        raise DicomReadError("the file has no DICOM metadata to serve", path)
    frames_per_instance(meta, n, path)  # one instance per source file, N frames each
    n = len(meta)
    shared, per_slice = meta.shared, meta.per_slice

    def column(keys: tuple) -> list:
        """Values of ``keys`` per frame: one tuple per frame (shared values computed once)."""
        cols = []
        for kw in keys:
            tag = _TAGS[kw]
            if tag in shared:
                cols.append((_value(shared[tag]),) * n)
            else:
                elems = per_slice.get(tag)
                cols.append(tuple(_value(e) for e in elems) if elems else ("",) * n)
        return list(zip(*cols))

    patients, studies, series_rows = column(PATIENT_KEYS), column(STUDY_KEYS), column(SERIES_KEYS)
    inst = column(INSTANCE_KEYS)
    groups: dict = {}
    for i in range(n):
        study, series, sop = studies[i], series_rows[i], inst[i][0]
        for what, uid in (("StudyInstanceUID", study[0]), ("SeriesInstanceUID", series[0]),
                          ("SOPInstanceUID", sop)):
            if not isinstance(uid, str) or not qido._UID.match(uid):
                raise DicomReadError(f"frame {i}: {what} {uid!r} is missing or not a UID", path)
        g = groups.setdefault((study[0], series[0]), [patients[i], study, series, [], [], []])
        g[3].append(i)
        g[4].append(sop)
        g[5].append(inst[i][1:])
    parts = []
    p = Path(path)
    for patient, study, series, frames, sops, inst in groups.values():
        if len(set(sops)) != len(sops):
            raise DicomReadError("the same SOP Instance UID on several frames", path)
        varying = {}
        for j, kw in enumerate(INSTANCE_KEYS[1:]):
            vals = tuple(row[j] for row in inst)
            varying[kw] = vals[0] if len(set(vals)) == 1 else vals
        parts.append(_Series(p, patient, study, series, tuple(frames), tuple(sops), varying))
    return tuple(parts)


def _guess_study(path: str) -> str:
    """The Study Instance UID of a file whose head does not verify, read without the
    checksums (only to say which study the error belongs to); '' when unreadable."""
    try:
        import zstandard

        from ..codecs.jph import crc32c
        from ..storage.format import ENC_ZSTD, FIRST_READ, SEC_META, parse_header, parse_table

        with open(path, "rb") as f:
            head = f.read(FIRST_READ)
            header = parse_header(head, crc32c, path)
            if header.head_length > len(head):
                if header.head_length > 64 << 20:
                    return ""
                head += f.read(header.head_length - len(head))
        sec = parse_table(head, header, crc32c, path).get(SEC_META)
        if sec is None:
            return ""
        data = head[sec.offset:sec.offset + sec.length]
        if sec.encoding == ENC_ZSTD:
            data = zstandard.ZstdDecompressor().decompress(data, max_output_size=sec.raw_length)
        doc = json.loads(data)
        elem = doc["shared"].get(_STUDY_TAG) or next(
            e for e in doc["per_slice"].get(_STUDY_TAG, []) if e)
        uid = _value(elem)
        return uid if isinstance(uid, str) and qido._UID.match(uid) else ""
    except Exception:
        return ""


# ---------------------------------------------------------------------- the view
def _build_view(files: dict) -> _View:
    v = _View(files=files)
    for path in sorted(files):
        f = files[path]
        if f.error:
            if f.study_uid:
                v.study_errors.setdefault(f.study_uid, {})[Path(path)] = f.error
            continue
        for part in f.parts:
            key = (part.study_uid, part.series_uid)
            dup = [s for s in part.sops if s in v.sop]
            if dup:
                log.warning("%s: %d instance(s) already served from another file, e.g. %s: "
                            "those are skipped", path, len(dup), v.sop[dup[0]].path)
                part = _without(part, set(dup))
                if not part.sops:
                    continue
            v.studies.setdefault(part.study_uid, []).append(part)
            v.series.setdefault(key, []).append(part)
            for fr, uid in zip(part.frames, part.sops):
                v.sop[uid] = InstanceRef(part.path, fr, uid, key[1], key[0])
    for key, parts in v.series.items():
        first = parts[0]
        rec = dict(zip(PATIENT_KEYS, first.patient))
        rec.update(zip(STUDY_KEYS, first.study))
        rec.update(zip(SERIES_KEYS, first.series))
        rec["NumberOfSeriesRelatedInstances"] = sum(len(p.sops) for p in parts)
        rec["InstanceAvailability"] = ONLINE
        v.series_records[key] = rec
    for study, parts in v.studies.items():
        first = parts[0]
        rec = dict(zip(PATIENT_KEYS, first.patient))
        rec.update(zip(STUDY_KEYS, first.study))
        mods = sorted({p.series[1] for p in parts if p.series[1]})
        rec["ModalitiesInStudy"] = "\\".join(mods)
        rec["NumberOfStudyRelatedSeries"] = len({p.series_uid for p in parts})
        rec["NumberOfStudyRelatedInstances"] = sum(len(p.sops) for p in parts)
        rec["InstanceAvailability"] = ONLINE
        v.study_records[study] = rec
    for study, rec in v.study_records.items():
        key = (rec["PatientID"], rec["PatientName"])
        prec = v.patient_records.get(key)
        if prec is None:
            prec = v.patient_records[key] = {kw: rec[kw] for kw in PATIENT_KEYS}
            prec.update(dict.fromkeys(COUNT_KEYS["PATIENT"], 0))
        prec["NumberOfPatientRelatedStudies"] += 1
        prec["NumberOfPatientRelatedSeries"] += rec["NumberOfStudyRelatedSeries"]
        prec["NumberOfPatientRelatedInstances"] += rec["NumberOfStudyRelatedInstances"]
    return v


def _without(part: _Series, drop: set) -> _Series:
    keep = [i for i, s in enumerate(part.sops) if s not in drop]
    varying = {kw: tuple(val[i] for i in keep) if isinstance(val, tuple) else val
               for kw, val in part.varying.items()}
    return _Series(part.path, part.patient, part.study, part.series,
                   tuple(part.frames[i] for i in keep), tuple(part.sops[i] for i in keep), varying)


def _uid_filter(filters: dict, keyword: str) -> Optional[frozenset]:
    """The UIDs a filter on ``keyword`` (keyword or tag form) lists, or None (no filter)."""
    tag = _TAGS.get(keyword) or f"{tag_for_keyword(keyword):08X}"
    value = filters.get(keyword, filters.get(tag, filters.get(tag.lower())))
    if value is None or str(value).strip(" *") == "":
        return None
    return frozenset(str(value).strip(" ").split("\\"))


def _series_keys_of(v: _View, study: str) -> list:
    return list(dict.fromkeys((p.study_uid, p.series_uid) for p in v.studies.get(study, ())))


def _candidates(v: _View, level: str, filters: dict):
    """Records of ``level`` worth testing: narrowed by UID filters through the dicts."""
    if level == "PATIENT":
        return v.patient_records.values()
    study = _uid_filter(filters, "StudyInstanceUID")
    if level == "STUDY":
        if study is not None:
            return [v.study_records[s] for s in study if s in v.study_records]
        return v.study_records.values()
    series = _uid_filter(filters, "SeriesInstanceUID")
    if study is not None and series is not None:
        return [v.series_records[(a, b)] for a in study for b in series
                if (a, b) in v.series_records]
    if study is not None:
        return [v.series_records[k] for a in study for k in _series_keys_of(v, a)]
    return v.series_records.values()

