"""``annotation=patient,technique`` on WADO-RS rendered images and thumbnails (PS3.18
8.3.5.1.3): text burned in where expected, nothing by default, 400 for unknown values."""
from __future__ import annotations

import io

import httpx
import numpy as np
import pydicom
import pytest
from PIL import Image, ImageFont
from pydicom.data import get_testdata_file

from dicube.server.rendered import annotation_lines, parse_params

FONT = getattr(ImageFont, "load_default_imagefont", ImageFont.load_default)()


@pytest.fixture(scope="module")
def ct_small(serve_server):
    """(base URL of CT_small's instance, its pydicom dataset)."""
    ix = serve_server.index
    (study,) = ix.find("STUDY", {"PatientID": "1CT1"})
    (ref,) = ix.instances(study["StudyInstanceUID"])
    base = (f"{serve_server.url}/studies/{ref.study_uid}/series/{ref.series_uid}"
            f"/instances/{ref.sop_uid}")
    return base, pydicom.dcmread(get_testdata_file("CT_small.dcm"))


def _png(url: str, **params) -> np.ndarray:
    r = httpx.get(url, params=params, headers={"Accept": "image/png"}, timeout=30)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/png"
    return np.asarray(Image.open(io.BytesIO(r.content)))


def _changed(a: np.ndarray, b: np.ndarray):
    """(x0, y0, x1, y1) bounding the pixels that differ (exclusive ends), or None."""
    ys, xs = np.nonzero(a != b)
    return None if not len(xs) else (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)


def test_parse_annotation():
    assert parse_params({}).annotation == ()
    assert parse_params({"annotation": "technique,patient"}).annotation == ("patient", "technique")
    assert parse_params({"annotation": "Patient"}, thumbnail=True).annotation == ("patient",)
    for bad in ("", "patient,overlay", "all"):
        with pytest.raises(ValueError, match="annotation"):
            parse_params({"annotation": bad})


def test_annotation_lines_say_patient_and_technique(serve_server, ct_small):
    from dicube.dicom.dicom_meta import DicomMeta

    _, ds = ct_small
    meta = DicomMeta.from_datasets([ds])
    top, bottom = annotation_lines(meta, 0, ("patient", "technique"), (40.0, 400.0))
    assert top == ["CompressedSamples CT1", "ID 1CT1"]
    assert bottom == [f"CT  Se {ds.SeriesNumber}  Im {ds.InstanceNumber}", "W 400  L 40",
                      f"Z {float(ds.ImagePositionPatient[2]):.2f} mm"]
    # hostile metadata: control characters and any length are tamed
    top, _ = annotation_lines(None, 0, ("patient",))
    assert top == ["(no name)", "(no ID)"]


def test_rendered_burns_text_only_when_asked(ct_small):
    base, ds = ct_small
    url = f"{base}/rendered"
    plain = _png(url, window="40,400,linear")
    assert np.array_equal(plain, _png(url, window="40,400,linear"))  # deterministic
    patient = _png(url, window="40,400,linear", annotation="patient")
    technique = _png(url, window="40,400,linear", annotation="technique")
    both = _png(url, window="40,400,linear", annotation="patient,technique")
    step = FONT.getbbox("Ag")[3] + 2
    rows = plain.shape[0]

    x0, y0, x1, y1 = _changed(plain, patient)
    assert x0 <= 2 and y0 <= 4 and y1 <= 2 + 2 * step + 1  # two lines at the top left
    assert abs(x1 - (2 + FONT.getbbox("CompressedSamples CT1")[2] + 1)) <= 2
    assert (patient[y1:] == plain[y1:]).all()

    x0, y0, x1, y1 = _changed(plain, technique)
    assert x0 <= 2 and y0 >= rows - 2 - 3 * step - 1 and y1 <= rows  # three at the bottom
    widest = max(FONT.getbbox(t)[2] for t in (f"CT  Se {ds.SeriesNumber}  Im {ds.InstanceNumber}",
                                              "W 400  L 40",
                                              f"Z {float(ds.ImagePositionPatient[2]):.2f} mm"))
    assert abs(x1 - (2 + widest + 1)) <= 2
    assert (technique[:y0] == plain[:y0]).all()

    top, bottom = slice(0, rows // 2), slice(rows // 2, rows)
    assert np.array_equal(both[top], patient[top]) and np.array_equal(both[bottom], technique[bottom])
    assert both.max() == 255  # white text


def test_thumbnail_and_jpeg_annotation_and_errors(ct_small):
    base, _ = ct_small
    plain = _png(f"{base}/thumbnail")
    marked = _png(f"{base}/thumbnail", annotation="patient")
    assert plain.shape == marked.shape and _changed(plain, marked) is not None
    r = httpx.get(f"{base}/rendered", params={"annotation": "technique"}, timeout=30)
    assert r.status_code == 200 and r.content[:3] == b"\xff\xd8\xff"
    r = httpx.get(f"{base}/rendered", params={"annotation": "burned"}, timeout=30)
    assert r.status_code == 400 and "annotation" in r.json()["error"]
