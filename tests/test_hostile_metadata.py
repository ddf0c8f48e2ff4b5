"""Hostile metadata sections (every checksum recomputed): the stored DicomMeta, pixel header,
space and QC report are validated once, when a file is read, so a crafted or damaged file
fails at load / load_meta / streaming-reader open with a MetaDataError naming the file and
the problem, never later (at export) and never with an untyped error.
"""
from __future__ import annotations

import copy
import json
import os
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from crafting import Crafted

import dicube
from dicube.core.pixel_header import PixelDataHeader
from dicube.dicom import meta_validation as mv
from dicube.dicom.dicom_json import dataset_to_json
from dicube.dicom.dicom_meta import DicomMeta
from dicube.dicom.streaming import DcbStreamingReader
from dicube.exceptions import DicomCubeError, MetaDataError


@pytest.fixture(scope="module")
def base(dcbs_samples) -> Path:
    return dcbs_samples["sample_10"]


@pytest.fixture(scope="module")
def meta_doc(base) -> dict:
    return json.loads(Crafted.read(base).section(b"META").raw)


def craft(base: Path, out: Path, kind: bytes, raw) -> Path:
    c = Crafted.read(base)
    c.set_section(kind, raw if isinstance(raw, bytes) else json.dumps(raw).encode())
    return c.write(out)


def assert_meta_error(call, path: Path, *words: str) -> MetaDataError:
    with pytest.raises(MetaDataError) as info:
        call(path)
    msg = str(info.value)
    assert info.value.path == os.fspath(path), msg
    for w in words:
        assert w in msg, msg
    return info.value


def open_stream(path):
    with DcbStreamingReader(path):
        pass


def load_meta_and_use(path):
    """load_meta is lazy: a damaged per-slice element fails when first used."""
    return dicube.load_meta(path).per_slice


READERS = {"load": dicube.load, "load_meta": load_meta_and_use, "stream": open_stream}


# ------------------------------------------------------------------ the metadata model
def _elem_not_dict(d):
    d["shared"]["00080060"] = 5


def _per_slice_string(d):
    d["per_slice"]["00200032"] = "abcdefghij"


def _shared_list(d):
    d["shared"] = [[k, v] for k, v in d["shared"].items()]


def _tag_zz(d):
    d["shared"]["ZZZZZZZZ"] = {"vr": "LO", "Value": ["x"]}


def _int_filenames(d):
    d["filenames"] = list(range(d["num_slices"]))


def _slope_abc(d):
    d["shared"]["00281053"] = {"vr": "DS", "Value": ["abc"]}


def _unknown_vr(d):
    d["per_slice"]["00200013"][4] = {"vr": "XX", "Value": ["5"]}


def _value_not_list(d):
    d["shared"]["00100010"] = {"vr": "PN", "Value": "DOE^JOHN"}


def _bad_base64(d):
    d["shared"]["00291010"] = {"vr": "OB", "InlineBinary": "not base64!"}


def _us_out_of_range(d):
    d["shared"]["00280010"] = {"vr": "US", "Value": [70000]}


def _sequence_item_not_object(d):
    d["shared"]["00081140"] = {"vr": "SQ", "Value": [["00081150"]]}


def _nested_bad_tag(d):
    d["shared"]["00081140"] = {"vr": "SQ", "Value": [{"0008115": {"vr": "UI", "Value": ["1.2"]}}]}


def _slice_info_tag(d):
    d["slice_info"][3]["pixel_tag"] = 7


def _five_of_ten(d):  # consistent in itself, but 5 slices for 10 frames
    d["num_slices"] = 5
    for k in d["per_slice"]:
        d["per_slice"][k] = d["per_slice"][k][:5]
    d["filenames"], d["slice_info"] = d["filenames"][:5], d["slice_info"][:5]


