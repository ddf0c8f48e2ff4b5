"""dicube.monai.DcbsImageReader in real MONAI pipelines: the same volume and geometry as MONAI's
own ITKReader on the DICOM folder and NibabelReader on dcm2niix's NIfTI of the shared CT."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import warnings

import numpy as np
import pytest

try:
    import monai  # noqa: F401
except ImportError:  # an optional extra: CI installs it (.ci/setup), elsewhere skip
    if os.environ.get("CI"):
        raise
    pytest.skip("MONAI is not installed (pip install 'dicube[monai]')", allow_module_level=True)

import torch
from monai.data import ITKReader, NibabelReader, PydicomReader
from monai.transforms import (Compose, EnsureChannelFirstd, LoadImage, LoadImaged, Orientationd,
                              Spacingd)

import dicube
from dicube.core.pixel_header import PixelDataHeader
from dicube.monai import DcbsImageReader
from dicube.storage.sources import TransferStats
from preview_servers import require_tool, start_nginx

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning")
AFFINE_TOL = 1e-4  # mm


def pipeline(reader, pixdim):
    return Compose([LoadImaged("image", reader=reader), EnsureChannelFirstd("image"),
                    Orientationd("image", axcodes="RAS"),
                    Spacingd("image", pixdim=pixdim, mode="bilinear")])


def run(reader, path, pixdim=(0.8, 0.8, 1.0)):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pipeline(reader, pixdim)({"image": str(path)})["image"]


def load(reader, path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return LoadImage(reader=reader, image_only=True)(str(path))


@pytest.fixture(scope="module")
def ct(dcbs_samples):
    return str(dcbs_samples["sample_10"])


@pytest.fixture(scope="module")
def nifti(sample_10, tmp_path_factory):
    """dcm2niix's NIfTI of the series (fails under CI when dcm2niix is missing)."""
    exe = require_tool(shutil.which("dcm2niix"), "dcm2niix (Debian package dcm2niix)")
    out = tmp_path_factory.mktemp("dcm2niix")
    subprocess.run([exe, "-z", "y", "-b", "n", "-f", "ct", "-o", str(out), str(sample_10)],
                   check=True, capture_output=True)
    return out / "ct.nii.gz"


@pytest.fixture(scope="module")
def itk(sample_10):
    """MONAI's ITKReader on the folder (with the first slice's DICOM keys): LoadImage's
    result and the whole pipeline's."""
    return {"load": load(ITKReader(series_meta=True), sample_10),
            "pipeline": run(ITKReader(), sample_10)}


@pytest.fixture(scope="module")
def ours(ct):
    return {"load": load(DcbsImageReader(), ct), "pipeline": run(DcbsImageReader(), ct)}


def test_pipeline_equals_itk_on_the_dicom_folder(ours, itk):
    # LoadImaged -> EnsureChannelFirstd -> Orientationd(RAS) -> Spacingd, resampling to 0.8 mm
    p, q = ours["pipeline"], itk["pipeline"]
    assert p.shape == q.shape == (1, 275, 275, 5)
    assert p.dtype == q.dtype == torch.float32
    assert torch.equal(p, q)  # voxel for voxel
    assert np.abs(p.affine.numpy() - q.affine.numpy()).max() < AFFINE_TOL
    # what LoadImage alone gives: the same array, geometry and keys as ITKReader's
    a, b = ours["load"], itk["load"]
    assert torch.equal(a, b) and a.is_contiguous()
    for key in ("affine", "original_affine"):
        assert np.abs(np.asarray(a.meta[key]) - np.asarray(b.meta[key])).max() < AFFINE_TOL
    for key in ("spatial_shape", "spacing"):
        np.testing.assert_allclose(a.meta[key], b.meta[key])
    assert a.meta["space"] == b.meta["space"] == "RAS"
    assert np.isnan(a.meta["original_channel_dim"]) and np.isnan(b.meta["original_channel_dim"])
    # real values (HU), like every MONAI DICOM reader: the rescale intercept is -1024
    assert float(a.min()) == -1024.0


