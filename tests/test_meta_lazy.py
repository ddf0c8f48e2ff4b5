"""Lazy per-slice metadata: ``load_meta`` parses the skeleton, shared elements, filenames and
slice_info of the META document at once and each per-slice element (kept as its JSON text,
delimited by the native scanner cpp/json_spans.cpp) on first use. Everything built from the
DicomMeta is the same as from the whole-document reading, and a crafted element gives a
MetaDataError naming the file and the element, at load_meta or at first use, never a wrong
value.
"""
from __future__ import annotations

import copy
import json
import os
import pickle
import random

import numpy as np
import pytest
from crafting import Crafted
from test_hostile_metadata import _mutations

import dicube
from dicube import _native
from dicube.core.io import meta_from_reader
from dicube.dicom.dicom_meta import DicomMeta, _LazyPerSlice
from dicube.dicom.meta_validation import INTERPRETED
from dicube.exceptions import MetaDataError
from dicube.jsontext import parse_json
from dicube.storage.reader import DcbsReader

IPP, INSTANCE = "00200032", "00200013"


@pytest.fixture(scope="module")
def base(dcbs_samples):
    return dcbs_samples["sample_10"]


@pytest.fixture(scope="module")
def meta_text(base) -> bytes:
    return Crafted.read(base).section(b"META").raw


def craft(base, out, text: bytes):
    c = Crafted.read(base)
    c.set_section(b"META", text)
    return c.write(out)


def eager(path) -> DicomMeta:
    with DcbsReader(path) as r:
        return meta_from_reader(r)


def parsed(meta: DicomMeta) -> set:
    ps = meta._per_slice
    return set(ps._values) if type(ps) is _LazyPerSlice else set(ps)


# ------------------------------------------------------------------ the same DicomMeta
@pytest.mark.parametrize("name", ["sample_10", "sample_200"])
def test_lazy_equals_the_whole_reading(dcbs_samples, name, tmp_path):
    path = dcbs_samples[name]
    ref = eager(path)
    meta = dicube.load_meta(path)
    assert type(meta._per_slice) is _LazyPerSlice
    assert parsed(meta) <= set(INTERPRETED)  # nothing else parsed by load_meta
    n = len(ref)
    # the per-slice accessors parse only the element asked for
    np.testing.assert_array_equal(meta.get_array(IPP), ref.get_array(IPP))
    assert meta.get_values("InstanceNumber") == ref.get_values("InstanceNumber")
    assert parsed(meta) <= set(INTERPRETED) | {IPP, INSTANCE}
    assert meta.keys() == ref.keys() and len(meta.keys()) > 50
    for key in ref.keys():
        assert key in meta and meta.is_shared(key) == ref.is_shared(key)
        assert meta.get_vr(key) == ref.get_vr(key), key
        assert meta.presence(key) == ref.presence(key), key
        assert meta.get_element(key, n - 1) == ref.get_element(key, n - 1), key
        assert meta.get_values(key) == ref.get_values(key), key
    assert type(meta._per_slice) is _LazyPerSlice  # still lazy after reading every element
    assert repr(meta) == repr(ref)
    assert meta.slice_json(3) == ref.slice_json(3)
    assert meta.index(n - 1) == ref.index(n - 1)
    assert meta.file_meta(0) == ref.file_meta(0)
    assert meta.table() == ref.table()
    assert meta.to_json() == ref.to_json()  # byte for byte
    assert meta == ref and meta.subset([2, 0]) == ref.subset([2, 0])
    assert type(meta.per_slice) is dict and meta.per_slice == ref.per_slice
    again = dicube.load_meta(path)
    assert pickle.loads(pickle.dumps(again)) == ref
    assert copy.deepcopy(again).to_json() == ref.to_json()
    # save after load_meta: the same metadata written again
    img = dicube.DicomCubeImage(np.zeros((n, 4, 4), np.uint16), dicom_meta=dicube.load_meta(path))
    out = tmp_path / "again.dcbs"
    dicube.save(img, out)
    assert Crafted.read(out).section(b"META").raw == Crafted.read(path).section(b"META").raw


