"""Training data loading over .dcbs files with numpy only (no torch import).

>>> ds = DcbsDataset.from_folder("train/", mode="slab", slab_size=16, window="lung")
>>> s = ds[0]; s.image.shape, s.space, s.frames

See docs/training.md; :mod:`dicube.torch` wraps the dataset for PyTorch.
"""
from .buffers import BufferPool
from .dataset import DcbsDataset, Sample, affine_of, collate, find_dcbs
from .intensity import WINDOW_PRESETS, resolve_window, to_float
from .loader import iter_batches
from .sampling import MODES, sample_rng

__all__ = ["DcbsDataset", "Sample", "find_dcbs", "collate", "iter_batches", "affine_of",
           "BufferPool", "WINDOW_PRESETS", "resolve_window", "to_float", "MODES", "sample_rng"]
