"""Which frames a dataset index stands for: whole volumes, random or enumerated windows."""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

__all__ = ["MODES", "Plan", "sample_rng"]

MODES = ("volume", "slice", "slab")


def sample_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """The generator of one sample: a function of (seed, epoch, index) only, so a sample
    is the same whichever worker process draws it."""
    return np.random.default_rng([int(seed), int(epoch), int(index)])


class Plan:
    """Index -> (file number, first frame, stop frame) for a sampling mode.

    ``volume``: one index per file, all frames. ``slice``/``slab`` with ``random``: a
    window of ``size`` frames (1 for slices) at a random start, ``samples_per_file``
    indices per file. Without ``random``: every window at starts 0, stride, 2*stride...
    of every file, which needs the frame counts up front.
    """

    def __init__(self, mode: str, n_files: int, size: int = 1, random: bool = True,
                 samples_per_file: int = 1, stride: Optional[int] = None,
                 frame_counts: Optional[Sequence[int]] = None):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        if size < 1 or samples_per_file < 1 or (stride is not None and stride < 1):
            raise ValueError("slab size, samples_per_file and stride must be at least 1")
        self.mode, self.n_files, self.size = mode, n_files, size
        self.random = random and mode != "volume"
        self.samples_per_file = samples_per_file
        self.stride = stride or size
        self._ends = None
        if mode != "volume" and not self.random:
            if frame_counts is None or len(frame_counts) != n_files:
                raise ValueError("enumerated windows need one frame count per file")
            counts = np.asarray(frame_counts, np.int64)
            windows = np.where(counts >= size, (counts - size) // self.stride + 1, 0)
            self._ends = np.cumsum(windows)

    def __len__(self) -> int:
        if self.mode == "volume":
            return self.n_files
        if self.random:
            return self.n_files * self.samples_per_file
        return int(self._ends[-1]) if len(self._ends) else 0

    def file_of(self, index: int) -> int:
        """The file number of a (non-negative, in range) index."""
        if self.mode == "volume":
            return index
        if self.random:
            return index // self.samples_per_file
        return int(np.searchsorted(self._ends, index, side="right"))

    def window(self, index: int, frame_count: int, seed: int, epoch: int) -> tuple:
        """(first, stop) frames of ``index`` in its file of ``frame_count`` frames;
        None when the file is shorter than a window."""
        if self.mode == "volume":
            return 0, frame_count
        if frame_count < self.size:
            return None
        if self.random:
            start = int(sample_rng(seed, epoch, index).integers(0, frame_count - self.size + 1))
        else:
            f = self.file_of(index)
            first = int(self._ends[f - 1]) if f else 0
            start = (index - first) * self.stride
        return start, start + self.size