def test_pipeline_equals_nibabel_on_dcm2niix_nifti(ct, nifti):
    # at the series' own spacing every voxel is equal; dcm2niix computes the slice step in
    # float32 (0.4500732 mm for 0.45), so resampled grids differ by that 7e-5 mm drift and
    # are compared through ITK (above), not here
    ours = run(DcbsImageReader(), ct, pixdim=(0.4296875, 0.4296875, 0.45))
    nib = run(NibabelReader(), nifti, pixdim=(0.4296875, 0.4296875, 0.45))
    assert ours.shape == nib.shape == (1, 512, 512, 10)
    assert torch.equal(ours, nib.to(ours.dtype))
    assert np.abs(ours.affine.numpy() - nib.affine.numpy()).max() < AFFINE_TOL


def test_pydicom_reads_z_reversed_and_orientation_undoes_it(ours, sample_10):
    # MONAI's PydicomReader returns this series with the slice axis reversed (its affine
    # says so, z step -0.45); DcbsImageReader follows ITK and NIfTI (z step +0.45).
    # After Orientationd(RAS) all of them agree.
    pyd = load(PydicomReader(), sample_10)
    assert torch.equal(ours["load"], torch.flip(pyd, dims=[2]))
    assert ours["load"].affine[2, 2] > 0 > pyd.affine[2, 2]
    assert torch.equal(ours["pipeline"], run(PydicomReader(), sample_10))


def test_series_meta_matches_itk_series_meta(ct, ours, itk):
    plain = ours["load"]
    ours = load(DcbsImageReader(series_meta=True), ct).meta
    itk = itk["load"].meta
    dicom_keys = {k for k in itk if "|" in k}
    assert len(dicom_keys) > 50 and {k for k in ours if "|" in k} == dicom_keys
    meta = dicube.load_meta(ct)
    vr = {k: meta.get_vr(k.replace("|", "")) for k in dicom_keys}
    assert {"DS", "PN", "FD"} <= set(vr.values())
    for k in dicom_keys:
        if vr[k] in ("FD", "FL"):
            # GDCM prints 6 digits (725.8); dicube gives the stored double
            def nums(text):
                return [float(x) for x in text.split("\\") if x.strip()]

            np.testing.assert_allclose(nums(ours[k]), nums(itk[k]), rtol=1e-5)
        else:  # GDCM keeps the padding space, numbers as written (1367.7, not 1367.70)
            assert ours[k] == itk[k].strip(), k
    assert ours["0008|0060"] == "CT" and ours["0020|0032"] == "-102.08\\-31.26\\1367.7"
    # the default, as ITKReader's: geometry keys only
    assert not [k for k in plain.meta if "|" in k]


def test_series_meta_list_gives_the_named_keys_always(ct):
    meta = load(DcbsImageReader(series_meta=["Modality", "0028|1052", "00100010",
                                             "ContrastBolusRoute"]), ct).meta
    assert meta["Modality"] == "CT" and meta["0028|1052"] == "-1024"
    assert meta["0010|0010"] == "stent Z"
    assert meta["ContrastBolusRoute"] == "IV"
    assert load(DcbsImageReader(series_meta=["AcquisitionComments"]), ct).meta[
        "AcquisitionComments"] == ""  # absent: present as "" so batches still collate


def test_lps_option_keeps_dicom_space(ct, ours):
    ras, lps = ours["load"], load(DcbsImageReader(affine_lps_to_ras=False), ct)
    assert lps.meta["space"] == "LPS" and torch.equal(ras, lps)
    np.testing.assert_allclose(np.diag([-1, -1, 1, 1]) @ lps.affine.numpy(), ras.affine.numpy())
    space = dicube.load(ct).space
    np.testing.assert_allclose(lps.affine.numpy()[:3, 3], space.origin)
    # Orientationd brings both to the same RAS volume
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = run(DcbsImageReader(affine_lps_to_ras=False), ct)
    assert torch.equal(a, ours["pipeline"])


