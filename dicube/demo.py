"""The main job: convert a DICOM series to .dcbs, reload it, export it back to DICOM and
compare every exported file with its source file, element by element and pixel by pixel."""
from __future__ import annotations

import contextlib
import os
import tempfile
import time
from pathlib import Path
from typing import Iterator, Optional

import numpy as np
import pydicom

from .commands._output import plural

#: Transfer syntaxes whose pixel data lost information when the source was written.
LOSSY_SYNTAXES = {
    "1.2.840.10008.1.2.4.50": "JPEG baseline",
    "1.2.840.10008.1.2.4.51": "JPEG extended",
    "1.2.840.10008.1.2.4.81": "JPEG-LS near-lossless",
    "1.2.840.10008.1.2.4.91": "JPEG 2000",
    "1.2.840.10008.1.2.4.203": "HTJ2K",
    "1.2.840.10008.1.2.4.112": "JPEG XL",
}
#: Elements the standard requires to change when lossy-compressed pixel data is written
#: decompressed (PS3.5 8.2.1, PS3.3 C.7.6.1.1.5): not counted as differences for such sources.
LOSSY_CHANGES = {"TransferSyntaxUID", "PhotometricInterpretation", "PlanarConfiguration",
                 "LossyImageCompression", "LossyImageCompressionRatio",
                 "LossyImageCompressionMethod"}
#: Differences listed before the rest are only counted.
MAX_LISTED = 10


def build_default_series(folder: Path, slices: int = 24) -> Path:
    """Write a CT series made from pydicom's bundled CT_small.dcm into ``folder``.

    Each slice is the bundled image shifted a little, with its own SOP Instance UID,
    InstanceNumber and ImagePositionPatient 2.5 mm apart, in one new series.
    """
    from pydicom.data import get_testdata_file
    from pydicom.uid import generate_uid

    source = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    series_uid = generate_uid()
    folder.mkdir(parents=True, exist_ok=True)
    x, y, z = (float(v) for v in source.ImagePositionPatient)
    for i in range(slices):
        ds = source.copy()
        ds.SeriesInstanceUID = series_uid
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.InstanceNumber = i + 1
        ds.ImagePositionPatient = [x, y, z + 2.5 * i]
        ds.SliceLocation = z + 2.5 * i
        ds.PixelData = np.roll(source.pixel_array, (i, 2 * i), axis=(0, 1)).tobytes()
        ds.save_as(folder / f"CT{i + 1:03d}.dcm", enforce_file_format=True)
    return folder


# ------------------------------------------------------------------------ comparison
def _elements_differ(a, b, where: str, out: list) -> None:
    """Append ``(keyword, '<where>Keyword (gggg,eeee): <a> != <b>')`` for every element that
    differs between datasets ``a`` and ``b`` (sequences item by item; pixel data left out)."""
    for tag in sorted(set(a.keys()) | set(b.keys())):
        if tag == 0x7FE00010 or tag.group == 0xFFFE or tag.element == 0:
            continue  # pixels are compared decoded; group lengths follow from the rest
        ea, eb = a.get(tag), b.get(tag)
        name = (ea if ea is not None else eb).keyword or "Private"
        label = f"{where}{name} ({tag.group:04X},{tag.element:04X})"
        n = len(out)
        if ea is None or eb is None:
            out.append(f"{label}: {'absent' if ea is None else 'present'} in the source, "
                       f"{'absent' if eb is None else 'present'} in the export")
        elif ea.VR == "SQ" and eb.VR == "SQ":
            if len(ea.value) != len(eb.value):
                out.append(f"{label}: {len(ea.value)} items != {len(eb.value)}")
            for k, (ia, ib) in enumerate(zip(ea.value, eb.value)):
                _elements_differ(ia, ib, f"{label}[{k}].", out)
        elif ea.VR != eb.VR or ea.value != eb.value:
            out.append(f"{label}: {_short(ea)} != {_short(eb)}")
        out[n:] = [d if isinstance(d, tuple) else (name, d) for d in out[n:]]


