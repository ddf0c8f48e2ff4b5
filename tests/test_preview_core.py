"""Series previews from local sources: slice choice and order, windows, tiles, CLI."""
from __future__ import annotations

import os

import numpy as np
import pydicom
import pytest
from PIL import Image

import dicube
from cli_helpers import run_cli
from dicube.codecs.jph import imdecode_jph
from dicube.exceptions import DicomCubeError, MultipleSeriesError
from dicube.preview import (
    PRESETS,
    DcbsSeries,
    DicomSeries,
    apply_window,
    auto_window,
    get_image,
    mosaic,
    normalized_positions,
    parse_contrast,
    radiological_order,
    reduce_for,
    select_position,
    select_slices,
)
from dicube.storage.reader import DcbsReader


@pytest.fixture(scope="module")
def dcbs200(dcbs_samples):
    return dcbs_samples["sample_200"]


@pytest.fixture(scope="module")
def dcbs10(sample_10, tmp_path_factory):
    path = tmp_path_factory.mktemp("preview") / "s10.dcbs"
    dicube.save(dicube.load_from_dicom_folder(sample_10), path)
    return path


def _file_z(folder) -> dict:
    """file name -> (z, pixels * slope + intercept) of a DICOM folder, read by pydicom."""
    out = {}
    for name in sorted(os.listdir(folder)):
        ds = pydicom.dcmread(os.path.join(folder, name))
        out[name] = (float(ds.ImagePositionPatient[2]),
                     ds.pixel_array.astype(np.float64) * float(ds.RescaleSlope) + float(ds.RescaleIntercept))
    return out


# ----------------------------------------------------------------------- selection
def test_select_slices_even_first_and_last():
    pos = np.linspace(0, 1, 200)
    sel = select_slices(pos, 36)
    assert len(sel) == 36 and sel[0] == 0 and sel[-1] == 199
    assert set(np.diff(sel)) <= {5, 6}  # evenly spaced
    assert list(select_slices(pos[:10], 36)) == list(range(10))  # fewer slices than tiles: all
    assert list(select_slices(pos, 1)) == [0]
    part = select_slices(pos, 5, 0.5, 1.0)
    assert pos[part].min() >= 0.5 and part[-1] == 199 and part[0] == int(np.ceil(0.5 * 199))
    with pytest.raises(DicomCubeError):
        select_slices(pos, 4, 0.8, 0.2)
    with pytest.raises(DicomCubeError):
        select_slices(pos, 4, -0.1, 1.0)


def test_radiological_order_and_positions():
    z = [10.0, 30.0, 20.0, None, 20.0]
    inst = [1, 2, 5, 4, 3]
    order = radiological_order(z, inst)
    assert list(order) == [1, 4, 2, 0, 3]  # z descending, InstanceNumber breaks the tie, no z last
    assert list(normalized_positions([30.0, 20.0, 10.0])) == [0.0, 0.5, 1.0]
    assert list(normalized_positions([None, None, None])) == [0.0, 0.5, 1.0]
    p = np.linspace(0, 1, 11)
    assert select_position(p, 0.0) == 0 and select_position(p, 1.0) == 10
    assert select_position(p, 0.52) == 5 and select_position(p, 0.5, 2) == 7
    assert select_position(p, 0.9, 5) == 10 and select_position(p, 0.1, -5) == 0