def test_slab_frames_are_slices_of_the_full_read_with_shifted_affine(ct, ours):
    full = ours["load"]
    slab = load(DcbsImageReader(frames=slice(3, 8)), ct)
    assert slab.shape == (512, 512, 5) and torch.equal(slab, full[:, :, 3:8])
    shift = np.eye(4)
    shift[2, 3] = 3  # voxel (0, 0, 3) of the full volume is voxel (0, 0, 0) of the slab
    np.testing.assert_allclose(slab.affine.numpy(), full.affine.numpy() @ shift, atol=1e-9)
    assert list(slab.meta["spatial_shape"]) == [512, 512, 5]
    every2 = load(DcbsImageReader(frames=range(1, 10, 2)), ct)
    assert torch.equal(every2, full[:, :, 1::2])
    step = np.diag([1.0, 1.0, 2.0, 1.0])
    step[2, 3] = 1
    np.testing.assert_allclose(every2.affine.numpy(), full.affine.numpy() @ step, atol=1e-9)
    np.testing.assert_allclose(every2.meta["spacing"], [0.4296875, 0.4296875, 0.9])
    backwards = load(DcbsImageReader(frames=[4, 2, 0]), ct)
    assert torch.equal(backwards, full[:, :, [4, 2, 0]])
    np.testing.assert_allclose(backwards.affine.numpy()[:3, 2], -2 * full.affine.numpy()[:3, 2])
    for uneven in ([0, 1, 5], [3, 3], [-1, 0, 1], []):  # no affine fits: refused at once
        with pytest.raises(ValueError, match="frames"):
            DcbsImageReader(frames=uneven)
    # the slab's first slice metadata is frame 3's
    meta = load(DcbsImageReader(frames=slice(3, 8), series_meta=["InstanceNumber"]), ct).meta
    assert meta["InstanceNumber"] == str(dicube.load_meta(ct).get_values("InstanceNumber")[3])


def test_stored_values_and_dtype_options(ct):
    img = dicube.load(ct)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        raw = LoadImage(reader=DcbsImageReader(rescale=False, dtype=None), image_only=True,
                        dtype=None)(ct)
    arr, _ = DcbsImageReader(rescale=False, dtype=None).get_data(DcbsImageReader().read(ct))
    assert arr.dtype == np.uint16 and arr.flags.c_contiguous
    np.testing.assert_array_equal(arr, img.raw_image.transpose(2, 1, 0))
    assert raw.dtype == torch.int32  # MONAI's own choice for uint16 (torch has no uint16 ops)
    np.testing.assert_array_equal(raw.numpy(), arr)
    reader = DcbsImageReader(dtype=np.float64)
    arr, _ = reader.get_data(reader.read(ct))
    assert arr.dtype == np.float64 and arr.flags.c_contiguous
    np.testing.assert_array_equal(arr, img.get_fdata(np.float64).transpose(2, 1, 0))


def test_per_slice_rescale_is_applied_per_slice(ct, tmp_path):
    img = dicube.load(ct)
    slopes = [1.0 + 0.5 * k for k in range(10)]
    inters = [-1024.0 + k for k in range(10)]
    img.pixel_header = PixelDataHeader(RescaleSlope=slopes, RescaleIntercept=inters,
                                       OriginalPixelDtype="uint16", PixelDtype="uint16")
    path = tmp_path / "varying.dcbs"
    dicube.save(img, path)
    arr, _ = DcbsImageReader().get_data(DcbsImageReader().read(path))
    np.testing.assert_array_equal(arr, img.get_fdata().transpose(2, 1, 0))
    assert arr[0, 0, 9] == img.raw_image[9, 0, 0] * np.float32(5.5) + np.float32(-1015)


def test_rgb_is_channel_last_like_itk(tmp_path):
    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 256, (4, 20, 30, 3), dtype=np.uint8)
    from spacetransformer import Space

    space = Space(shape=(30, 20, 4), origin=(1.0, 2.0, 3.0), spacing=(0.5, 0.6, 2.0))
    path = tmp_path / "rgb.dcbs"
    dicube.save(dicube.DicomCubeImage(rgb, None, None, space), path)
    img = load(DcbsImageReader(), path)
    assert img.meta["original_channel_dim"] == -1 and list(img.meta["spatial_shape"]) == [30, 20, 4]
    np.testing.assert_array_equal(img.numpy(), rgb.transpose(2, 1, 0, 3).astype(np.float32))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        first = LoadImage(reader=DcbsImageReader(), image_only=True, ensure_channel_first=True)(str(path))
    assert first.shape == (3, 30, 20, 4)
    np.testing.assert_allclose(first.affine.numpy(), [[-0.5, 0, 0, -1], [0, -0.6, 0, -2],
                                                      [0, 0, 2, 3], [0, 0, 0, 1]])


