"""dicube.data: samples equal the matching parts of dicube.load, with their space and meta."""
from __future__ import annotations

import multiprocessing as mp
import pickle
import subprocess
import sys

import numpy as np
import pytest
from pathlib import Path

import dicube
from dicube.core.pixel_header import PixelDataHeader
from dicube.data import WINDOW_PRESETS, DcbsDataset, collate, find_dcbs
from dicube.exceptions import DataConsistencyError


@pytest.fixture(scope="module")
def files(dcbs_samples):
    return [str(dcbs_samples["sample_10"]), str(dcbs_samples["sample_200"])]


@pytest.fixture(scope="module")
def loaded(files):
    return {p: dicube.load(p) for p in files}


def _world(meta, frame: int, row: int, col: int) -> np.ndarray:
    """Patient position of a pixel from its DICOM attributes (PS3.3 C.7.6.2.1.1)."""
    ipp = meta.get_array("ImagePositionPatient")[frame]
    iop = meta.get_array("ImageOrientationPatient")[frame]
    ps = meta.get_array("PixelSpacing")[frame]
    return ipp + col * ps[1] * iop[:3] + row * ps[0] * iop[3:]


def test_data_does_not_import_torch(files):
    code = ("import sys, dicube.data as d; ds = d.DcbsDataset([%r], 'slice', window='lung',"
            " keys=['PatientID']); ds[0]; d.collate([ds[0], ds[1 %% len(ds)]]);"
            " assert 'torch' not in sys.modules, 'torch imported'" % files[0])
    subprocess.run([sys.executable, "-c", code], check=True)


def test_volumes_equal_load(files, loaded):
    ds = DcbsDataset(files)
    assert len(ds) == 2
    for i, p in enumerate(files):
        s = ds[i]
        assert s.path == p and s.frames == (0, loaded[p].shape[0])
        np.testing.assert_array_equal(s.image, loaded[p].raw_image)
        assert s.space == loaded[p].space