def _short(elem) -> str:
    text = repr(elem.value) if elem.VR not in ("OB", "OW", "OF", "OD", "OL", "OV", "UN") \
        else f"<{len(elem.value or b'')} bytes>"
    return f"{elem.VR} {text[:60]}"


def _lossy(ds) -> Optional[str]:
    """What made the source lossy (its transfer syntax or Lossy Image Compression), or None."""
    ts = str(getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "") or "")
    if ts in LOSSY_SYNTAXES:
        return LOSSY_SYNTAXES[ts]
    if str(ds.get("LossyImageCompression", "")).strip() == "01":
        return "Lossy Image Compression 01"
    return None


def compare_files(sources: list[str], exported: list[str]) -> dict:
    """Compare each exported file with the source file of the same SOPInstanceUID.

    Returns counts of files ``identical`` (byte for byte), ``equal`` (every element and
    pixel equal) and ``decompressed`` (equal but for the elements :data:`LOSSY_CHANGES`
    that a decompressed lossy source must change, listed in ``changed``), ``lossy`` (what
    made sources lossy), ``differences`` (lines) and ``missing`` (sources not exported).
    Group lengths are not compared (they follow from the other elements); pixels are
    compared as pydicom decodes them (colour as RGB)."""
    by_uid = {}
    for path in exported:
        by_uid[str(pydicom.dcmread(path, stop_before_pixels=True).SOPInstanceUID)] = path
    found = {"identical": 0, "equal": 0, "decompressed": 0, "lossy": set(), "differences": [],
             "missing": [], "changed": set()}
    for src in sources:
        a = pydicom.dcmread(src)
        out_path = by_uid.get(str(a.SOPInstanceUID))
        if out_path is None:
            found["missing"].append(src)
            continue
        if Path(src).read_bytes() == Path(out_path).read_bytes():
            found["identical"] += 1
            found["equal"] += 1
            continue
        b = pydicom.dcmread(out_path)
        lossy = _lossy(a)
        if lossy:
            found["lossy"].add(lossy)
        named: list = []
        _elements_differ(a.file_meta, b.file_meta, "file meta ", named)
        _elements_differ(a, b, "", named)
        allowed = {n for n, _ in named if lossy and n in LOSSY_CHANGES}
        found["changed"] |= allowed
        diffs = [d for n, d in named if n not in allowed]
        if "PixelData" in a or "PixelData" in b:
            pa, pb = a.pixel_array, b.pixel_array  # colour as a viewer shows it (RGB)
            if pa.shape != pb.shape:
                diffs.append(f"pixels: shape {pa.shape} != {pb.shape}")
            elif not np.array_equal(pa, pb):
                err = int(np.max(np.abs(pa.astype(np.int64) - pb.astype(np.int64))))
                diffs.append(f"pixels: {int(np.count_nonzero(pa != pb))} samples differ "
                             f"(up to {err})")
        if diffs:
            found["differences"].extend(f"{src}: {d}" for d in diffs)
        elif allowed:
            found["decompressed"] += 1
        else:
            found["equal"] += 1
    return found


# ------------------------------------------------------------------------------ demo
def _shown(text: str, folder: str, shown: str) -> str:
    """``text`` naming files under ``folder`` as under ``shown`` (a removed temporary
    folder is not printed)."""
    return text if folder == shown else text.replace(folder + os.sep, "")


@contextlib.contextmanager
def _workdir(output: Optional[str]) -> Iterator[Path]:
    if output is not None:
        Path(output).mkdir(parents=True, exist_ok=True)
        yield Path(output)
    else:
        with tempfile.TemporaryDirectory(prefix="dicube-demo-") as tmp:
            yield Path(tmp)