def test_a_file_without_geometry_gets_the_identity_with_a_warning(tmp_path):
    path = tmp_path / "nospace.dcbs"
    dicube.save(dicube.DicomCubeImage(np.arange(24, dtype=np.int16).reshape(2, 3, 4)), path)
    reader = DcbsImageReader()
    with pytest.warns(UserWarning, match="no geometry"):
        arr, meta = reader.get_data(reader.read(str(path)))
    np.testing.assert_array_equal(meta["affine"], np.eye(4))
    np.testing.assert_array_equal(arr, np.arange(24).reshape(2, 3, 4).transpose(2, 1, 0))


def test_monai_dataloader_workers_collate_named_keys(ct, tmp_path):
    from monai.data import DataLoader, Dataset

    shutil.copyfile(ct, tmp_path / "b.dcbs")
    items = [{"image": ct}, {"image": str(tmp_path / "b.dcbs")}]
    tf = Compose([LoadImaged("image", reader=DcbsImageReader(
        frames=slice(0, 4), series_meta=["Modality", "SeriesInstanceUID"])),
        EnsureChannelFirstd("image")])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        batch = next(iter(DataLoader(Dataset(items, tf), batch_size=2, num_workers=2)))
    img = batch["image"]
    assert img.shape == (2, 1, 512, 512, 4) and torch.equal(img[0], img[1])
    np.testing.assert_array_equal(img[0, 0].numpy(),
                                  dicube.load(ct, frames=slice(0, 4)).get_fdata().transpose(2, 1, 0))
    assert img.meta["Modality"] == ["CT", "CT"] and len(img.meta["SeriesInstanceUID"]) == 2


def test_several_files_stack_as_channels(ct, tmp_path):
    other = tmp_path / "copy.dcbs"
    shutil.copyfile(ct, other)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        img = LoadImage(reader=DcbsImageReader(), image_only=True)([ct, str(other)])
    assert img.shape == (2, 512, 512, 10) and img.meta["original_channel_dim"] == 0
    assert torch.equal(img[0], img[1])
    small = tmp_path / "small.dcbs"
    dicube.save(dicube.load(ct, frames=slice(0, 4)), small)
    with pytest.raises(dicube.exceptions.DataConsistencyError, match="same affine"):
        DcbsImageReader().get_data(DcbsImageReader().read([ct, str(small)]))


def test_verify_suffix_and_auto_selection(ct, ours):
    r = DcbsImageReader()
    assert r.verify_suffix("a.dcbs") and r.verify_suffix("A.DCBA") and r.verify_suffix("x/b.dcbl")
    assert r.verify_suffix(["a.dcbs", "b.dcbs"]) and not r.verify_suffix(["a.dcbs", "b.nii.gz"])
    assert r.verify_suffix("https://h/b/ct.dcbs?X-Amz-Signature=abc") and r.verify_suffix("s3://b/k.dcbs")
    assert not r.verify_suffix("ct.nii.gz") and not r.verify_suffix("folder") and not r.verify_suffix([])
    # registered with LoadImage, the reader is chosen for .dcbs names only
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loader = LoadImage(image_only=True)
        loader.register(DcbsImageReader())
        assert torch.equal(loader(ct), ours["load"])


def test_archive_variant_reads_like_the_speed_one(tmp_path):
    pytest.importorskip("imagecodecs")  # the archive extra (JPEG XL)
    from spacetransformer import Space

    vol = np.random.default_rng(5).integers(0, 3000, (3, 16, 24), dtype=np.uint16)
    img = dicube.DicomCubeImage(vol, PixelDataHeader(RescaleSlope=1.0, RescaleIntercept=-1024.0,
                                                     OriginalPixelDtype="uint16", PixelDtype="uint16"),
                                None, Space(shape=(24, 16, 3), spacing=(0.7, 0.7, 1.5)))
    dicube.save(img, tmp_path / "a.dcba")
    dicube.save(img, tmp_path / "s.dcbs")
    a, s = load(DcbsImageReader(), tmp_path / "a.dcba"), load(DcbsImageReader(), tmp_path / "s.dcbs")
    assert torch.equal(a, s) and float(a[0, 0, 0]) == vol[0, 0, 0] - 1024.0
    np.testing.assert_array_equal(a.affine.numpy(), s.affine.numpy())


