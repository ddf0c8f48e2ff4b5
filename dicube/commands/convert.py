"""``dicube convert SRC... -o OUT``: DICOM series to .dcbs files, in parallel across series.

``--to dcba`` writes the lossless archive variant (.dcba, JPEG XL frames), ``--to dcbl``
the lossy one (.dcbl, every pixel within ``--bound``). A SRC that is a dicube file
(.dcbs/.dcba) is converted to the ``--to`` variant exactly: every frame decoded and
re-encoded, the written file read back and compared frame for frame, and its metadata
sections (META, SPAC, PIXH, QCRP, ...) copied byte for byte (only INFO and the frame index
change), so .dcbs -> .dcba -> .dcbs gives the original file back.

Each SRC is a DICOM folder (or file); every series found under it (see
:func:`dicube.discover_series`) becomes one ``OUT/<name>.dcbs``, named
``<PatientID>_<Modality>_S<SeriesNumber>`` (the SeriesInstanceUID when those are missing),
made unique with ``-2``, ``-3``... A series that fails is reported and the others go on;
the exit status is 1 when any failed. An output that exists already is left as it is and
reported as "exists, skipped" (so a re-run converts only what is new) unless ``--overwrite``.
Warnings of reading (e.g. pydicom's about invalid values) are one line each naming the
file, also from worker processes; ``-q`` drops them.

Nothing is dropped in silence. A file that looks like DICOM (or cannot be opened) but
cannot be read fails its series, naming the file and why; ``--skip-unreadable`` converts
the rest and records the skipped files in the QC report (status UNREADABLE_FILES). Files
under SRC that no series' reading covers are reported for SRC the same way. A series
whose slices name different patients or studies (QC NON_UNIFORM_PATIENT /
NON_UNIFORM_STUDY_UID) is not converted unless ``--allow-mixed-identity``. FIFOs, sockets
and devices are never opened (a warning each); identical copies of an instance are read once.
"""
from __future__ import annotations

import os
import re
import sys
import time
from dataclasses import dataclass, field
from typing import Optional

from ._output import (
    cpu_count,
    error_message,
    human_bytes,
    print_error,
    print_table,
    WarningLog,
    collect_warnings,
    pass_on,
    plural,
    print_warning,
    progress,
    ratio,
)

CMD = "convert"
#: --to choices -> save()'s file_type.
TARGETS = {"dcbs": "s", "dcba": "a", "dcbl": "l"}
#: Magics of the dicube files a SRC may be (converted between variants).
CUBE_MAGICS = (b"DCMCUBES", b"DCMCUBEA", b"DCMCUBEL")


def register(sub) -> None:
    p = sub.add_parser("convert", help="convert DICOM series (or dicube files) to .dcbs/.dcba/.dcbl files",
                       description="Convert every DICOM series found under each SRC to "
                                   "OUT/<PatientID>_<Modality>_S<SeriesNumber>.dcbs (.dcba, .dcbl "
                                   "with --to); a SRC that is a .dcbs/.dcba file is converted to "
                                   "the --to variant exactly, as OUT/<its name>.<variant>.")
    p.add_argument("sources", nargs="+", metavar="SRC",
                   help="DICOM series folder, a root holding series, or a .dcbs/.dcba file")
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="output folder (created if needed)")
    p.add_argument("-j", "--jobs", type=_jobs, default=1, metavar="N",
                   help="series converted at once, in separate processes (default 1; 0 = one per core)")
    p.add_argument("--to", choices=TARGETS, default="dcbs",
                   help="variant written: dcbs (speed, HTJ2K; the default), dcba (lossless archive, "
                        "JPEG XL, ~17%% smaller; needs dicube[archive]) or dcbl (lossy, every pixel "
                        "within --bound)")
    p.add_argument("--bound", type=float, default=None, metavar="N",
                   help="--to dcbl: maximum error of every pixel, in real units (HU for CT; "
                        "default 3), else stored units")
    p.add_argument("--codec", choices=("htj2k", "zstd"), default=None,
                   help="frame codec of --to dcbs: htj2k (smallest, served as DICOM as is; the "
                        "default) or zstd (byte planes: ~5x faster to decode, ~1.5x larger; for "
                        "training copies)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace existing .dcbs files (by default they are left as they are "
                        "and reported as 'exists, skipped')")
    p.add_argument("--skip-unreadable", action="store_true",
                   help="convert a series even when some of its files cannot be read (truncated, "
                        "damaged, no permission): they are listed in its QC report "
                        "(UNREADABLE_FILES) and warned about; by default the series fails")
    p.add_argument("--allow-mixed-identity", action="store_true",
                   help="convert a series whose slices name different patients or studies "
                        "(QC NON_UNIFORM_PATIENT / NON_UNIFORM_STUDY_UID); by default it fails")
    p.add_argument("-q", "--quiet", action="store_true",
                   help="no progress bar, no summary table and no warnings")
    p.set_defaults(func=run)


