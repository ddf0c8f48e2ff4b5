"""``dicube verify``: good files pass, one flipped byte anywhere checked is reported."""
from __future__ import annotations

import shutil

import pytest
from cli_helpers import flip_byte, make_dcbs, run_cli, run_script

import dicube
from dicube.storage.format import SEC_META


@pytest.fixture(scope="module")
def dcbs_10(sample_10, tmp_path_factory):
    return make_dcbs(sample_10, tmp_path_factory.mktemp("verify") / "s10.dcbs")


def _copy(src, tmp_path, name):
    return shutil.copy(src, tmp_path / name)


def _layout(path):
    with dicube.DcbsReader(path) as r:
        return r.layout


def test_verify_good_file(dcbs_10, capsys):
    rc, out, err = run_cli(capsys, "verify", dcbs_10)
    assert rc == 0 and err == ""
    assert out.strip() == f"{dcbs_10}: OK (v2, 10 frames decoded, 6 sections; all checksums match)"


def test_verify_flipped_frame_byte(dcbs_10, tmp_path, capsys):
    bad = _copy(dcbs_10, tmp_path, "frame.dcbs")
    layout = _layout(bad)
    flip_byte(bad, layout.header.head_length + int(layout.index["offset"][7]) + 1000)
    rc, out, err = run_cli(capsys, "verify", bad)
    assert rc == 1
    assert out.strip() == f"{bad}: FAILED: checksum mismatch in frame 7"


def test_verify_flipped_metadata_byte(dcbs_10, tmp_path, capsys):
    bad = _copy(dcbs_10, tmp_path, "meta.dcbs")
    flip_byte(bad, _layout(bad).sections[SEC_META].offset + 20)
    rc, out, err = run_cli(capsys, "verify", bad)
    assert rc == 1
    assert out.strip() == f"{bad}: FAILED: checksum mismatch in section META"


def test_verify_several_files_through_the_script(dcbs_10, legacy_dcbs, tmp_path):
    """Legacy files: decoded, with warnings; one bad file makes the exit status 1."""
    bad_header = _copy(dcbs_10, tmp_path, "header.dcbs")
    flip_byte(bad_header, 40)  # frame count, covered by the header checksum
    proc = run_script("verify", dcbs_10, legacy_dcbs, bad_header)
    assert proc.returncode == 1, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == f"{dcbs_10}: OK (v2, 10 frames decoded, 6 sections; all checksums match)"
    assert lines[1] == f"{legacy_dcbs}: OK (v1, 10 frames decoded, 4 sections; no checksums to check)"
    assert any(ln.startswith(f"{legacy_dcbs}: warning: version-1 file") for ln in lines)
    assert f"{bad_header}: FAILED: header checksum mismatch" in lines
    assert "Traceback" not in proc.stderr


def test_verify_legacy_broken_codestream(legacy_dcbs, tmp_path, capsys):
    """Without checksums, a frame whose codestream does not decode is still found."""
    bad = _copy(legacy_dcbs, tmp_path, "legacy.dcbs")
    layout = _layout(bad)
    flip_byte(bad, layout.header.frames_offset + int(layout.index["offset"][2]) + 1)  # SOC marker
    rc, out, err = run_cli(capsys, "verify", bad)
    assert rc == 1
    assert out.splitlines()[0].startswith(f"{bad}: FAILED: frame 2: cannot decode")


def test_verify_reports_a_malformed_qc_report(dcbs_10, tmp_path, capsys):
    """A QC section that is valid JSON but not a report is one typed problem line."""
    from crafting import Crafted

    c = Crafted.read(dcbs_10)
    c.set_section(b"QCRP", b"{}")
    bad = c.write(tmp_path / "qc.dcbs")
    rc, out, _ = run_cli(capsys, "verify", bad)
    assert rc == 1
    assert "QC report:" in out and "KeyError" not in out