def test_bad_file_is_a_typed_error_naming_it(tmp_path):
    bad = tmp_path / "bad.dcbs"
    bad.write_bytes(b"not a cube at all" * 10)
    with pytest.raises(dicube.exceptions.InvalidCubeFileError, match="bad.dcbs.*not a dicube file"):
        DcbsImageReader().read(str(bad))
    # LoadImage tries its other readers after ours and reports every reader's error
    with pytest.raises(RuntimeError, match="not a dicube file"):
        load(DcbsImageReader(), bad)


def test_url_read_equals_local_and_lets_loadimage_collapse_slashes(ct):
    # LoadImage turns names into pathlib paths ("http:/host/..."); the reader restores them
    server = start_nginx()
    try:
        dest = server.www / "ct.dcbs"
        shutil.copyfile(ct, dest)
        dest.chmod(0o644)
        url = f"{server.url}/ct.dcbs"
        stats = TransferStats()
        remote = load(DcbsImageReader(frames=slice(2, 6), stats=stats), url)
        local = load(DcbsImageReader(frames=slice(2, 6)), ct)
        assert torch.equal(remote, local)
        np.testing.assert_array_equal(remote.affine.numpy(), local.affine.numpy())
        # the head, then frames 2-5 in one ranged request, as nginx logged them
        lines = [ln for ln in server.log_lines() if "/ct.dcbs" in ln]
        assert stats.requests == len(lines) == 2 and all(" 206 " in f" {ln}" for ln in lines)
        assert sum(int(ln.split()[1]) for ln in lines) == stats.bytes < os.path.getsize(ct)
        assert remote.meta["filename_or_obj"].startswith("http:/")  # LoadImage's doing
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            kept = LoadImage(reader=DcbsImageReader(), image_only=True, expanduser=False)(url)
        assert kept.meta["filename_or_obj"] == url
        assert torch.equal(kept[:, :, 2:6], local)
    finally:
        server.stop()


def test_import_without_monai_says_how_to_install():
    code = ("import sys; sys.modules['monai'] = None\n"
            "try:\n    import dicube.monai\nexcept ImportError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert "pip install 'dicube[monai]'" in out.stdout, out.stdout + out.stderr


@pytest.mark.parametrize("stored", [np.uint8, np.int8, np.uint16, np.int16, np.uint32, np.int32])
@pytest.mark.parametrize("real", [np.float32, np.float64])
def test_native_layout_conversion_is_numpys_arithmetic_bit_for_bit(stored, real):
    """The (z, y, x) -> (x, y, z) pass of DcbsImageReader: a multiply then an add in the output
    type (no fused multiply-add), per slice, as numpy computes them; -0.0 kept when no
    intercept is added."""
    from dicube import _native

    rng = np.random.default_rng(5)
    info = np.iinfo(stored)
    raw = rng.integers(info.min, info.max, (37, 19, 45), dtype=stored, endpoint=True)
    raw[0, 0, :3] = 0
    ref = raw.transpose(2, 1, 0)
    slopes = {None: None, "one": np.full(37, -0.3, real), "each": np.linspace(-3, 3, 37).astype(real)}
    inters = {None: None, "one": np.full(37, -1024.5, real), "each": np.linspace(-9, 9, 37).astype(real)}
    for slope in slopes.values():
        for inter in inters.values():
            out = np.empty((45, 19, 37), real)
            _native.to_xyz(raw, out, slope, inter, 2)
            want = np.empty_like(out)
            if slope is not None:
                np.multiply(ref, slope, out=want, dtype=real, casting="unsafe")
                if inter is not None:
                    want += inter
            elif inter is not None:
                np.add(ref, inter, out=want, dtype=real, casting="unsafe")
            else:
                np.copyto(want, ref, casting="unsafe")
            assert out.tobytes() == want.tobytes()


def test_native_layout_conversion_checks_its_arguments():
    from dicube import _native

    raw = np.zeros((3, 4, 5), np.uint16)
    for out, slope in [(np.empty((5, 4, 4), np.float32), None),          # wrong shape
                       (np.empty((5, 4, 3), np.int32), None),            # not float
                       (np.empty((5, 4, 3), np.float32), np.ones(2, np.float32)),  # count
                       (np.empty((5, 4, 3), np.float32), np.ones(3, np.float64))]:  # type
        with pytest.raises(ValueError):
            _native.to_xyz(raw, out, slope, None, 1)
    with pytest.raises(ValueError):
        _native.to_xyz(raw, np.empty((5, 4, 3), np.float32)[::-1], None, None, 1)