def run_demo(folder: Optional[str] = None, output: Optional[str] = None,
             series_uid: Optional[str] = None) -> int:
    """Convert, reload, export and compare; print each step. Files go to ``output`` (kept)
    or to a temporary folder removed at the end. Exit status 0 when every element and
    pixel came back as it was."""
    with _workdir(output) as work:
        if folder is None:
            built = build_default_series(work / "source")
            where = f" in {built}" if output is not None else ""
            print(f"no folder given: built a {len(list(built.iterdir()))}-slice series from "
                  f"pydicom's CT_small.dcm{where}")
            rc = _run(str(built), work, series_uid,
                      shown=str(built) if output is not None else "the built series")
        else:
            rc = _run(folder, work, series_uid, shown=folder)
        if output is not None:
            print(f"files kept in {output}: series.dcbs, dicom/")
        else:
            print("(the files were written to a temporary folder, now removed; "
                  "pass -o DIR to keep them)")
    return rc


def _run(folder: str, work: Path, series_uid: Optional[str], shown: str) -> int:
    import dicube
    from .dicom.export import save_to_dicom_folder

    t = time.perf_counter()
    image = dicube.load_from_dicom_folder(folder, series_uid=series_uid)
    read_s = time.perf_counter() - t
    meta = image.dicom_meta
    root = folder if os.path.isdir(folder) else os.path.dirname(folder)
    sources = [os.path.join(root, name) for name in meta.filenames if name]
    dicom_bytes = sum(os.path.getsize(p) for p in sources)
    volume = image.raw_image
    print(f"series: {shown} ({plural(volume.shape[0], 'slice')}, "
          f"{volume.shape[1]}x{volume.shape[2]}, {volume.dtype})")
    print(f"read DICOM: {plural(len(sources), 'file')}, {dicom_bytes / 1e6:.2f} MB in "
          f"{read_s * 1000:.0f} ms; QC status: {dicube.get_dicom_status(meta).name}")

    target = work / "series.dcbs"
    t = time.perf_counter()
    dicube.save(image, target)
    save_s = time.perf_counter() - t
    size = target.stat().st_size
    t = time.perf_counter()
    back = dicube.load(target)
    load_s = time.perf_counter() - t
    same = np.array_equal(back.raw_image, volume) and back.dicom_meta == meta
    print(f"wrote series.dcbs: {size / 1e6:.2f} MB (ratio {dicom_bytes / size:.2f}x) in "
          f"{save_s * 1000:.0f} ms")
    print(f"reloaded it in {load_s * 1000:.0f} ms: pixels and metadata "
          f"{'equal to what was read' if same else 'DIFFER from what was read'}")

    t = time.perf_counter()
    exported = save_to_dicom_folder(back, work / "dicom", overwrite=True)
    export_s = time.perf_counter() - t
    found = compare_files(sources, exported)
    counts = [f"{found['identical']} byte-identical",
              f"{found['equal']} with every element and pixel equal"]
    if found["decompressed"]:
        counts.append(f"{found['decompressed']} equal but for the elements decompression "
                      "changes")
    differing = len({d.split(": ", 1)[0] for d in found["differences"]})
    if differing:
        counts.append(f"{differing} differing")
    print(f"exported {plural(len(exported), 'DICOM file')} in {export_s * 1000:.0f} ms; "
          f"compared with the {plural(len(sources), 'source file')}: " + ", ".join(counts))
    for line in found["differences"][:MAX_LISTED]:
        print(f"  differs: {_shown(line, folder, shown)}")
    if len(found["differences"]) > MAX_LISTED:
        print(f"  ... {len(found['differences']) - MAX_LISTED} more differences")
    for src in found["missing"]:
        print(f"  not exported: {_shown(src, folder, shown)}")
    ok = same and not found["differences"] and not found["missing"]
    if found["lossy"]:
        kinds = ", ".join(sorted(found["lossy"]))
        print(f"the source is lossy-compressed ({kinds}): the .dcbs keeps its decoded pixels "
              f"losslessly (not the original acquisition); compared as a viewer decodes "
              f"them, they are {'equal' if ok else 'NOT equal: see above'}")
        if found["changed"]:
            print("  changed as the standard requires for decompressed lossy data: "
                  + ", ".join(sorted(found["changed"])))
    elif ok:
        print("round trip bit-exact: every element and pixel as it was")
    else:
        print("round trip NOT exact: see the differences above")
    return 0 if ok else 1
