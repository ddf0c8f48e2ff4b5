"""dicube.torch: tensors without copies, and DataLoader workers giving the same samples."""
from __future__ import annotations

import os

import numpy as np
import pytest

try:
    import torch
except ImportError:  # an optional extra: CI installs it (.ci/setup), elsewhere skip
    if os.environ.get("CI"):
        raise
    pytest.skip("torch is not installed (pip install torch==2.13.0)", allow_module_level=True)

from torch.utils.data import DataLoader

import dicube
from dicube.data import DcbsDataset
from dicube.torch import TorchDcbsDataset, collate


@pytest.fixture(scope="module")
def files(dcbs_samples):
    return [str(dcbs_samples["sample_10"]), str(dcbs_samples["sample_200"])]


def test_tensors_share_the_decoded_memory(files):
    full = dicube.load(files[1]).raw_image
    ds = TorchDcbsDataset(DcbsDataset(files[1:], "slab", slab_size=8, seed=5))
    s = ds[0]
    assert isinstance(s.image, torch.Tensor) and s.image.dtype == torch.uint16
    np.testing.assert_array_equal(s.image.numpy(), full[slice(*s.frames)])
    other = ds[0]  # the first tensor still holds its array: a new one is used
    assert s.image.data_ptr() != other.image.data_ptr()
    ptr = other.image.data_ptr()
    del other
    assert ds[0].image.data_ptr() == ptr  # and reused once the tensor is gone


def _batches(loader) -> list:
    return [(b["image"].clone(), b["index"].tolist(), b["frames"], b["path"], b["meta"],
             [None if a is None else a.tolist() for a in b["affine"]]) for b in loader]


def _same(a: list, b: list) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert torch.equal(x[0], y[0])
        assert x[1:] == y[1:]


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_dataloader_workers_match_single_process(files, dcbs_zstd_samples, method):
    both = files + [str(dcbs_zstd_samples["sample_200"])]  # HTJ2K and zstd frames

    def loader(workers: int, epoch: int = 0):
        ds = TorchDcbsDataset(DcbsDataset(both, "slab", slab_size=4, samples_per_file=5,
                                          seed=21, window="lung", keys=["PatientID"]))
        ds.set_epoch(epoch)
        g = torch.Generator().manual_seed(0)
        kw = {"num_workers": workers, "multiprocessing_context": method} if workers else {}
        return DataLoader(ds, batch_size=3, shuffle=True, generator=g, collate_fn=collate, **kw)

    single = _batches(loader(0))
    assert single[0][0].shape == (3, 4, 512, 512) and single[0][0].dtype == torch.float32
    assert sorted(i for b in single for i in b[1]) == list(range(15))
    for b in single:  # the samples themselves are right, whichever codec holds them
        for img, frames, path in zip(b[0], b[2], b[3]):
            hu = dicube.load(path, frames=slice(*frames)).get_fdata()
            np.testing.assert_allclose(img.numpy(), np.clip((hu + 1350) / 1500, 0, 1), atol=1e-6)
    _same(_batches(loader(2)), single)
    if method == "fork":  # another epoch: other positions, workers still agree
        epoch1 = _batches(loader(0, 1))
        assert [b[2] for b in epoch1] != [b[2] for b in single]
        _same(_batches(loader(2, 1)), epoch1)


def test_unbatched_loader_and_volumes(files):
    ds = TorchDcbsDataset(DcbsDataset(files, "volume"))
    got = list(DataLoader(ds, batch_size=None, num_workers=2, multiprocessing_context="fork"))
    for p, s in zip(files, got):
        assert s.path == p
        np.testing.assert_array_equal(s.image.numpy(), dicube.load(p).raw_image)