def test_legacy_and_reformatted_documents_load(legacy_dcbs, base, meta_text, tmp_path):
    """Version 1 files, and documents written another way (indented, keys reordered,
    escaped), read as before."""
    meta = dicube.load_meta(legacy_dcbs)
    assert len(meta) == 10 and meta.get_values("InstanceNumber") == eager(legacy_dcbs).get_values(
        "InstanceNumber")
    doc = json.loads(meta_text)
    ref = eager(base)
    for i, text in enumerate([
            json.dumps(doc, indent=2).encode(),
            json.dumps(dict(reversed(list(doc.items())))).encode(),
            json.dumps(doc, ensure_ascii=True).replace('"per_slice"', '"per\\u005fslice"').encode(),
            b"\n " + meta_text + b" \n"]):
        path = craft(base, tmp_path / f"r{i}.dcbs", text)
        meta = dicube.load_meta(path)
        assert meta == ref and meta.get_array(IPP).shape == (10, 3)


# ------------------------------------------------------------------ hostile elements
def assert_names(exc: MetaDataError, path, *words):
    assert exc.path == os.fspath(path), str(exc)
    for w in words:
        assert w in str(exc), str(exc)


def test_bad_element_fails_at_first_use(base, meta_text, tmp_path):
    doc = json.loads(meta_text)
    doc["per_slice"][INSTANCE][4] = {"vr": "XX", "Value": ["5"]}
    path = craft(base, tmp_path / "xx.dcbs", json.dumps(doc).encode())
    meta = dicube.load_meta(path)
    assert meta.get_array(IPP).shape == (10, 3)  # the other elements still read
    for use in (lambda: meta.get_values("InstanceNumber"), lambda: meta.get_vr(INSTANCE),
                lambda: meta.presence(INSTANCE), meta.to_json, lambda: meta.slice_json(0),
                lambda: meta.per_slice, lambda: meta == eager(base)):
        with pytest.raises(MetaDataError) as info:
            use()
        assert_names(info.value, path, "(0020,0013) InstanceNumber", "slice 4",
                     "'XX' is not a DICOM VR")


@pytest.mark.parametrize("new, words", [
    (b'"Value":[-"-', ["(0020,0032) ImagePositionPatient", "not valid JSON"]),
    (b'"Value":["-\xff', ["(0020,0032) ImagePositionPatient", "not valid JSON"]),
    (b'"Value":[1e999,"-', ["(0020,0032)", "slice 0", "inf is not a string (DS)"]),
    (b'"Value":[123456789012345678901234567890,"-', None),
])
def test_bad_text_in_an_element(base, meta_text, tmp_path, new, words):
    """Text the JSON parser refuses, or reads (beyond 64 bits, 1e999) only with the standard
    parser, inside one element: reported when that element is used, naming it (or read
    as the whole reading reads it)."""
    old = b'"Value":["-'
    at = meta_text.index(old, meta_text.index(b'"' + IPP.encode() + b'":['))
    path = craft(base, tmp_path / "t.dcbs", meta_text[:at] + new + meta_text[at + len(old):])
    meta = dicube.load_meta(path)
    assert meta.get_values("InstanceNumber") == eager(base).get_values("InstanceNumber")
    if words is None:
        assert meta == eager(path) and meta.get_element(IPP, 0) == eager(path).get_element(IPP, 0)
        return
    with pytest.raises(MetaDataError) as info:
        meta.get_array(IPP)
    assert_names(info.value, path, *words)


def test_nested_keys_are_not_members(base, meta_text, tmp_path):
    """A sequence item holding '"HEX":[...]' (what a per-slice member looks like) must not
    show up as a per-slice element: the scanner delimits by brackets, not by look."""
    doc = json.loads(meta_text)
    fake = {"00291011": [{"vr": "LO", "Value": ["FAKE"]}] * 10}
    doc["per_slice"]["00291010"] = [{"vr": "SQ", "Value": [fake]}] + [None] * 9
    text = json.dumps(doc, separators=(",", ":")).encode()
    assert b',"00291011":[{"vr":"LO"' not in text and b'{"00291011":[{"vr":"LO"' in text
    path = craft(base, tmp_path / "fake.dcbs", text)
    meta = dicube.load_meta(path)
    assert "00291011" not in meta and "00291011" not in meta.keys()
    assert meta.get_values("00291011") == [None] * 10
    with pytest.raises(MetaDataError) as info:
        meta.get_values("00291010")
    assert_names(info.value, path, "(0029,1010)", "slice 0", "item element (0029,1011)")