def test_contrast_specs_and_window():
    assert parse_contrast("lung").width == 1500 and parse_contrast("lung").center == -600
    assert parse_contrast("media") == parse_contrast("mediastinum")
    assert parse_contrast("SOFT").name == "soft-tissue"
    c = parse_contrast("350,50")
    assert (c.kind, c.width, c.center) == ("window", 350.0, 50.0)
    assert parse_contrast(None).kind == "embedded" and parse_contrast("auto").kind == "auto"
    for bad in ("nope", "0,40", "1,2,3", "a,b"):
        with pytest.raises(DicomCubeError):
            parse_contrast(bad)
    x = np.array([-1000, -126, -125, 0, 50, 224, 225, 3000], np.float32)
    ref = np.clip(np.rint(((x - 49.5) / 349 + 0.5) * 255), 0, 255)  # DICOM linear VOI, W 350 C 50
    assert np.array_equal(apply_window(x, 350, 50), ref.astype(np.uint8))
    assert apply_window(x, 350, 50)[0] == 0 and apply_window(x, 350, 50)[-1] == 255
    v = np.arange(1000, dtype=np.float32)
    ww, wc = auto_window(v)
    assert ww == pytest.approx(np.percentile(v, 98) - np.percentile(v, 2))
    assert wc == pytest.approx((np.percentile(v, 98) + np.percentile(v, 2)) / 2)


def test_reduce_for():
    assert reduce_for((512, 512), 5, 128, 128) == 2
    assert reduce_for((512, 512), 5, 100, 100) == 2
    assert reduce_for((512, 512), 5, 300, 300) == 0
    assert reduce_for((512, 512), 1, 16, 16) == 1
    assert reduce_for((512, 256), 5, 64, 128) == 2


def test_reduced_decode_of_real_ct(dcbs200):
    """Reduced-resolution decode works on real CT (edges overshoot and are clamped) and
    approximates the block mean of the full frame."""
    with DcbsReader(dcbs200) as r:
        cs = r.codestream(100)
        full = r.read_frames([100])[0].astype(np.float64)
    q = imdecode_jph(cs, reduce=2)
    assert q.shape == (128, 128)
    means = full.reshape(128, 4, 128, 4).mean(axis=(1, 3))
    assert np.abs(q - means).mean() < 0.02 * (full.max() - full.min())


# ------------------------------------------------------------------------- mosaics
def test_mosaic_dcbs_slices_order_and_window(dcbs200, sample_200, tmp_path):
    out = tmp_path / "m.png"
    p = mosaic(dcbs200, out, contrast="lung")
    assert p.image.size == (768, 768) and p.image.mode == "L" and p.grid == (6, 6)
    assert len(p.slices) == 36 and -1 not in p.slices
    # frames are stored with z ascending: superior to inferior is 199 down to 0, evenly
    assert p.slices[0] == 199 and p.slices[-1] == 0 and all(np.diff(p.slices) < 0)
    assert set(-np.diff(p.slices)) <= {5, 6}
    assert p.window == (1500.0, -600.0) and p.window_source == "lung"
    # the written file holds the image; a tile equals the reduced frame windowed by hand
    saved = np.asarray(Image.open(out))
    assert np.array_equal(saved, np.asarray(p.image))
    with DcbsReader(dcbs200) as r:
        for k in (0, 7, 35):
            reduced = imdecode_jph(r.codestream(p.slices[k]), reduce=2).astype(np.float32) - 1024
            r0, c0 = divmod(k, 6)
            tile = saved[r0 * 128:(r0 + 1) * 128, c0 * 128:(c0 + 1) * 128]
            assert np.array_equal(tile, apply_window(reduced, 1500, -600))
    # only the 36 frames (and the head) were read
    assert p.stats.requests == 37 and p.stats.bytes < 0.3 * os.path.getsize(dcbs200)


def test_mosaic_folder_matches_dcbs(dcbs200, sample_200):
    a = mosaic(dcbs200)
    b = mosaic(sample_200)
    with DicomSeries(str(sample_200)) as s:
        zb = [s.z[i] for i in b.slices]
        names = [os.path.basename(s._items[i].location) for i in b.slices]
    with DcbsSeries(str(dcbs200)) as s:
        za = [s.z[i] for i in a.slices]
    assert np.allclose(za, zb, atol=1e-3) and all(np.diff(zb) < 0)  # superior to inferior
    assert len(set(names)) == 36
    assert a.window == b.window == (750.0, 90.0) and a.window_source == "embedded"
    # reduced decode vs full decode + Lanczos: the same picture, up to resampling
    diff = np.abs(np.asarray(a.image, float) - np.asarray(b.image, float))
    assert diff.mean() < 6