META_CASES = {
    "element_not_dict": (_elem_not_dict, ["(0008,0060) Modality", "not a JSON object"]),
    "per_slice_string": (_per_slice_string, ["(0020,0032)", "not a list"]),
    "shared_list": (_shared_list, ["'shared'", "array"]),
    "tag_zzzzzzzz": (_tag_zz, ["'ZZZZZZZZ'", "8 uppercase hex digits"]),
    "integer_filenames": (_int_filenames, ["filenames", "entry 0", "not a string"]),
    "rescale_slope_abc": (_slope_abc, ["(0028,1053) RescaleSlope", "'abc' is not a number"]),
    "unknown_vr": (_unknown_vr, ["(0020,0013)", "slice 4", "'XX' is not a DICOM VR"]),
    "value_not_list": (_value_not_list, ["(0010,0010)", "Value is a JSON string"]),
    "bad_base64": (_bad_base64, ["(0029,1010)", "not base64"]),
    "us_out_of_range": (_us_out_of_range, ["(0028,0010) Rows", "70000"]),
    "item_not_object": (_sequence_item_not_object, ["(0008,1140)", "sequence item"]),
    "nested_bad_tag": (_nested_bad_tag, ["(0008,1140)", "'0008115'", "hex digits"]),
    "slice_info_pixel_tag": (_slice_info_tag, ["slice_info[3]", "pixel_tag"]),
    "num_slices_5_of_10": (_five_of_ten, ["num_slices is 5 for 10 frames"]),
}


@pytest.mark.parametrize("name", sorted(META_CASES))
def test_bad_metadata_fails_at_load(base, meta_doc, tmp_path, name):
    """Each of these loaded before, and failed (untyped, or not at all) only at export."""
    mutate, words = META_CASES[name]
    d = copy.deepcopy(meta_doc)
    mutate(d)
    path = craft(base, tmp_path / f"{name}.dcbs", b"META", d)
    for call in READERS.values():
        assert_meta_error(call, path, *words)


@pytest.mark.parametrize("value, words", [
    ("1e999", ["num_slices inf", "not a count"]),
    ("-5", ["num_slices -5", "not a count"]),
    ("3e8", ["num_slices 300000000.0", "not a count"]),
    ("true", ["num_slices True", "not a count"]),
])
def test_num_slices_not_a_count(base, meta_doc, tmp_path, value, words):
    d = copy.deepcopy(meta_doc)
    d["per_slice"], d["filenames"], d["slice_info"] = {}, None, None  # nothing else to trip on
    text = json.dumps(d).replace('"num_slices": 10', f'"num_slices": {value}')
    path = craft(base, tmp_path / "n.dcbs", b"META", text.encode())
    for call in READERS.values():
        assert_meta_error(call, path, *words)


