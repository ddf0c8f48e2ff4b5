"""dicube.server.index: the archive index built from .dcbs heads, kept up to date."""
from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pydicom
import pytest

from dicube.server import ArchiveIndex, index as index_mod
from dicube.storage.reader import DcbsReader

CT_STUDY = "1.3.6.1.4.1.5962.1.2.1.20040119072730.12322"
MR_STUDY = "1.3.6.1.4.1.5962.1.2.4.20040826185059.5457"


def _sources(folder):
    ds = [pydicom.dcmread(p, stop_before_pixels=True) for p in sorted(folder.iterdir())]
    return {d.SOPInstanceUID: d for d in ds}


def test_index_records_match_the_source_files(serve_archive, serve_sources):
    ix = ArchiveIndex(serve_archive)
    assert ix.counts() == {"patients": 3, "studies": 3, "series": 3, "instances": 12, "errors": 0}
    assert ix.errors() == {}
    for name, src in serve_sources.items():
        sources = _sources(src)
        first = next(iter(sources.values()))
        (study,) = ix.find("STUDY", {"StudyInstanceUID": first.StudyInstanceUID})
        assert study["PatientID"] == first.PatientID
        assert study["PatientName"] == str(first.PatientName)
        assert study["StudyDate"] == first.StudyDate
        assert study["ModalitiesInStudy"] == first.Modality
        assert study["NumberOfStudyRelatedInstances"] == len(sources)
        refs = ix.instances(first.StudyInstanceUID)
        assert {r.sop_uid for r in refs} == set(sources)
        assert all(r.path == serve_archive / name for r in refs)
        assert [r.frame for r in refs] == list(range(len(refs)))
        images = ix.find("IMAGE", {"StudyInstanceUID": first.StudyInstanceUID})
        for rec in images:
            ds = sources[rec["SOPInstanceUID"]]
            assert rec["InstanceNumber"] == ds.InstanceNumber
            assert rec["SOPClassUID"] == ds.SOPClassUID
            assert (rec["Rows"], rec["Columns"]) == (ds.Rows, ds.Columns)
        # each frame of the file is the instance the index says
        ref = refs[-1]
        ds = ix.streaming_reader(ref.path).get_dataset(ref.frame)
        assert ds.SOPInstanceUID == ref.sop_uid


def test_find_matching(serve_archive):
    ix = ArchiveIndex(serve_archive)

    def ids(level="STUDY", **f):
        return sorted(r["PatientID"] for r in ix.find(level, f))

    assert ids() == ["1CT1", "444 1", "4MR1"]
    assert ids(PatientName="compressed*") == ["1CT1", "4MR1"]       # PN: case-insensitive
    assert ids(PatientName="Compressed?amples^MR1") == ["4MR1"]
    assert ids(PatientID="1CT*") == ["1CT1"]
    assert ids(PatientID="1ct1") == []                              # LO: case-sensitive
    assert ids(StudyDate="20040101-20041231") == ["1CT1", "4MR1"]
    assert ids(StudyDate="20040801-") == ["444 1", "4MR1"]
    assert ids(StudyDate="-20040119") == ["1CT1"]
    assert ids(StudyDate="20230720") == ["444 1"]
    assert ids(ModalitiesInStudy="MR") == ["4MR1"]
    assert ids(ModalitiesInStudy="MR\\CT") == ["1CT1", "444 1", "4MR1"]
    assert ids(StudyInstanceUID=f"{CT_STUDY}\\{MR_STUDY}") == ["1CT1", "4MR1"]
    assert ids(AccessionNumber="*") == ids()                        # universal
    assert ids(PatientName="") == ids()
    assert ids("SERIES", Modality="CT", PatientID="1CT1") == ["1CT1"]
    assert ids("SERIES", SeriesNumber="20214") == ["444 1"]
    assert ids("PATIENT", PatientName="STENT*") == ["444 1"]
    assert ids(PatientName="stent") == []                          # no fuzzy: whole value
    assert sorted(r["PatientID"] for r in ix.find("STUDY", {"PatientName": "ste"}, fuzzy=True)) \
        == ["444 1"]
    # limit and offset page through the same order
    whole = ix.find("IMAGE", {"PatientID": "444 1"})
    assert len(whole) == 10
    assert ix.find("IMAGE", {"PatientID": "444 1"}, limit=3, offset=4) == whole[4:7]
    assert ix.find("IMAGE", {"00100020": "444 1"}, limit=0) == []
    assert ix.find("STUDY", {"StudyInstanceUID": "1.2.3"}) == []


@pytest.mark.parametrize("filters", [
    {"StudyDate": "2023-"}, {"StudyDate": "20231301"}, {"StudyDate": "20240101-20230101"},
    {"StudyDate": "20230101-20230202-20230303"}, {"StudyDate": "-"}, {"StudyInstanceUID": "abc"},
    {"NoSuchAttribute": "1"}, {"ffffffff": "1"}, {"SeriesNumber": "x"}, {"StudyTime": "2561"},
    {"PatientWeight": "70"},  # not indexed: refused rather than ignored
])
def test_malformed_filters_raise_value_error(serve_archive, filters):
    ix = ArchiveIndex(serve_archive)
    with pytest.raises(ValueError):
        ix.find("STUDY", filters)