def test_get_image_full_resolution_is_exact(sample_10):
    ref = _file_z(sample_10)
    p = get_image(sample_10, position=0.0, image_width=512, contrast="350,50")
    by_z = sorted(ref.values(), key=lambda t: -t[0])
    assert p.image.size == (512, 512)
    assert np.array_equal(np.asarray(p.image), apply_window(by_z[0][1], 350, 50))
    p = get_image(sample_10, position=1.0, slice_offset=-2, image_width=512, contrast="bone")
    assert np.array_equal(np.asarray(p.image), apply_window(by_z[-3][1], 1800, 400))


def test_get_image_position_and_offset(dcbs200, tmp_path):
    # 0.5 of 200 slices lies between sorted slices 99 and 100: the more superior one wins
    for pos, off, frame in ((0.0, 0, 199), (1.0, 0, 0), (0.5, 0, 199 - 99), (0.5, 3, 199 - 102),
                            (1.0, 5, 0), (0.0, -5, 199)):
        p = get_image(dcbs200, position=pos, slice_offset=off)
        assert p.slices == [frame], (pos, off)
    out = tmp_path / "one.jpg"
    p = get_image(dcbs200, out, position=0.5, image_width=100, quality=80)
    with Image.open(out) as im:
        assert im.format == "JPEG" and im.size == (100, 100) and im.mode == "L"


def test_get_image_same_slice_from_dcbs_and_folder(dcbs200, sample_200):
    """One rule picks the slice: a .dcbs and the folder it came from show the same slice
    (same z, same pixels) at every position, ties included (0.5 of 200 slices)."""
    from dicube.preview import make_image

    with DcbsSeries(str(dcbs200)) as a, DicomSeries(str(sample_200)) as b:
        za, zb = a.z, b.z
        for pos in (0.0, 0.1, 0.25, 1 / 3, 0.5, 0.5 + 1e-12, 0.75, 0.9, 1.0):
            for off in (0, 1, -2):
                p = make_image(a, position=pos, slice_offset=off, image_width=64)
                q = make_image(b, position=pos, slice_offset=off, image_width=64)
                assert za[p.slices[0]] == zb[q.slices[0]], (pos, off)
        p = make_image(a, position=0.5, image_width=512, contrast="lung")
        q = make_image(b, position=0.5, image_width=512, contrast="lung")
        assert np.array_equal(np.asarray(p.image), np.asarray(q.image))
    # the case: -p 0.5 gave frame 99 of the .dcbs but the folder's frame 100
    assert za[get_image(dcbs200, position=0.5).slices[0]] == pytest.approx(1327.2)


def test_select_position_ties_are_deterministic():
    p = normalized_positions(list(np.arange(199, -1, -1) * 0.45 + 1282.2))
    # rounding puts either neighbour nearer by 1e-12
    assert select_position(p - 1e-12, 0.5) == select_position(p + 1e-12, 0.5) == 99
    assert select_position(np.array([0.0, 0.5, 1.0]), 0.25) == 0
    assert select_position(np.array([0.0, 0.5, 1.0]), 0.75) == 1


def test_cine_without_positions_in_frame_order(tmp_path):
    """A cine (here pydicom's 30-frame ultrasound, no ImagePositionPatient) is shown in
    acquisition order, frame 0 first, from the .dcbs as from the DICOM file; the .dcbs
    used to follow the identity space made up at ingest and showed frames 29 -> 0."""
    from pydicom.data import get_testdata_file

    src = tmp_path / "us"
    src.mkdir()
    (src / "us.dcm").write_bytes(open(get_testdata_file("examples_ybr_color.dcm"), "rb").read())
    path = tmp_path / "us.dcbs"
    dicube.save(dicube.load_from_dicom_folder(src), path)
    for source in (path, src):
        m = mosaic(source, tile_width=6, tile_height=5, image_width=32)
        assert m.slices == list(range(30)), source
        assert get_image(source, position=0.0).slices == [0]
        assert get_image(source, position=1.0).slices == [29]