def _jobs(text: str) -> int:
    import argparse

    try:
        n = int(text)
    except ValueError:
        n = -1
    if n < 0:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 0, got {text!r}")
    return n


@dataclass
class Job:
    """One series to convert."""

    source: str                 # the SRC argument it was found under
    folder: str                 # folder read (common folder of the series' files)
    key: Optional[str]          # series key for load_from_dicom_folder(series_uid=)
    files: list = field(default_factory=list)
    name: str = ""
    output: str = ""
    input_bytes: int = 0
    codec: str = "htj2k"        # frame codec passed to dicube.save
    file_type: str = "s"        # variant written (save's file_type)
    bound: Optional[float] = None  # .dcbl maximum error
    cube: bool = False          # the source is a dicube file (variant conversion)
    series_uid: str = ""
    on_unreadable: str = "error"
    allow_mixed_identity: bool = False
    overwrite: bool = False


@dataclass
class Result:
    job: Job
    ok: bool
    slices: int = 0
    output_bytes: int = 0
    qc: str = "-"
    error: str = ""
    seconds: float = 0.0
    warnings: list = field(default_factory=list)   # files left out: always shown
    notices: list = field(default_factory=list)    # library warnings: not with -q
    skipped: bool = False                          # the output exists (no --overwrite)
    unreadable: list = field(default_factory=list)  # (path, reason) that failed the series


_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]+")


def _clean(text) -> str:
    return _UNSAFE.sub("_", str(text)).strip("._-")[:64]


def _base_name(first_file: str, series_uid: str) -> str:
    """``<PatientID>_<Modality>_S<SeriesNumber>`` from a file's header, else the series UID."""
    import pydicom

    parts = []
    try:
        ds = pydicom.dcmread(first_file, stop_before_pixels=True,
                             specific_tags=["PatientID", "Modality", "SeriesNumber"])
        for kw, fmt in (("PatientID", "{}"), ("Modality", "{}"), ("SeriesNumber", "S{}")):
            v = _clean(ds.get(kw, "") or "")
            if v:
                parts.append(fmt.format(v))
    except Exception:  # unreadable header: name from the UID
        parts = []
    if len(parts) < 2:
        return _clean(series_uid) or "series"
    return "_".join(parts)


def _series_size(files) -> int:
    total = 0
    for f in files:
        try:
            total += os.path.getsize(f)
        except OSError:
            pass
    return total