def test_random_slices_equal_load_and_are_deterministic(files, loaded):
    ds = DcbsDataset(files, "slice", samples_per_file=6, seed=3)
    assert len(ds) == 12
    frames = [ds[i].frames for i in range(len(ds))]
    for i, (z0, z1) in enumerate(frames):
        s = ds[i]
        img = loaded[files[i // 6]]
        assert z1 == z0 + 1 and s.image.shape == img.shape[1:]
        np.testing.assert_array_equal(s.image, img.raw_image[z0])
        assert s.space == dicube.load(s.path, frames=[z0]).space
    again = DcbsDataset(files, "slice", samples_per_file=6, seed=3)
    assert [again[i].frames for i in reversed(range(12))] == frames[::-1]  # order-free
    again.set_epoch(1)
    other_seed = DcbsDataset(files, "slice", samples_per_file=6, seed=4)
    assert [again[i].frames for i in range(12)] != frames
    assert [other_seed[i].frames for i in range(12)] != frames


def test_enumerated_slices_cover_every_frame(files, loaded):
    ds = DcbsDataset(files, "slice", random=False)
    assert len(ds) == 210
    assert [ds[i].frames[0] for i in range(10)] == list(range(10))
    s = ds[-1]
    assert s.path == files[1] and s.frames == (199, 200)
    np.testing.assert_array_equal(s.image, loaded[files[1]].raw_image[199])
    with pytest.raises(IndexError):
        ds[210]


def test_slabs_equal_load_with_their_space_and_affine(files, loaded):
    with pytest.warns(UserWarning, match="fewer than 16 frames"):  # sample_10
        ds = DcbsDataset(files, "slab", slab_size=16, random=False, stride=24)
    p = files[1]
    meta = loaded[p].dicom_meta
    assert len(ds) == 8  # sample_10 is too short; starts 0, 24, ..., 168 of 200
    full = loaded[p]
    for i in range(len(ds)):
        s = ds[i]
        z0, z1 = s.frames
        assert (z0, z1) == (24 * i, 24 * i + 16)
        np.testing.assert_array_equal(s.image, full.raw_image[z0:z1])
        sp = s.space
        assert sp.shape == (full.shape[2], full.shape[1], 16)
        np.testing.assert_allclose(sp.origin, meta.get_array("ImagePositionPatient")[z0], atol=1e-6)
        np.testing.assert_allclose(sp.spacing, full.space.spacing)
        for k, r, c in ((0, 0, 0), (15, 0, 0), (7, 511, 3), (15, 100, 511)):
            np.testing.assert_allclose((s.affine @ [k, r, c, 1])[:3], _world(meta, z0 + k, r, c),
                                       atol=1e-4)


def test_random_slabs_stay_inside_the_file(files, loaded):
    ds = DcbsDataset(files[1:], "slab", slab_size=16, samples_per_file=20, seed=7)
    starts = {ds[i].frames[0] for i in range(20)}
    assert len(starts) > 10 and min(starts) >= 0 and max(starts) <= 184
    s = ds[5]
    np.testing.assert_array_equal(s.image, loaded[files[1]].raw_image[slice(*s.frames)])



def test_files_shorter_than_a_slab(files):
    """sample_10 holds 10 frames: no 16-slice slab. Found when the dataset is made."""
    with pytest.warns(UserWarning, match="1 of 2 files have fewer than 16 frames"):
        ds = DcbsDataset(files, "slab", slab_size=16, samples_per_file=3)
    assert ds.paths == files[1:] and len(ds) == 3 and ds[2].image.shape == (16, 512, 512)
    with pytest.raises(DataConsistencyError, match="fewer than 16 frames") as info:
        DcbsDataset(files, "slab", slab_size=16, short_files="error")
    assert info.value.path == files[0]
    with pytest.warns(UserWarning):
        assert len(DcbsDataset(files, "slab", slab_size=16, random=False)) == 200 // 16
    assert len(DcbsDataset(files, "slab", slab_size=10, samples_per_file=2)) == 4


def test_rescale_and_windows_follow_get_fdata(files, loaded):
    p = files[1]
    fdata = loaded[p].get_fdata()
    s = DcbsDataset([p], "slab", slab_size=8, rescale=True, seed=1)[0]
    assert s.image.dtype == np.float32
    np.testing.assert_array_equal(s.image, fdata[slice(*s.frames)])
    for window, (ww, wc) in (("lung", WINDOW_PRESETS["lung"]), ("dicom", (750.0, 90.0)),
                             ((400, 40), (400.0, 40.0))):
        s = DcbsDataset([p], "slice", window=window, seed=2)[0]
        want = np.clip((fdata[s.frames[0]] - (wc - ww / 2)) / ww, 0, 1)
        np.testing.assert_allclose(s.image, want, atol=1e-6)
        assert 0 < s.image.mean() < 1
    with pytest.raises(ValueError, match="unknown window preset"):
        DcbsDataset([p], window="nope")


@pytest.fixture(scope="module")
def per_slice_file(tmp_path_factory, loaded, files):
    """sample_10 with a rescale that differs per slice."""
    img = loaded[files[0]]
    n = img.shape[0]
    ph = PixelDataHeader(RescaleSlope=[1.0 + 0.5 * i for i in range(n)],
                         RescaleIntercept=[-1024.0 + 10 * i for i in range(n)],
                         OriginalPixelDtype="uint16", PixelDtype="uint16")
    path = tmp_path_factory.mktemp("per_slice") / "rescale.dcbs"
    dicube.save(dicube.DicomCubeImage(img.raw_image, ph, img.dicom_meta, img.space), path)
    return str(path)


def test_per_slice_rescale(per_slice_file):
    fdata = dicube.load(per_slice_file).get_fdata()
    ds = DcbsDataset([per_slice_file], "slab", slab_size=4, random=False, stride=3, rescale=True)
    for i in range(len(ds)):
        s = ds[i]
        np.testing.assert_array_equal(s.image, fdata[slice(*s.frames)])
    s = DcbsDataset([per_slice_file], "slice", samples_per_file=3, rescale=True)[2]
    np.testing.assert_array_equal(s.image, fdata[s.frames[0]])
    s = DcbsDataset([per_slice_file], "slab", slab_size=3, window=(600, 100), seed=4)[0]
    want = np.clip((fdata[slice(*s.frames)] - (100 - 300)) / 600, 0, 1)
    np.testing.assert_allclose(s.image, want, atol=1e-6)
    assert 0 < s.image.mean() < 1


def test_metadata_values(files, loaded):
    keys = ["PatientID", "SliceThickness", "ImagePositionPatient", "00080020"]
    ds = DcbsDataset(files, "slab", slab_size=4, samples_per_file=2, keys=keys)
    for i in range(len(ds)):
        s = ds[i]
        meta = loaded[s.path].dicom_meta
        z0, z1 = s.frames
        assert s.meta["PatientID"] == meta.get_values("PatientID")[z0]
        assert s.meta["SliceThickness"] == pytest.approx(float(meta.get_values("SliceThickness")[z0]))
        assert s.meta["00080020"] == meta.get_values("StudyDate")[z0]
        assert s.meta["ImagePositionPatient"] == meta.get_values("ImagePositionPatient")[z0:z1]
    with pytest.raises(ValueError, match="unknown metadata key 'PatientsName'"):
        DcbsDataset(files, "slice", keys=["PatientsName"])
    s = DcbsDataset(files, "slice", keys=["ImagePositionPatient"])[1]
    assert s.meta["ImagePositionPatient"] == loaded[s.path].dicom_meta.get_values(
        "ImagePositionPatient")[s.frames[0]]


def test_buffers_reused_only_when_free(files):
    for kw in ({}, {"window": "lung"}):
        ds = DcbsDataset(files[1:], "slab", slab_size=4, samples_per_file=8, **kw)
        a, b = ds[0], ds[1]
        assert not np.shares_memory(a.image, b.image)
        ptr = a.image.__array_interface__["data"][0]
        view = a.image[1:]
        del a
        c = ds[2]  # a's array is still referenced by `view`
        assert c.image.__array_interface__["data"][0] != ptr
        del view
        d = ds[3]
        assert d.image.__array_interface__["data"][0] == ptr
        assert not np.shares_memory(d.image, c.image)
        np.testing.assert_array_equal(d.image, DcbsDataset(files[1:], "slab", slab_size=4,
                                      samples_per_file=8, reuse_buffers=False, **kw)[3].image)
    batch = [ds[i] for i in range(3)]  # a batch holds its samples: all distinct
    ptrs = {s.image.__array_interface__["data"][0] for s in batch}
    assert len(ptrs) == 3
    assert collate(batch)["image"].shape == (3, 4, 512, 512)


def _frames_and_sums(ds, indices):
    return [(ds[i].frames, float(ds[i].image.sum()), ds[i].meta) for i in indices]


_INHERITED = {}


def _from_inherited(indices):  # a forked child uses the parent's dataset object as is
    return _frames_and_sums(_INHERITED["ds"], indices)


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_pickle_and_worker_processes(files, method):
    ds = DcbsDataset(files, "slab", slab_size=4, samples_per_file=3, seed=11, keys=["PatientID"])
    want = _frames_and_sums(ds, range(len(ds)))  # handles now open in this process
    assert want[0][2] == {"PatientID": dicube.load_meta(files[0]).get_shared_value("PatientID")}
    clone = pickle.loads(pickle.dumps(ds))
    assert _frames_and_sums(clone, range(len(ds))) == want
    _INHERITED["ds"] = ds
    with mp.get_context(method).Pool(2) as pool:
        if method == "fork":
            got = pool.map(_from_inherited, [[i] for i in range(len(ds))])
        else:
            got = pool.starmap(_frames_and_sums, [(ds, [i]) for i in range(len(ds))])
    assert [g[0] for g in got] == want
    assert ds._files._pid == __import__("os").getpid()


def test_find_dcbs_and_from_folder(dcbs_samples, tmp_path):
    folder = dcbs_samples["sample_10"].parent
    assert find_dcbs(folder) == sorted(str(p) for p in dcbs_samples.values())
    assert len(DcbsDataset.from_folder(folder, "slice", samples_per_file=2)) == 4
    with pytest.raises(DataConsistencyError, match="no files"):
        DcbsDataset.from_folder(tmp_path)
    with pytest.raises(ValueError, match="mode"):
        DcbsDataset([], "cube")


def test_from_folder_finds_every_variant(dcbs_samples, tmp_path):
    """.dcba and .dcbl files are series too; other files are not."""
    img = dicube.load(dcbs_samples["sample_10"], frames=[0, 1])
    for name in ("a.dcbs", "b.dcba", "c.dcbl"):
        dicube.save(img, tmp_path / name)
    (tmp_path / "d.dcbx").write_bytes(b"not a series")
    assert [Path(p).name for p in find_dcbs(tmp_path)] == ["a.dcbs", "b.dcba", "c.dcbl"]
    ds = DcbsDataset.from_folder(tmp_path, "slice", random=False)
    assert len(ds) == 6


def test_torch_adapter_without_torch_says_how_to_install():
    code = ("import sys; sys.modules['torch'] = None\n"
            "try:\n    import dicube.torch\nexcept ImportError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "dicube.torch needs PyTorch" in out.stdout and "dicube[torch]" in out.stdout


@pytest.mark.filterwarnings("ignore:.*version-1 file")  # dicube.load's notes on what v1 lost
def test_legacy_file(legacy_dcbs):
    img = dicube.load(legacy_dcbs)
    ds = DcbsDataset([legacy_dcbs], "slab", slab_size=3, random=False, rescale=True,
                     keys=["PatientID"])
    assert len(ds) == img.shape[0] // 3
    s = ds[1]
    np.testing.assert_array_equal(s.image, img.get_fdata()[3:6])
    assert s.space == dicube.load(legacy_dcbs, frames=slice(3, 6)).space
    assert s.meta["PatientID"] == img.dicom_meta.get_values("PatientID")[3]


def test_iter_batches_match_sequential_batches(files):
    from dicube.data import iter_batches

    ds = DcbsDataset(files, "slice", samples_per_file=5, window="lung", seed=2)
    order = np.random.default_rng(0).permutation(len(ds)).tolist()
    got = list(iter_batches(ds, 4, indices=order, threads=2, prefetch=2))
    assert [len(b["index"]) for b in got] == [4, 4, 2]
    for k, b in enumerate(got):
        want = collate([ds[i] for i in order[4 * k:4 * k + 4]])
        assert b["index"].tolist() == want["index"].tolist() and b["frames"] == want["frames"]
        np.testing.assert_array_equal(b["image"], want["image"])


def test_zstd_frames_give_the_same_samples(files, loaded, dcbs_zstd_samples):
    """A training copy saved with codec="zstd" yields the samples of the HTJ2K file."""
    z = str(dcbs_zstd_samples["sample_200"])
    full = loaded[files[1]]
    for mode, kw in (("slab", {"slab_size": 16}), ("slice", {"window": "lung"}),
                     ("slab", {"slab_size": 5, "rescale": True})):
        zs = DcbsDataset([z], mode, samples_per_file=3, seed=6, **kw)
        hs = DcbsDataset([files[1]], mode, samples_per_file=3, seed=6, **kw)
        for i in range(3):
            a, b = zs[i], hs[i]
            assert a.frames == b.frames and a.space == b.space
            np.testing.assert_array_equal(a.image, b.image)
        if not kw.get("window") and not kw.get("rescale"):
            np.testing.assert_array_equal(a.image, full.raw_image[slice(*a.frames)])
    np.testing.assert_array_equal(DcbsDataset([z])[0].image, full.raw_image)


def test_affine_of_an_oblique_anisotropic_space(tmp_path):
    """Sample affines agree with spacetransformer's own index -> world map, for a slab
    of a volume whose axes are oblique and whose three spacings differ."""
    from spacetransformer import Space

    a, b = np.radians(25), np.radians(-40)
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    rz = np.array([[np.cos(b), -np.sin(b), 0], [np.sin(b), np.cos(b), 0], [0, 0, 1]])
    axes = rz @ rx
    space = Space(shape=(7, 5, 12), origin=(10.0, -20.0, 30.0), spacing=(0.5, 0.8, 2.5),
                  x_orientation=tuple(axes[:, 0]), y_orientation=tuple(axes[:, 1]),
                  z_orientation=tuple(axes[:, 2]))
    arr = np.arange(12 * 5 * 7, dtype=np.int16).reshape(12, 5, 7)
    p = tmp_path / "oblique.dcbs"
    dicube.save(dicube.DicomCubeImage(arr, space=space), p)
    world = space.to_world_transform.matrix
    s = DcbsDataset([p], "slab", slab_size=4, random=False, stride=4)[1]
    assert s.frames == (4, 8)
    for k, j, i in ((0, 0, 0), (3, 0, 0), (1, 4, 0), (2, 3, 6)):
        np.testing.assert_allclose(s.affine @ [k, j, i, 1], world @ [i, j, 4 + k, 1], atol=1e-9)
        np.testing.assert_allclose(s.space.to_world_transform.matrix @ [i, j, k, 1],
                                   world @ [i, j, 4 + k, 1], atol=1e-9)


def test_threads_share_a_small_file_cache(files, dcbs_zstd_samples):
    """With fewer open files allowed than the threads touch, a file dropped from the cache
    while another thread decodes from it stays open until that sample is done."""
    import os

    from dicube.data import iter_batches

    paths = files + [str(dcbs_zstd_samples["sample_10"]), str(dcbs_zstd_samples["sample_200"])]
    ref = DcbsDataset(paths, "slice", samples_per_file=8, seed=3, reuse_buffers=False)
    want = [ref[i].image for i in range(len(ref))]
    ref.close()
    fds = len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else None
    for rep in range(2):
        ds = DcbsDataset(paths, "slice", samples_per_file=8, seed=3, max_open=1)
        order = np.random.default_rng(rep).permutation(len(ds)).tolist()
        for b in iter_batches(ds, 4, indices=order, threads=2):
            for i, img in zip(b["index"].tolist(), b["image"]):
                np.testing.assert_array_equal(img, want[i])
        ds.close()
    if fds is not None:  # readers dropped from the cache were closed, not leaked
        assert len(os.listdir("/proc/self/fd")) <= fds + 1


def test_find_dcbs_follows_links_once_and_survives_loops(dcbs_samples, tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    src = next(iter(dcbs_samples.values()))
    (real / "a.dcbs").write_bytes(open(src, "rb").read())
    top = tmp_path / "top"
    top.mkdir()
    (top / "linked").symlink_to(real, target_is_directory=True)   # a series behind a link
    (top / "loop").symlink_to(top, target_is_directory=True)      # a loop back to the top
    (top / "b.dcbs").write_bytes(open(src, "rb").read())
    found = find_dcbs(top)
    assert found == sorted([str(top / "b.dcbs"), str(top / "linked" / "a.dcbs")])
    assert find_dcbs(top, "*.dcbs") == [str(top / "b.dcbs")]


def test_metadata_reads_only_the_asked_elements(dcbs_samples, tmp_path):
    """Samples parse only the per-slice elements they are asked for: a damaged other one
    does not stop them, an asked damaged one is a MetaDataError naming file and element."""
    import json

    from crafting import Crafted

    from dicube.exceptions import MetaDataError

    c = Crafted.read(dcbs_samples["sample_10"])
    doc = json.loads(c.section(b"META").raw)
    doc["per_slice"]["00200013"][4] = {"vr": "XX", "Value": ["5"]}  # InstanceNumber
    c.set_section(b"META", json.dumps(doc).encode())
    path = c.write(tmp_path / "damaged.dcbs")
    s = DcbsDataset([path], "slice", random=False, keys=["ImagePositionPatient"])[4]
    assert len(s.meta["ImagePositionPatient"]) == 3
    with pytest.raises(MetaDataError, match=r"(?s)damaged\.dcbs.*\(0020,0013\) InstanceNumber"):
        DcbsDataset([path], "slice", random=False, keys=["InstanceNumber"])[4]