def test_blank_tiles_and_range(dcbs10, dcbs200):
    p = mosaic(dcbs10, tile_width=6, image_width=32)
    assert p.slices[:10] == list(range(9, -1, -1)) and p.slices[10:] == [-1] * 26
    img = np.asarray(p.image)
    assert img.shape == (192, 192)
    for k in range(36):
        r, c = divmod(k, 6)
        tile = img[r * 32:(r + 1) * 32, c * 32:(c + 1) * 32]
        assert (tile.max() > 0) == (k < 10), k
    q = mosaic(dcbs200, tile_width=4, tile_height=2, start=0.25, end=0.5, image_width=64)
    assert q.image.size == (256, 128) and len(q.slices) == 8
    assert min(q.positions) >= 0.25 and max(q.positions) <= 0.5
    assert q.positions[0] == pytest.approx(0.25, abs=0.006) and q.positions[-1] == pytest.approx(0.5, abs=0.006)


def test_window_sources(dcbs10, tmp_path):
    for name, (ww, wc) in PRESETS.items():
        assert mosaic(dcbs10, tile_width=1, image_width=16, contrast=name).window == (ww, wc)
    auto = mosaic(dcbs10, tile_width=2, image_width=64, contrast="auto")
    assert auto.window_source == "auto" and auto.window[0] > 100
    # a file without a window: embedded falls back to auto
    img = dicube.load(dcbs10)
    img.pixel_header.WindowWidth = img.pixel_header.WindowCenter = None
    bare = tmp_path / "nowindow.dcbs"
    dicube.save(img, bare)
    p = mosaic(bare, tile_width=2, image_width=64)
    assert p.window_source == "auto" and p.window == auto.window


def test_per_slice_rescale(dcbs10, tmp_path):
    img = dicube.load(dcbs10)
    img.pixel_header.RescaleIntercept = [-1024.0 + 100 * i for i in range(10)]
    path = tmp_path / "perslice.dcbs"
    dicube.save(img, path)
    p = get_image(path, position=1.0, image_width=512, contrast="400,0")  # frame 0
    q = get_image(path, position=0.0, image_width=512, contrast="400,0")  # frame 9
    assert p.slices == [0] and q.slices == [9]
    raw = img.raw_image.astype(np.float32)
    assert np.array_equal(np.asarray(p.image), apply_window(raw[0] - 1024, 400, 0))
    assert np.array_equal(np.asarray(q.image), apply_window(raw[9] - 124, 400, 0))