def test_unknown_level_and_negative_paging_raise(serve_archive):
    ix = ArchiveIndex(serve_archive)
    with pytest.raises(ValueError):
        ix.find("FRAME", {})
    with pytest.raises(ValueError):
        ix.find("STUDY", {}, offset=-1)


def _touch_later(path):
    st = os.stat(path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))


def test_refresh_adds_removes_and_rereads_only_changed_files(serve_archive_copy, tmp_path,
                                                             monkeypatch, caplog):
    root = serve_archive_copy
    aside = tmp_path / "MR_small.dcbs"
    shutil.move(root / "MR_small.dcbs", aside)
    reads = []
    real = index_mod._read_parts
    monkeypatch.setattr(index_mod, "_read_parts", lambda p: reads.append(p) or real(p))
    ix = ArchiveIndex(root)
    assert len(reads) == 2 and ix.counts()["studies"] == 2
    reads.clear()
    ix.refresh()
    assert reads == []                                   # nothing changed: nothing opened
    (root / "sub").mkdir()
    shutil.copyfile(aside, root / "sub" / "MR_small.dcbs")
    ix.refresh()
    assert reads == [os.fspath(root / "sub" / "MR_small.dcbs")]
    assert [r["PatientID"] for r in ix.find("STUDY", {"StudyInstanceUID": MR_STUDY})] == ["4MR1"]
    reads.clear()
    _touch_later(root / "CT_small.dcbs")                 # changed (mtime): read again
    ix.refresh()
    assert reads == [os.fspath(root / "CT_small.dcbs")]
    os.remove(root / "sub" / "MR_small.dcbs")
    with caplog.at_level("INFO", logger="dicube.server"):
        ix.refresh()
    assert "0 file(s) added, 0 changed, 1 removed" in caplog.text
    assert ix.find("STUDY", {"StudyInstanceUID": MR_STUDY}) == []
    assert ix.instances(MR_STUDY) == []
    assert ix.counts()["studies"] == 2


def test_watching_notices_a_new_file(serve_archive_copy, tmp_path):
    root = serve_archive_copy
    aside = tmp_path / "MR_small.dcbs"
    shutil.move(root / "MR_small.dcbs", aside)
    with ArchiveIndex(root) as ix:
        ix.start_watching(0.05)
        shutil.copyfile(aside, root / "MR_small.dcbs")
        deadline = time.monotonic() + 10
        while not ix.instances(MR_STUDY) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(ix.instances(MR_STUDY)) == 1
    assert ix._watch is None


def _corrupt_section(path, kind=b"SPAC"):
    with DcbsReader(path) as r:
        sec = r.sections[kind]
    with open(path, "r+b") as f:
        f.seek(sec.offset + sec.length // 2)
        b = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([b[0] ^ 0x55]))


def test_corrupt_file_is_listed_and_only_its_study_fails(serve_archive_copy, caplog):
    root = serve_archive_copy
    _corrupt_section(root / "CT_small.dcbs")
    (root / "notes.txt").write_text("not a dicube file")          # ignored: not .dcbs
    (root / "empty.dcbs").write_bytes(b"")                         # unreadable, no study
    with caplog.at_level("ERROR", logger="dicube.server"):
        ix = ArchiveIndex(root)
    errors = ix.errors()
    assert set(errors) == {root / "CT_small.dcbs", root / "empty.dcbs"}
    assert "checksum" in errors[root / "CT_small.dcbs"]
    assert "CT_small.dcbs" in caplog.text
    assert set(ix.study_errors(CT_STUDY)) == {root / "CT_small.dcbs"}   # attributed to its study
    assert ix.study_errors(MR_STUDY) == {}
    assert ix.counts()["studies"] == 2
    assert len(ix.instances(MR_STUDY)) == 1
    # a file that breaks while served keeps its study known
    _corrupt_section(root / "MR_small.dcbs", b"META")
    _touch_later(root / "MR_small.dcbs")
    ix.refresh()
    assert set(ix.study_errors(MR_STUDY)) == {root / "MR_small.dcbs"}


def test_streaming_readers_are_bounded_and_dropped_when_files_change(serve_archive_copy):
    root = serve_archive_copy
    ix = ArchiveIndex(root, header_cache=2)
    paths = sorted(root.rglob("*.dcbs"))
    readers = [ix.streaming_reader(p) for p in paths]
    assert len(ix._readers) == 2
    assert ix.streaming_reader(paths[-1]) is readers[-1]            # cached
    assert not readers[0].closed                                     # evicted, not closed under use
    _touch_later(paths[-1])
    ix.refresh()
    assert ix.streaming_reader(paths[-1]) is not readers[-1]        # changed file: reopened
    small = ArchiveIndex(root, cached_frames=5)
    for p in paths:
        small.streaming_reader(p)
    assert sum(r.frame_count for r in small._readers.values()) <= 10