def test_num_slices_huge_is_refused_before_allocating(base, meta_doc, tmp_path):
    """num_slices 3e8 (an integer) used to allocate per-slice lists of 3e8 entries (5.8 GB,
    then MemoryError after 20-49 s): now refused against the frame count, cheaply."""
    d = copy.deepcopy(meta_doc)
    d["num_slices"], d["per_slice"], d["filenames"], d["slice_info"] = 300_000_000, {}, None, None
    path = craft(base, tmp_path / "huge.dcbs", b"META", d)
    script = textwrap.dedent(f"""
        import resource, time
        resource.setrlimit(resource.RLIMIT_AS, (1536 << 20, 1536 << 20))
        import dicube
        dicube.load_meta({os.fspath(base)!r})  # imports done
        t = time.perf_counter()
        try:
            dicube.load_meta({os.fspath(path)!r})
            print("LOADED")
        except dicube.DicomCubeError as exc:
            print(type(exc).__name__, time.perf_counter() - t, exc)
        except BaseException as exc:
            print("UNTYPED", type(exc).__name__, exc)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=120).stdout.split(" ", 2)
    assert out[0] == "MetaDataError", out
    assert float(out[1]) < 1.0, out
    assert "num_slices is 300000000 for 10 frames" in out[2] and os.fspath(path) in out[2]


def test_deep_json_in_meta(base, tmp_path):
    """100k levels: orjson refuses beyond 1024, the standard parser used to recurse."""
    path = craft(base, tmp_path / "deep.dcbs", b"META", b"[" * 100_000 + b"]" * 100_000)
    for call in READERS.values():
        assert_meta_error(call, path, "META", "nested too deeply")


def test_sequences_nested_too_deep(base, meta_doc, tmp_path):
    d = copy.deepcopy(meta_doc)
    elem = {"vr": "UI", "Value": ["1.2.3"]}
    for _ in range(mv.MAX_SEQUENCE_DEPTH + 1):
        elem = {"vr": "SQ", "Value": [{"00081150": elem}]}
    d["shared"]["00081140"] = elem
    path = craft(base, tmp_path / "nested.dcbs", b"META", d)
    assert_meta_error(dicube.load_meta, path, "(0008,1140)", "nested more than 64 deep")


# ------------------------------------------------------------------ pixel header, space, QC
def test_rescale_count_names_the_file(base, tmp_path):
    """Used to be DataConsistencyError "RescaleSlope has 3 values" without the file."""
    ph = json.loads(Crafted.read(base).section(b"PIXH").raw)
    ph["RescaleSlope"] = [1.0, 1.0, 1.0]
    path = craft(base, tmp_path / "slope3.dcbs", b"PIXH", ph)
    assert_meta_error(dicube.load, path, "RescaleSlope has 3 values for 10 frames")


@pytest.mark.parametrize("field, value, words", [
    ("RescaleSlope", "abc", ["RescaleSlope 'abc'", "not a finite number"]),
    ("RescaleIntercept", [0.0] * 9 + ["x"], ["RescaleIntercept", "'x'", "per-slice"]),
    ("WindowWidth", [1, 2], ["WindowWidth [1, 2]"]),
    ("Extras", [], ["Extras []"]),
])
def test_bad_pixel_header_fails_at_load(base, tmp_path, field, value, words):
    ph = json.loads(Crafted.read(base).section(b"PIXH").raw)
    ph[field] = value
    path = craft(base, tmp_path / "ph.dcbs", b"PIXH", ph)
    assert_meta_error(dicube.load, path, "pixel header", *words)


def test_pixel_header_from_json_list():
    """A version-1 PIXH section that is a JSON list used to give AttributeError."""
    with pytest.raises(MetaDataError, match="not a JSON object"):
        PixelDataHeader.from_json(b"[1, 2]")
    with pytest.raises(MetaDataError, match="nested too deeply"):
        PixelDataHeader.from_json(b"[" * 100_000 + b"]" * 100_000)


@pytest.mark.parametrize("field, value, words", [
    ("shape", [512, 512, 99], ["space shape [512, 512, 99]", "[512, 512, 10]"]),
    ("origin", [float("nan"), 0.0, 0.0], ["space origin", "3 finite numbers"]),
    ("spacing", "garbage", ["space spacing 'garbage'"]),
])
def test_bad_space_fails_at_load(base, tmp_path, field, value, words):
    sp = json.loads(Crafted.read(base).section(b"SPAC").raw)
    sp[field] = value
    path = craft(base, tmp_path / "sp.dcbs", b"SPAC", sp)
    assert_meta_error(dicube.load, path, *words)


@pytest.mark.parametrize("doc, words", [
    ({}, ["QC report num_slices None"]),
    ({"num_slices": 10, "issues": [{"status": "NOPE", "message": "m", "slices": []}]},
     ["issue 0", "unknown status 'NOPE'"]),
    ({"num_slices": 10, "issues": [{"status": "CONSISTENT", "message": "m", "slices": "1"}]},
     ["issue 0", "slices '1'"]),
])
def test_bad_qc_report(base, tmp_path, doc, words):
    path = craft(base, tmp_path / "qc.dcbs", b"QCRP", doc)
    assert_meta_error(dicube.load_qc_report, path, *words)


def test_image_construction_checks_the_pixel_header():
    raw = np.zeros((2, 4, 4), np.uint16)
    with pytest.raises(MetaDataError, match="RescaleSlope 'abc'"):
        dicube.DicomCubeImage(raw, PixelDataHeader(RescaleSlope="abc"))
    with pytest.raises(MetaDataError, match="PixelDataHeader, not dict"):
        dicube.DicomCubeImage(raw, {"RescaleSlope": 1.0})
    with pytest.raises(DicomCubeError, match="3 values for 2 slices"):
        dicube.DicomCubeImage(raw, PixelDataHeader(RescaleSlope=[1.0, 1.0, 1.0]))


# ------------------------------------------------------------------ the fast check is sound
def _mutations(doc: dict, rng: random.Random):
    """Random small damage anywhere in the elements (values, types, members, keys)."""
    junk = [None, 1, -1, 70000, 1.5, float("inf"), "x", "é", "中", "ZZ", "", [], {}, [1], ["a"],
            {"vr": "UI"}, True, "AAA=", "A===", "1e999", 2 ** 70]
    d = copy.deepcopy(doc)
    holders = []  # (container, key) of every element and value

    def walk(elem):
        if not isinstance(elem, dict):
            return
        for k in list(elem):
            holders.append((elem, k))
        for i, v in enumerate(elem.get("Value", []) if isinstance(elem.get("Value"), list) else []):
            holders.append((elem["Value"], i))
            if isinstance(v, dict):
                for tk in list(v):
                    holders.append((v, tk))
                    walk(v[tk])

    for k in d["shared"]:
        holders.append((d["shared"], k))
        walk(d["shared"][k])
    for k, lst in d["per_slice"].items():
        for i, e in enumerate(lst):
            holders.append((lst, i))
            walk(e)
    for _ in range(rng.randint(1, 3)):
        box, key = rng.choice(holders)
        r = rng.random()
        if r < 0.6:
            box[key] = copy.deepcopy(rng.choice(junk))
        elif r < 0.8 and isinstance(box, dict):
            box[rng.choice(["vr", "Value", "InlineBinary", "BulkDataURI", "0008001"])] = \
                copy.deepcopy(rng.choice(junk))
        elif isinstance(box, dict):
            box.pop(key, None)
    return d


def test_fast_check_never_accepts_what_the_full_walk_refuses(meta_doc):
    """The vectorised check may send a good document to the element-by-element walk, but
    must never pass a document the walk refuses (2000 random mutations)."""
    rng = random.Random(11)
    n = meta_doc["num_slices"]
    assert mv._fast_ok(meta_doc["shared"], meta_doc["per_slice"], n)
    refused = 0
    for _ in range(2000):
        d = _mutations(meta_doc, rng)
        problem = mv.model_problem(d["shared"], d["per_slice"], n)
        if problem is not None:
            refused += 1
            assert not mv._fast_ok(d["shared"], d["per_slice"], n), problem
    assert refused > 1000


def test_real_metadata_takes_the_fast_path(dcbs_samples, legacy_dcbs):
    from dicube.storage.reader import DcbsReader

    for path in dcbs_samples.values():
        with DcbsReader(path) as r:
            d = r.section_json(b"META")
        assert mv._fast_ok(d["shared"], d["per_slice"], d["num_slices"])
    meta = dicube.load_meta(legacy_dcbs)
    assert mv._fast_ok(meta.shared, meta.per_slice, len(meta))


def test_from_json_is_validated():
    good = DicomMeta.from_json_headers([{"00100010": {"vr": "PN", "Value": [{"Alphabetic": "A"}]}}])
    assert DicomMeta.from_json(good.to_json()) == good
    d = good.to_dict()
    d["shared"]["00100010"] = [1, 2]
    with pytest.raises(MetaDataError, match="PatientName: the element is"):
        DicomMeta.from_json(json.dumps(d))


def test_unresolved_pydicom_vr_still_loads(tmp_path):
    """pydicom can leave "US or OW" (LUT Data of an implicit VR file) unresolved and dicube
    then stores that VR: the validation must accept what save wrote."""
    import io

    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ImplicitVRLittleEndian

    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID = "1.2.840.10008.5.1.4.1.1.2", "1.2.3"
    ds.add_new(0x00283006, "US", [1, 2, 3])  # LUTData: "US or OW" in the dictionary
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
    buf = io.BytesIO()
    ds.save_as(buf, implicit_vr=True, little_endian=True, enforce_file_format=True)
    buf.seek(0)
    read = pydicom.dcmread(buf)
    dataset_to_json(read)  # pydicom's first conversion fails and leaves the dictionary VR
    meta = DicomMeta.from_datasets([read])
    assert meta.get_vr("00283006") == "US or OW"
    path = tmp_path / "lut.dcbs"
    dicube.save(dicube.DicomCubeImage(np.zeros((1, 4, 4), np.uint16), dicom_meta=meta), path)
    assert dicube.load_meta(path) == meta


def test_load_checks_the_head_before_decoding_frames(base, meta_doc, tmp_path, monkeypatch):
    """Bad metadata fails load before any frame is read or decoded."""
    from dicube.storage.reader import DcbsReader

    d = copy.deepcopy(meta_doc)
    d["shared"] = []
    path = craft(base, tmp_path / "shared_list.dcbs", b"META", d)

    def no_decoding(*args, **kwargs):
        raise AssertionError("frames decoded before the metadata was checked")

    monkeypatch.setattr(DcbsReader, "read_frames", no_decoding)
    with pytest.raises(MetaDataError, match="shared_list.dcbs"):
        dicube.load(path)
