"""PyTorch adapter for :class:`dicube.data.DcbsDataset` (needs ``pip install dicube[torch]``).

>>> from torch.utils.data import DataLoader
>>> ds = TorchDcbsDataset(DcbsDataset.from_folder("train/", mode="slice", window="lung"))
>>> loader = DataLoader(ds, batch_size=32, shuffle=True, num_workers=4, collate_fn=collate)
"""
from __future__ import annotations

from typing import Optional, Sequence

try:
    import torch
    from torch.utils.data import Dataset, default_collate, get_worker_info
except ImportError as exc:  # pragma: no cover - exercised in a subprocess test
    raise ImportError(
        "dicube.torch needs PyTorch: pip install 'dicube[torch]' (or pip install torch); "
        "dicube.data works without it") from exc

import numpy as np

from .data import DcbsDataset, Sample
from .data import collate as _collate

__all__ = ["TorchDcbsDataset", "collate"]


class TorchDcbsDataset(Dataset):
    """A ``torch.utils.data.Dataset`` whose samples are :class:`~dicube.data.Sample`
    with ``image`` a tensor sharing the decoded array's memory (``torch.from_numpy``).

    Inside a DataLoader worker, frames are decoded on one thread unless the wrapped
    dataset sets ``num_threads``: the workers already use the cores.
    """

    def __init__(self, dataset: DcbsDataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Sample:
        threads: Optional[int] = self.dataset.num_threads
        if threads is None and get_worker_info() is not None:
            threads = 1
        s = self.dataset.sample(index, num_threads=threads)
        s.image = torch.from_numpy(s.image)
        return s

    def set_epoch(self, epoch: int) -> None:
        """See :meth:`DcbsDataset.set_epoch` (call it before iterating the DataLoader;
        persistent workers keep the epoch they started with)."""
        self.dataset.set_epoch(epoch)


def collate(samples: Sequence[Sample]) -> dict:
    """DataLoader ``collate_fn``: ``image`` stacked into one tensor (equal shapes needed;
    in a worker straight into shared memory, as torch's default collate does), ``index``
    a tensor, and path, frames, space, affine and meta as lists."""
    batch = _collate(samples, stack=default_collate)
    batch["index"] = torch.from_numpy(np.asarray(batch["index"]))
    return batch