@pytest.mark.parametrize("mutate, words", [
    (lambda t: t.replace(b'"00200032":[{', b'"00200032":[{{', 1), ["section META", "not valid JSON"]),
    (lambda t: t.replace(b'"00200032":[', b'"00200032":["\\', 1), ["section META", "not valid JSON"]),
    (lambda t: t.replace(b'"00200032":[', b'"00200032":"x', 1), ["section META", "not valid JSON"]),
    (lambda t: t.replace(b'"00200032":[', b'"00200032":null,"00200032":[', 1), []),
    (lambda t: t.replace(b'"00200032":[', b'"00280010":[', 1), ["(0028,0010)", "both shared and per slice"]),
    (lambda t: t.replace(b'"00200032":[', b'"0020003z":[', 1), ["'0020003z'", "hex digits"]),
    (lambda t: t.replace(b'"00200032":[', b'"00200032":7,"00280100":[1],"x":[', 1), ["not a list"]),
])
def test_damage_the_scan_refuses_fails_at_load_meta(base, meta_text, tmp_path, mutate, words):
    """Structure damage, odd members or bad keys: the whole document is read, as before
    (the same errors at load_meta; a duplicate key read as the parser reads it)."""
    text = mutate(meta_text)
    assert text != meta_text
    path = craft(base, tmp_path / "m.dcbs", text)
    with DcbsReader(path) as r:
        assert DicomMeta.from_json_lazy(r.section_bytes(b"META"), r.frame_count, path) is None
    if not words:
        assert dicube.load_meta(path) == DicomMeta.from_dict(json.loads(text))
        return
    with pytest.raises(MetaDataError) as info:
        dicube.load_meta(path)
    assert_names(info.value, path, *words)


def test_interpreted_elements_are_checked_at_load_meta(base, meta_text, tmp_path):
    doc = json.loads(meta_text)
    bits = doc["shared"].pop("00280100")
    doc["per_slice"]["00280100"] = [bits] * 9 + [{"vr": "LO", "Value": ["16"]}]
    path = craft(base, tmp_path / "bits.dcbs", json.dumps(doc).encode())
    with pytest.raises(MetaDataError) as info:
        dicube.load_meta(path)
    assert_names(info.value, path, "(0028,0100) BitsAllocated", "of slice 9", "VR LO")


def test_lazy_agrees_with_the_whole_reading_under_mutation(meta_text):
    """Random damage to elements (120 documents) and to the text (300): the lazy reading
    either declines (None: the whole reading runs), or gives exactly the whole reading's
    DicomMeta, or raises MetaDataError (when used) where the whole reading fails."""
    rng = random.Random(7)
    doc = json.loads(meta_text)
    texts = [json.dumps(_mutations(doc, rng), separators=(",", ":")).encode() for _ in range(120)]
    for _ in range(300):
        b = bytearray(meta_text)
        for _ in range(rng.randint(1, 3)):
            b[rng.randrange(len(b))] = rng.choice(b'{}[]",:\\ x1')
        texts.append(bytes(b))
    declined = failed = 0
    for text in texts:
        try:
            ref = DicomMeta.from_dict(parse_json(text, "META"), 10).to_json()
        except MetaDataError:
            ref = None
        try:
            lazy = DicomMeta.from_json_lazy(text, 10, "p.dcbs")
        except Exception as exc:  # noqa: BLE001 - from_json_lazy declines, never raises
            raise AssertionError(f"from_json_lazy raised {exc!r}") from exc
        if lazy is None:
            declined += 1
            continue
        for key in rng.sample(lazy.keys(), 5):  # some elements used first, in any order
            try:
                lazy.get_values(key)
            except MetaDataError as exc:
                assert ref is None and exc.path == "p.dcbs"
        try:
            got = lazy.to_json()
        except MetaDataError as exc:
            assert ref is None and exc.path == "p.dcbs"
            failed += 1
            continue
        assert got == ref
    assert declined > 50 and failed > 50