def test_duplicate_instances_in_a_second_file_are_served_once(serve_archive_copy, caplog):
    root = serve_archive_copy
    shutil.copyfile(root / "MR_small.dcbs", root / "zz_copy.dcbs")
    with caplog.at_level("WARNING", logger="dicube.server"):
        ix = ArchiveIndex(root)
    (ref,) = ix.instances(MR_STUDY)
    assert ref.path == root / "MR_small.dcbs"
    assert "already served" in caplog.text


def test_not_a_folder(tmp_path):
    from dicube.exceptions import DicomCubeError

    with pytest.raises(DicomCubeError):
        ArchiveIndex(tmp_path / "missing")


def test_synthetic_archive_helper_builds_servable_series(tmp_path):
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    try:
        from _serve_archive import make_archive
    finally:
        sys.path.pop(0)
    done = make_archive(tmp_path, studies=2, series_per_study=2, instances_per_series=3, size=16)
    assert (done["files"], done["instances"]) == (4, 12)
    ix = ArchiveIndex(tmp_path)
    assert ix.counts() == {"patients": 2, "studies": 2, "series": 4, "instances": 12, "errors": 0}
    (study,) = ix.find("STUDY", {"PatientID": "PAT00001"})
    assert study["NumberOfStudyRelatedInstances"] == 6
    ref = ix.instances(study["StudyInstanceUID"])[-1]
    ds = pydicom.dcmread(__import__("io").BytesIO(
        ix.streaming_reader(ref.path).get_dicom_for_frame(ref.frame, force_uncompressed=True)))
    assert ds.SOPInstanceUID == ref.sop_uid and ds.pixel_array.shape == (16, 16)
    assert [r["InstanceNumber"] for r in ix.find("IMAGE", {"SeriesInstanceUID": ref.series_uid})] \
        == [1, 2, 3]


def test_archive_and_lossy_variants_are_indexed(tmp_path, serve_sources, capsys):
    from cli_helpers import run_cli

    for name, to in (("CT_small.dcbs", "dcba"), ("MR_small.dcbs", "dcbl")):
        rc, out, err = run_cli(capsys, "convert", serve_sources[name], "-o", tmp_path, "--to", to)
        assert rc == 0, err
    ix = ArchiveIndex(tmp_path)
    assert ix.errors() == {} and ix.counts()["instances"] == 2
    for study in (CT_STUDY, MR_STUDY):
        (ref,) = ix.instances(study)
        assert ref.path.suffix == (".dcba" if study == CT_STUDY else ".dcbl")
        assert ix.streaming_reader(ref.path).get_dataset(ref.frame).SOPInstanceUID == ref.sop_uid


def test_hostile_wildcards_and_long_values_stay_fast(serve_archive):
    from dicube.server import qido

    ix = ArchiveIndex(serve_archive)
    started = time.monotonic()
    assert ix.find("STUDY", {"PatientName": "*s*t*e*n*t*Z*", "StudyDescription": "*1*1*1*5*"}) \
        != []
    test = qido.matcher("PatientName", "*a" * 40 + "*b")
    assert not test("a" * 20000)                 # a backtracking regex would not return
    assert time.monotonic() - started < 5
    for pattern, text, expected in [("a*b*c", "aXbYc", True), ("a*b*c", "aXbY", False),
                                    ("*ab*ab", "abab", True), ("*ab*ab", "aab", False),
                                    ("?*?", "ab", True), ("?*?", "a", False)]:
        assert qido.matcher("PatientID", pattern)(text) is expected
    with pytest.raises(ValueError):
        ix.find("STUDY", {"PatientID": "x" * 5000})


def test_an_unexpected_error_in_one_file_does_not_stop_the_index(serve_archive_copy, monkeypatch):
    real = index_mod._read_parts

    def flaky(path):
        if path.endswith("MR_small.dcbs"):
            raise KeyError("surprise")
        return real(path)

    monkeypatch.setattr(index_mod, "_read_parts", flaky)
    ix = ArchiveIndex(serve_archive_copy)
    assert ix.errors() == {serve_archive_copy / "MR_small.dcbs": "KeyError: 'surprise'"}
    assert ix.counts()["studies"] == 2


def test_a_long_scan_publishes_what_it_found_so_far(serve_archive_copy, tmp_path, monkeypatch):
    root = serve_archive_copy
    (tmp_path / "later").mkdir()
    for name in ("CT_small.dcbs", "MR_small.dcbs"):
        shutil.move(root / name, tmp_path / "later" / name)
    ix = ArchiveIndex(root)
    assert ix.counts()["studies"] == 1
    for name in ("CT_small.dcbs", "MR_small.dcbs"):
        shutil.copyfile(tmp_path / "later" / name, root / name)
    seen = []
    real = index_mod._read_parts

    def spy(path):
        seen.append((os.path.basename(path), ix.counts()["studies"]))
        return real(path)

    monkeypatch.setattr(index_mod, "_read_parts", spy)
    monkeypatch.setattr(index_mod, "PUBLISH_EVERY", 0.0)
    ix.refresh()
    # the second new file is read after the first one was published; sample_10 never vanished
    assert seen == [("CT_small.dcbs", 1), ("MR_small.dcbs", 2)]
    assert ix.counts()["studies"] == 3
