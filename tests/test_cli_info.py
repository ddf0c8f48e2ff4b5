"""``dicube info``: text and JSON descriptions equal what loading the file gives."""
from __future__ import annotations

import json

import numpy as np
import pydicom
import pytest
from cli_helpers import make_dcbs, run_cli, run_script

import dicube


@pytest.fixture(scope="module")
def dcbs_10(sample_10, tmp_path_factory):
    return make_dcbs(sample_10, tmp_path_factory.mktemp("info") / "s10.dcbs")


def test_info_json_matches_load(dcbs_10, sample_10, capsys):
    rc, out, err = run_cli(capsys, "info", "--json", dcbs_10)
    assert rc == 0, err
    d = json.loads(out)
    image = dicube.load(dcbs_10)
    space = image.space
    assert d["ok"] is True and d["path"] == str(dcbs_10)
    assert d["shape"] == list(image.raw_image.shape) == [10, 512, 512]
    assert d["dtype"] == str(image.raw_image.dtype)
    assert d["spacing"] == list(space.spacing)
    assert d["origin"] == list(space.origin)
    assert d["orientation"] == {"x": list(space.x_orientation), "y": list(space.y_orientation),
                                "z": list(space.z_orientation)}
    assert d["rescale"] == {"slope": image.pixel_header.RescaleSlope,
                            "intercept": image.pixel_header.RescaleIntercept}
    assert d["format_version"] == 2 and d["frame_codec"] == "htj2k"
    assert d["file_bytes"] == dcbs_10.stat().st_size

    first = pydicom.dcmread(sorted(sample_10.iterdir())[0], stop_before_pixels=True)
    tags = d["tags"]
    for kw in ("SeriesInstanceUID", "StudyInstanceUID", "Modality", "Manufacturer",
               "SeriesDescription", "PatientID"):
        assert tags[kw] == str(first.get(kw)), kw
    assert tags["SeriesNumber"] == int(first.SeriesNumber)

    assert d["qc"]["status"] == "CONSISTENT" and d["qc"]["source"] == "stored"
    assert d["qc"]["num_slices"] == dicube.load_qc_report(dcbs_10).num_slices == 10

    with dicube.DcbsReader(dcbs_10) as r:
        lengths = r.layout.index["length"].astype(np.int64)
        head = r.layout.header.head_length
    f = d["frames"]
    assert f["count"] == 10
    assert (f["min"], f["max"], f["total"]) == (lengths.min(), lengths.max(), lengths.sum())
    assert f["total"] == d["file_bytes"] - head
    assert f["mean"] == pytest.approx(lengths.mean())
    assert f["raw_bytes"] == image.raw_image.nbytes
    assert f["ratio"] == pytest.approx(image.raw_image.nbytes / lengths.sum(), abs=1e-4)
    assert d["warnings"] == []


def test_info_text(dcbs_10, capsys):
    rc, out, err = run_cli(capsys, "info", dcbs_10)
    assert rc == 0 and err == ""
    lines = {ln.split()[0]: ln.split(None, 1)[1] for ln in out.splitlines()[1:]}
    assert out.splitlines()[0] == str(dcbs_10)
    assert lines["shape"].startswith("10 x 512 x 512 ")
    assert lines["spacing"].startswith("(0.4297, 0.4297, 0.45) mm")
    assert lines["Modality"] == "CT"
    assert lines["QC"] == "CONSISTENT (stored)"
    assert lines["frames"].startswith("10: ") and "raw" in lines["frames"]


def test_info_several_files_through_the_script(dcbs_10, legacy_dcbs, sample_10, tmp_path):
    """JSON Lines for several files; a bad file gives an error object, an error line, exit 1."""
    bad = sorted(sample_10.iterdir())[0]
    proc = run_script("info", "--json", dcbs_10, legacy_dcbs, bad)
    assert proc.returncode == 1
    docs = [json.loads(ln) for ln in proc.stdout.splitlines()]
    assert [d["path"] for d in docs] == [str(dcbs_10), str(legacy_dcbs), str(bad)]
    assert docs[0]["ok"] and docs[1]["ok"] and not docs[2]["ok"]
    assert docs[1]["format_version"] == 1 and docs[1]["shape"] == [10, 512, 512]
    assert docs[1]["qc"]["source"] == "computed"
    assert any("version-1" in w for w in docs[1]["warnings"])
    assert "not a dicube file" in docs[2]["error"]
    assert proc.stderr.strip() == f"dicube info: error: {docs[2]['error']}"
    assert docs[2]["error"].startswith(f"{bad}: ")


def test_typed_error_escaping_a_command_is_one_line(tmp_path, capsys):
    """dicube.cli.main turns any DicomCubeError into `dicube <cmd>: error: <path>: <problem>`."""
    missing = tmp_path / "missing"
    rc, out, err = run_cli(capsys, "demo", missing)
    assert rc == 1
    assert err == f"dicube demo: error: {missing}: no such file or folder\n"