# ------------------------------------------------------------------ the scanner
def test_scanner_delimits_as_the_parser_does():
    """Random JSON (strings full of quotes, backslashes and brackets, nesting, whitespace):
    the member spans are exactly the parser's members; damaged text either gives spans or
    None, never an error; the expanded member's spans are those of its own scan."""
    rng = random.Random(3)
    atoms = [1, -2.5, 'a"b', 'x,"y":[', "\\", '\\"', "{[}]", None, True, "é", "00200013", ""]

    def value(d=0):
        r = rng.random()
        if d > 4 or r < 0.3:
            return rng.choice(atoms)
        if r < 0.6:
            return [value(d + 1) for _ in range(rng.randint(0, 3))]
        return {rng.choice(["a", '"', "\\", "[", "00200013"]) + str(k): value(d + 1)
                for k in range(rng.randint(0, 3))}

    checked = 0
    for _ in range(3000):
        obj = {rng.choice(["", '"', "\\", "p"]) + str(k): value() for k in range(rng.randint(0, 5))}
        text = json.dumps(obj, ensure_ascii=rng.random() < 0.5, indent=rng.choice([None, 1])).encode()
        if rng.random() < 0.4:
            b = bytearray(text)
            b[rng.randrange(len(b))] = rng.choice(b'{}[]",:\\ x')
            text = bytes(b)
        found = _native.json_object_spans(text, 0, b'"p0"')
        try:
            pairs = json.loads(text, object_pairs_hook=lambda p: p)
        except ValueError:
            continue
        if not isinstance(pairs, list) or (pairs and not isinstance(pairs[0], tuple)):
            continue  # not an object
        assert found is not None, text
        spans, inner = found
        assert spans[0] == len(text.rstrip())
        got = [(json.loads(text[spans[i]:spans[i + 1]]),
                json.loads(text[spans[i + 2]:spans[i + 3]], object_pairs_hook=lambda p: p))
               for i in range(1, len(spans), 4)]
        assert got == pairs, text
        objs = [spans[i + 2] for i in range(1, len(spans), 4)
                if text[spans[i]:spans[i + 1]] == b'"p0"' and text[spans[i + 2]] == ord("{")]
        assert (inner is None) == (not objs)
        if objs:
            assert inner == _native.json_object_spans(text, objs[-1])[0]
        checked += 1
    assert checked > 1500
    assert _native.json_object_spans(b"[" * 2000 + b"]" * 2000, 0) is None
    assert _native.json_object_spans(b'{"a":' + b"[" * 1100 + b"]" * 1100 + b"}", 0) is None
    assert _native.json_object_spans(b'{"a":"\\\\\\"}', 0) is None  # the quote is escaped
    assert _native.json_object_spans(b'{"a":"\\\\"}', 0)[0] == [10, 1, 4, 5, 9]


# ------------------------------------------------------------------ per-slice numbers
def _reference_array(vals, dtype=np.float64):
    """get_array as it was (element by element)."""
    width = max((len(v) if isinstance(v, list) else 1 for v in vals if v is not None), default=1)
    out = np.full((len(vals), width), np.nan, dtype=dtype)
    for i, v in enumerate(vals):
        seq = v if isinstance(v, list) else [v]
        for j, x in enumerate(seq[:width]):
            if isinstance(x, (int, float)) and not isinstance(x, bool):
                out[i, j] = x
    return out[:, 0] if width == 1 else out


@pytest.mark.parametrize("vr, texts", [
    ("DS", [["1.5", " -2 ", "3e2"], ["0", "1", "2"], ["4", "5", "6"]]),
    ("DS", [["1.5"], ["2"], ["1e999"]]),
    ("DS", [["1.5", "2"], [""], ["x"]]),
    ("DS", [["1.5", "2"], ["1", "2", "3"], []]),
    ("DS", [["1_0"], ["nan"], [" 7"]]),
    ("IS", [["5"], ["5.0"], ["99999999999999999999"]]),
    ("IS", [["5", "6"], ["7", "8"], ["1.5", "2"]]),
    ("IS", [["5"], [" "], ["6"]]),
    ("DS", [[1.5], ["2"], ["3"]]),
])
@pytest.mark.parametrize("absent", [None, 1])
def test_numbers_as_element_by_element(vr, texts, absent):
    """get_values / get_array of per-slice DS and IS convert whole lists at once: the same
    values (types included) as json_value_to_python element by element."""
    from dicube.dicom.dicom_json import json_value_to_python

    headers = [{"00200013": {"vr": vr, "Value": t}, "00080018": {"vr": "UI", "Value": [str(i)]}}
               for i, t in enumerate(texts)]
    if absent is not None:
        del headers[absent]["00200013"]
    meta = DicomMeta.from_json_headers(headers)
    want = [None if e is None else json_value_to_python(e) for e in meta.per_slice["00200013"]]
    got = meta.get_values("00200013")
    assert repr(got) == repr(want) and [type(x) for x in got] == [type(x) for x in want]
    np.testing.assert_array_equal(meta.get_array("00200013"), _reference_array(want))