def _inside(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def _uncovered(found, jobs: list[Job]) -> list:
    """Unreadable files found under a source that no job's reading will report: outside
    every job's folder, or naming a series no job converts."""
    return [f for f in found.unreadable
            if not any(_inside(f.path, j.folder) and f.series_uid in ("", j.series_uid)
                       for j in jobs)]


def plan(sources, out_dir: str, *, skip_unreadable: bool = False,
         notes: Optional[list] = None, suffix: str = ".dcbs") -> tuple[list[Job], list[Result]]:
    """The jobs for every series under ``sources`` (and every dicube file given as a
    source) and the sources that fail: they hold no series, or files that cannot be read
    and that no job covers (unless ``skip_unreadable``). Warnings (entries never opened,
    files skipped) go to ``notes``. Outputs are named ``<name><suffix>`` in ``out_dir``."""
    from ..dicom.dicom_io import _listing_names, discover_series
    from ..exceptions import DicomReadError

    jobs: list[Job] = []
    failed: list[Result] = []
    notes = notes if notes is not None else []
    for src in sources:
        if _is_cube(src):  # a dicube file: converted to another variant
            job = Job(src, src, None, [src], cube=True, input_bytes=_series_size([src]))
            job.name = _clean(os.path.splitext(os.path.basename(os.fspath(src)))[0]) or "series"
            jobs.append(job)
            continue
        try:
            found = discover_series(src)
        except Exception as exc:  # noqa: BLE001 - reported per source
            failed.append(Result(Job(src, src, None), False, error=error_message(exc, src)))
            continue
        notes.extend(f"{f.path}: skipped, {f.reason}" for f in found.not_regular)
        series = [s for s in found if s.has_pixels]
        if not series:
            what = plural(found.num_non_dicom, "non-DICOM file")
            if found.unreadable:
                what += (f", {len(found.unreadable)} unreadable: "
                         + _listing_names(found.unreadable))
            exc = DicomReadError(f"no DICOM image series found ({what})", src)
            failed.append(Result(Job(src, src, None), False, error=str(exc)))
            continue
        first_job = len(jobs)
        for info in series:
            folder = os.path.commonpath(info.files) if len(info.files) > 1 else info.files[0]
            if len(info.files) > 1 and not os.path.isdir(folder):
                folder = os.path.dirname(folder)
            job = Job(src, folder, info.key, sorted(info.files), series_uid=info.series_uid)
            job.on_unreadable = "skip" if skip_unreadable else "error"
            job.input_bytes = _series_size(info.files)
            base = _base_name(job.files[0], info.series_uid)
            if "#" in info.key:
                base += "_" + _clean(info.key.split("#", 1)[1])
            job.name = base
            jobs.append(job)
        lost = _uncovered(found, jobs[first_job:])
        if lost and skip_unreadable:
            notes.append(f"{src}: skipped {plural(len(lost), 'file')} that cannot be read: "
                         + _listing_names(lost))
        elif lost:
            failed.append(Result(Job(src, src, None), False, error=str(DicomReadError(
                f"{plural(len(lost), 'file')} that may hold slices cannot be read (pass --skip-unreadable "
                f"to go on without them): {_listing_names(lost)}", src))))
    used: set = set()
    for job in jobs:
        name, n = job.name, 1
        while name.lower() in used:
            n += 1
            name = f"{job.name}-{n}"
        used.add(name.lower())
        job.name = name
        job.output = os.path.join(out_dir, name + suffix)
    return jobs, failed


def _is_cube(src) -> bool:
    """Whether ``src`` is a regular file starting with a dicube magic."""
    import stat

    try:
        if not stat.S_ISREG(os.stat(src).st_mode):
            return False
        with open(src, "rb") as fh:
            return fh.read(8) in CUBE_MAGICS
    except (OSError, TypeError, ValueError):
        return False


def _shared_bits(meta, dtype) -> Optional[int]:
    """DICOM BitsStored when shared by all slices, as ``save`` gives it to the codecs."""
    if meta is None or not meta.is_shared("00280101"):
        return None
    v = meta.get_shared_value("00280101")
    return int(v) if isinstance(v, int) and 1 <= v <= dtype.itemsize * 8 else None


def _save_options(file_type: str, codec: Optional[str], bound) -> dict:
    """Keyword arguments of ``dicube.save`` for a variant; DicomCubeError when this
    installation cannot write it."""
    import inspect

    from ..core.io import FILE_TYPES, save
    from ..exceptions import DicomCubeError

    if file_type not in FILE_TYPES:
        raise DicomCubeError(f"this dicube cannot write the {file_type!r} variant yet")
    opts: dict = {"file_type": file_type}
    if codec is not None:
        opts["codec"] = codec
    if bound is not None:
        if "bound" not in inspect.signature(save).parameters:
            raise DicomCubeError("this dicube cannot write .dcbl files (no bound in dicube.save)")
        opts["bound"] = bound
    return opts


def convert_cube(src, dst, file_type: str = "a", *, codec: Optional[str] = None,
                 bound: Optional[float] = None, num_threads: Optional[int] = None,
                 overwrite: bool = True) -> tuple:
    """Convert the dicube file ``src`` to the variant ``file_type`` at ``dst``; return
    (frames, bytes written, QC status).

    Between .dcbs and .dcba (version 2) the conversion is exact: frames are decoded
    (checksums verified) and re-encoded, the written file is read back and every frame
    compared before it replaces ``dst`` (CodecError otherwise), and every section but INFO
    and the frame index is copied byte for byte. A version-1 .dcbs, or ``file_type`` "l",
    goes through ``load`` and ``save``. A .dcbl source is refused: its pixels carry its
    error. ``codec`` is the frame codec of a .dcbs ("htj2k" or "zstd")."""
    import json

    import numpy as np

    from .. import __version__
    from ..codecs import jxl
    from ..core.io import encode_frames, load, meta_from_reader, qc_report_from_reader, save
    from ..exceptions import CodecError, DataConsistencyError, WriteError
    from ..storage.format import ENC_ZSTD, SEC_INDEX, SEC_INFO, VARIANT_MAGICS
    from ..storage.reader import DcbsReader
    from ..storage.writer import FrameSet, write_dcbs

    opts = _save_options(file_type, codec, bound)
    if not overwrite and os.path.lexists(dst):
        raise WriteError("already exists (pass overwrite=True to replace it)", dst)
    with DcbsReader(src) as r:
        if r.layout.header.variant == "l":
            raise DataConsistencyError("is a lossy .dcbl: its pixels carry its error; convert "
                                       "the series it was made from", src)
        report = qc_report_from_reader(r)
        qc = report.status.value if report is not None else "-"
        if file_type == "l" or r.version != 2:
            n = r.frame_count
            return n, save(load(src), dst, num_threads=num_threads, overwrite=overwrite, **opts), qc
        raw = r.read_frames(num_threads=num_threads)
        bits = _shared_bits(meta_from_reader(r), raw.dtype)
        info = json.loads(r.section_bytes(SEC_INFO) or b"{}")
        sections = [(kind, r.section_bytes(kind), sec.encoding == ENC_ZSTD)
                    for kind, sec in r.sections.items() if kind not in (SEC_INFO, SEC_INDEX)]
    samples = 1 if raw.ndim == 3 else 3
    codec_info = None
    try:
        if file_type == "a":
            done = jxl.archive_frames(raw, bits, num_threads, verify=False)  # the file is checked
            if done is None:
                raise DataConsistencyError(f"the archive variant holds 8 or 16-bit integers, "
                                           f"not {raw.dtype}")
            fs = FrameSet(done.frames, done.codec, raw.shape[1], raw.shape[2], samples, raw.dtype,
                          done.bits_stored)
            codec_info = done.info
        else:
            fs = encode_frames(raw, bits, num_threads, codec or "htj2k")
    except (CodecError, DataConsistencyError) as exc:
        raise type(exc)(exc.reason, dst) from None
    info = {k: v for k, v in info.items() if k != "codec"} if isinstance(info, dict) else {}
    info.update(writer=f"dicube {__version__}", shape=list(raw.shape), dtype=str(fs.dtype),
                frame_codec=fs.codec)
    if codec_info:
        info["codec"] = codec_info

    def check(source) -> None:
        with DcbsReader(source) as w:
            got = w.read_frames(num_threads=num_threads)
        if got.dtype != raw.dtype or not np.array_equal(got, raw):
            raise CodecError("the converted frames do not decode to the source's", dst)

    size = write_dcbs(dst, fs, [(SEC_INFO, json.dumps(info).encode(), False)] + sections,
                      VARIANT_MAGICS[file_type], check=check)
    return raw.shape[0], size, qc


def convert_one(job: Job, num_threads: Optional[int]) -> Result:
    """Read one series and write its .dcbs (runs in a worker process when ``--jobs`` > 1);
    the warnings of reading it (e.g. pydicom's about invalid values) are returned in
    ``notices``, one line each naming the file."""
    log = WarningLog(job.folder)
    with collect_warnings(log):
        result = _convert_one(job, num_threads)
    result.notices = log.lines
    return result


def _convert_one(job: Job, num_threads: Optional[int]) -> Result:
    t = time.perf_counter()
    if job.cube:
        try:
            n, size, qc = convert_cube(job.source, job.output, job.file_type, codec=job.codec,
                                       bound=job.bound, num_threads=num_threads,
                                       overwrite=job.overwrite)
            return Result(job, True, n, size, qc, seconds=time.perf_counter() - t)
        except Exception as exc:  # noqa: BLE001 - every failure is reported for its file
            return Result(job, False, error=error_message(exc, job.source),
                          seconds=time.perf_counter() - t)
    try:
        import warnings

        from ..core.io import save
        from ..dicom.dicom_io import _listing_names, load_from_dicom_folder
        from ..dicom.dicom_status import IDENTITY_STATUSES, check_series
        from ..exceptions import SkippedFileWarning, UnreadableFilesError

        # a lone file is its own series; a split key ("<uid>#<n>") numbers the parts found
        # under the whole SRC and would not match when the file is read alone
        key = None if len(job.files) == 1 and job.folder == job.files[0] else job.key
        with warnings.catch_warnings():  # what was skipped is reported from the QC report
            warnings.simplefilter("ignore", SkippedFileWarning)
            try:
                image = load_from_dicom_folder(job.folder, series_uid=key,
                                               num_threads=num_threads,
                                               on_unreadable=job.on_unreadable)
            except UnreadableFilesError as exc:  # the files are listed once by run()
                return Result(job, False, seconds=time.perf_counter() - t, unreadable=exc.files,
                              error=f"{job.folder}: series {job.name} not converted: "
                                    f"{plural(len(exc.files), 'file')} under "
                                    "it that may hold slices cannot be read (listed above; pass "
                                    "--skip-unreadable to convert the rest)")
        report = check_series(image.dicom_meta) if image.dicom_meta is not None else None
        qc = report.status.value if report is not None else "-"
        mixed = [i for i in (report.issues if report else []) if i.status in IDENTITY_STATUSES]
        if mixed and not job.allow_mixed_identity:
            return Result(job, False, image.raw_image.shape[0], qc=qc, error=(
                f"{job.folder}: not converted, its slices name different patients or studies: "
                + "; ".join(i.message for i in mixed) + " (pass --allow-mixed-identity to "
                "convert it anyway)"), seconds=time.perf_counter() - t)
        notes = []
        skipped = (getattr(image.dicom_meta, "read_report", None) or {}).get("unreadable")
        if skipped:
            where = [(os.path.join(job.folder, p), r) for p, r in skipped]
            notes.append(f"{job.folder}: skipped {plural(len(skipped), 'file')} that cannot be read: "
                         + _listing_names(where))
        size = save(image, job.output, num_threads=num_threads, overwrite=job.overwrite,
                    **_save_options(job.file_type, job.codec, job.bound))
        return Result(job, True, image.raw_image.shape[0], size, qc,
                      seconds=time.perf_counter() - t, warnings=notes)
    except Exception as exc:  # noqa: BLE001 - every failure is reported for its series
        return Result(job, False, error=error_message(exc, job.folder),
                      seconds=time.perf_counter() - t)


def _pool(workers: int):
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    # never fork: the parent may hold native thread pools, which a forked child cannot use
    methods = mp.get_all_start_methods()
    ctx = mp.get_context("forkserver" if "forkserver" in methods else "spawn")
    return ProcessPoolExecutor(max_workers=workers, mp_context=ctx)


def execute(jobs: list[Job], workers: int, quiet: bool = False) -> list[Result]:
    """Convert ``jobs`` on ``workers`` processes (in this process when 1), in job order."""
    threads = max(1, cpu_count() // max(1, workers))
    results: dict[int, Result] = {}
    bar = progress(total=len(jobs), desc="converting", unit="series", quiet=quiet)
    try:
        if workers <= 1 or len(jobs) <= 1:
            for k, job in enumerate(jobs):
                bar.set_postfix_str(job.name, refresh=True)
                results[k] = convert_one(job, None if workers <= 1 else threads)
                bar.update(1)
        else:
            from concurrent.futures import as_completed

            with _pool(min(workers, len(jobs))) as ex:
                futures = {ex.submit(convert_one, job, threads): k for k, job in enumerate(jobs)}
                for fut in as_completed(futures):
                    k = futures[fut]
                    try:
                        results[k] = fut.result()
                        bar.set_postfix_str(jobs[k].name, refresh=False)
                    except Exception as exc:  # noqa: BLE001 - e.g. a worker killed
                        results[k] = Result(jobs[k], False,
                                            error=f"{jobs[k].folder}: worker failed: {exc}")
                    bar.update(1)
    finally:
        bar.close()
    return [results[k] for k in range(len(jobs))]


def _summary(results: list[Result]) -> None:
    rows = []
    for r in results:
        j = r.job
        rows.append([j.name or j.source, r.slices or "-", human_bytes(j.input_bytes or None),
                     human_bytes(r.output_bytes or None), ratio(j.input_bytes, r.output_bytes),
                     r.qc, "exists, skipped" if r.skipped else "ok" if r.ok else "FAILED"])
    print_table(rows, ["series", "slices", "input", "output", "ratio", "QC", "result"],
                align="lrrrrll")
    ok = [r for r in results if r.ok and not r.skipped]
    skipped = sum(r.skipped for r in results)
    failed = sum(not r.ok for r in results)
    tin = sum(r.job.input_bytes for r in ok)
    tout = sum(r.output_bytes for r in ok)
    also = (f"; {skipped} skipped, their output files exist (--overwrite replaces them)"
            if skipped else "")
    print(f"{len(ok)} of {len(results)} series converted ({human_bytes(tin)} -> "
          f"{human_bytes(tout)}, {ratio(tin, tout)}){also}; {failed} failed")


def run(args) -> int:
    out_dir = args.output
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        print_error(CMD, "exists and is not a folder", out_dir)
        return 2
    if args.codec is not None and args.to != "dcbs":
        print_error(CMD, f"--codec applies to --to dcbs, not --to {args.to}")
        return 2
    if args.bound is not None and args.to != "dcbl":
        print_error(CMD, f"--bound applies to --to dcbl, not --to {args.to}")
        return 2
    workers = args.jobs if args.jobs > 0 else cpu_count()
    notes: list = []
    jobs, failed = plan(args.sources, out_dir, skip_unreadable=args.skip_unreadable, notes=notes,
                        suffix="." + args.to)
    for note in notes:
        print_warning(CMD, note)
    todo = []
    for job in jobs:
        job.codec = args.codec
        job.file_type = TARGETS[args.to]
        job.bound = args.bound
        job.allow_mixed_identity = args.allow_mixed_identity
        job.overwrite = args.overwrite
        if job.cube and os.path.realpath(job.output) == os.path.realpath(job.source):
            failed.append(Result(job, False, error=f"{job.source}: the output would replace the "
                                                   "source; choose another -o folder"))
        elif os.path.lexists(job.output) and not args.overwrite:
            failed.append(Result(job, True, skipped=True))  # a re-run: nothing to do
        else:
            todo.append(job)
    if todo:
        os.makedirs(out_dir, exist_ok=True)
    results = execute(todo, workers, args.quiet)
    rank = {src: k for k, src in enumerate(args.sources)}
    everything = sorted(failed + results, key=lambda r: rank.get(r.job.source, len(rank)))
    listed: set = set()  # an unreadable file fails every series of its folder: named once
    for r in everything:
        for note in r.warnings:
            print_warning(CMD, note)
        for note in r.notices:
            pass_on(note, CMD)
        for path, reason in r.unreadable:
            if path not in listed:
                listed.add(path)
                print_error(CMD, "cannot read: " + " ".join(reason.split()), path)
        if not r.ok:
            print_error(CMD, r.error)
    if not args.quiet:
        _summary(everything)
    sys.stdout.flush()
    return 0 if all(r.ok for r in everything) else 1