def test_root_and_series_id(sample_10, dcbs10, tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    uuid = "38902e14-b11f-4548-910e-771ee757dc82"
    (root / uuid).symlink_to(sample_10, target_is_directory=True)
    os.symlink(dcbs10, root / "d94176e6-bc8e-4666-b143-639754258d06.dcbs")
    (root / "d9417aaa-0000-0000-0000-000000000000").mkdir()
    full = mosaic(uuid, root=str(root), tile_width=2, image_width=32)
    assert full.location == str(root / uuid)
    assert mosaic(uuid.replace("-", ""), root=str(root), tile_width=2, image_width=32).slices == full.slices
    assert mosaic("3890*", root=str(root), tile_width=2, image_width=32).location == str(root / uuid)
    d = mosaic("d94176*", root=str(root), tile_width=2, image_width=32)
    assert d.location.endswith(".dcbs")
    with pytest.raises(MultipleSeriesError):
        mosaic("d94*", root=str(root))
    with pytest.raises(DicomCubeError):
        mosaic("ffff*", root=str(root))


# --------------------------------------------------------------------------- CLI
def test_cli_mosaic_and_get_image(capsys, dcbs200, sample_10, tmp_path):
    out = tmp_path / "m.webp"
    rc, _, err = run_cli(capsys, "mosaic", dcbs200, out, "-x", "4", "-y", "3", "-w", "64",
                         "--contrast", "lung", "-q", "50", "-v")
    assert rc == 0 and "12 of 200 slices" in err and "1/8 resolution" in err
    with Image.open(out) as im:
        assert im.format == "WEBP" and im.size == (256, 192)
    small, big = tmp_path / "q10.jpg", tmp_path / "q95.jpg"
    assert run_cli(capsys, "mosaic", sample_10, small, "-q", "10")[0] == 0
    assert run_cli(capsys, "mosaic", sample_10, big, "-q", "95")[0] == 0
    with Image.open(big) as im:
        assert im.format == "JPEG" and im.size == (768, 768)
    assert os.path.getsize(big) > os.path.getsize(small)
    one = tmp_path / "one.webp"
    rc, _, _ = run_cli(capsys, "get-image", dcbs200, one, "--position", "0.5", "--slice-offset", "2",
                       "--image-width", "200")
    with Image.open(one) as im:
        assert rc == 0 and im.size == (200, 200)
    for bad in (["mosaic", dcbs200, tmp_path / "x.gif"],
                ["mosaic", dcbs200, out, "--contrast", "nope"],
                ["mosaic", dcbs200, out, "--start", "0.9", "--end", "0.1"],
                ["get-image", tmp_path / "missing.dcbs", one, "--position", "0.5"]):
        rc, _, err = run_cli(capsys, *bad)
        assert rc == 1 and "error:" in err, bad


def test_htj2k_dicom_folder_decodes_reduced(dcbs10, tmp_path):
    """DICOM files holding HTJ2K (here dicube's own codestreams) are decoded at reduced
    resolution too: tiles equal those of the .dcbs exactly (a full decode then resize would not)."""
    folder = tmp_path / "htj2k"
    dicube.save_to_dicom_folder(dicube.load(dcbs10), folder, transfer_syntax="1.2.840.10008.1.2.4.201")
    a = mosaic(dcbs10, tile_width=4, image_width=128)
    b = mosaic(folder, tile_width=4, image_width=128)
    assert np.array_equal(np.asarray(a.image), np.asarray(b.image))


def test_enhanced_multiframe_file(sample_10, tmp_path):
    """One multi-frame file, frames in shuffled order with per-frame positions in the
    functional groups: previewed like the folder of single-frame files."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    files = sorted(os.listdir(sample_10))
    dss = [pydicom.dcmread(os.path.join(sample_10, n)) for n in files]
    perm = np.random.default_rng(1).permutation(len(dss))
    ds = pydicom.dcmread(os.path.join(sample_10, files[0]))
    del ds.ImagePositionPatient
    ds.NumberOfFrames = len(dss)
    per = []
    for k in perm:
        item, pp = Dataset(), Dataset()
        pp.ImagePositionPatient = dss[k].ImagePositionPatient
        item.PlanePositionSequence = Sequence([pp])
        per.append(item)
    ds.PerFrameFunctionalGroupsSequence = Sequence(per)
    ds.PixelData = np.stack([dss[k].pixel_array for k in perm]).tobytes()
    folder = tmp_path / "enhanced"
    folder.mkdir()
    ds.save_as(folder / "enhanced.dcm")
    a = mosaic(sample_10, tile_width=4, image_width=64)
    b = mosaic(folder, tile_width=4, image_width=64)
    assert np.array_equal(np.asarray(a.image), np.asarray(b.image))
    top = get_image(folder, position=0.0, image_width=512, contrast="350,50")
    z = [float(d.ImagePositionPatient[2]) for d in dss]
    best = int(np.argmax(z))
    assert top.slices == [int(np.flatnonzero(perm == best)[0])]
    ref = dss[best].pixel_array * float(dss[best].RescaleSlope) + float(dss[best].RescaleIntercept)
    assert np.array_equal(np.asarray(top.image), apply_window(ref, 350, 50))
