"""The main job runs on the bundled default series and on a given folder."""
from __future__ import annotations

from dicube.cli import main


def test_demo_default_series(capsys):
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    assert "CT_small.dcm" in out and "bit-exact" in out


def test_demo_on_folder(sample_10, capsys):
    assert main(["demo", str(sample_10)]) == 0
    out = capsys.readouterr().out
    assert "10 slices" in out and "bit-exact" in out
