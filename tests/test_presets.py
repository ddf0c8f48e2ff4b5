"""One table of CT window presets (dicube.windows) for previews and datasets: every name
and alias gives the same (width, level) in dicube.preview, the CLI and dicube.data."""
from __future__ import annotations

import ast
import pathlib

import numpy as np
import pytest

import dicube
from cli_helpers import run_cli
from dicube import windows
from dicube.data import WINDOW_PRESETS, DcbsDataset, resolve_window
from dicube.exceptions import DicomCubeError
from dicube.preview import get_image, parse_contrast

# Radiopaedia, "Windowing (CT)": the values the table documents
RADIOPAEDIA = {"brain": (80, 40), "lung": (1500, -600), "mediastinum": (350, 50),
               "abdomen": (400, 50), "liver": (150, 30), "bone": (1800, 400)}


def _spellings():
    """Every accepted spelling: canonical names, aliases, other case, _ for -."""
    for name in list(windows.PRESETS) + list(windows.ALIASES):
        yield name
        yield name.upper()
        yield name.replace("-", "_")
        yield " " + name.title().replace("-", " ") + " "


def test_one_table_with_documented_values():
    assert WINDOW_PRESETS is windows.PRESETS
    for name, window in RADIOPAEDIA.items():
        assert windows.PRESETS[name] == window
    for alias, target in windows.ALIASES.items():
        assert target in windows.PRESETS and alias not in windows.PRESETS
    doc = windows.__doc__
    assert "radiopaedia.org/articles/windowing-ct" in doc
    for name, (w, level) in windows.PRESETS.items():  # the docstring table lists every value
        assert f"{name:<15}({w:g}, {level:g})" in doc, name


@pytest.mark.parametrize("spelling", sorted(set(_spellings())))
def test_every_name_same_window_in_previews_and_data(spelling):
    expected = windows.lookup(spelling)
    assert expected is not None
    c = parse_contrast(spelling)
    assert (c.kind, c.width, c.center) == ("window", *expected)
    assert c.name == windows.canonical_name(spelling)
    assert resolve_window(spelling) == expected


def test_issue_names_are_aliases_and_unknown_names_fail():
    # the names each side used to reject
    assert parse_contrast("soft_tissue") == parse_contrast("soft-tissue") == parse_contrast("soft")
    assert resolve_window("soft-tissue") == resolve_window("soft_tissue") == resolve_window("soft")
    assert resolve_window("media") == resolve_window("mediastinum") == (350.0, 50.0)
    assert parse_contrast("lung").center == resolve_window("lung")[1] == -600.0
    assert parse_contrast("bone").width == resolve_window("bone")[0] == 1800.0
    for bad in ("nope", "soft tissue x", "", "lung2"):
        assert windows.lookup(bad) is None
        with pytest.raises(DicomCubeError, match="soft-tissue"):
            parse_contrast(bad)
        with pytest.raises(ValueError, match="soft-tissue"):
            resolve_window(bad)


def test_previews_and_dataset_apply_the_same_window(dcbs_samples):
    """A mosaic and a dataset given the same alias map frame 0 of the CT onto the same
    grey levels (up to the DICOM VOI function's (W-1) and rounding: 2 levels of 255)."""
    path = dcbs_samples["sample_10"]
    for name in ("soft_tissue", "Media", "lungs", "BONE"):
        p = get_image(path, position=1.0, image_width=512, contrast=name)  # frame 0
        assert p.slices == [0] and p.window == resolve_window(name)
        ds = DcbsDataset([path], mode="slice", random=False, window=name)
        s = ds[0]
        assert s.frames[0] == 0
        diff = np.abs(np.asarray(p.image, float) - 255 * np.asarray(s.image, float))
        assert diff.max() <= 2, (name, diff.max())


def test_cli_help_lists_every_preset_with_its_values(capsys):
    with pytest.raises(SystemExit):
        run_cli(capsys, "mosaic", "--help")
    flat = " ".join(capsys.readouterr().out.split())
    for name, (w, level) in windows.PRESETS.items():
        assert f"{name} {w:g},{level:g}" in flat, name
    for alias in windows.ALIASES:
        assert alias in flat


def test_windows_module_imports_nothing_of_dicube():
    """Pure data: importable by preview/ and data/ without either importing the other."""
    tree = ast.parse(pathlib.Path(windows.__file__).read_text())
    imported = [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    imported += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    assert all(m in ("__future__", "typing") for m in imported), imported
    for side, other in (("data/intensity.py", "preview"), ("preview/contrast.py", "data")):
        tree = ast.parse((pathlib.Path(dicube.__file__).parent / side).read_text())
        mods = [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
        assert "windows" in mods and not any(m.split(".")[0] == other for m in mods), (side, mods)
    assert np.isfinite(np.array(list(windows.PRESETS.values()))).all()
