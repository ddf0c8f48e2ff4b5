"""DcbsDataset: training samples (volumes, 2-D slices, slabs) from a list of .dcbs files."""
from __future__ import annotations

import copy
import fnmatch
import os
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Optional, Sequence

import numpy as np

from ..core.io import subset_pixel_header, subset_space
from ..exceptions import DataConsistencyError
from ..storage.sources import is_url, list_folder
from .buffers import BufferPool
from .files import FileCache, OpenFile
from .intensity import WindowSpec, resolve_window, to_float
from .sampling import Plan

__all__ = ["Sample", "DcbsDataset", "find_dcbs", "affine_of", "collate"]

_WINDOW_CACHE = 1024  # frame windows whose geometry is kept per open file


@dataclass
class Sample:
    """One training sample.

    ``image``: (rows, columns) for a slice, (frames, rows, columns) for a slab or volume
    (``(..., 3)`` for RGB); stored values, or float after rescale/windowing.
    ``frames``: (first, stop) frame numbers in the file. ``space``: spacetransformer
    Space of those frames (None if the file has none). ``affine``: 4x4 map from
    (frame, row, column) indices of ``image`` (frame 0 for a slice) to patient LPS mm.
    ``meta``: the requested metadata values.
    """

    image: Any
    path: str
    index: int
    frames: tuple
    space: Any = None
    affine: Optional[np.ndarray] = None
    meta: dict = field(default_factory=dict)


#: .dcbs, .dcba and .dcbl files at any depth
DEFAULT_PATTERN = "**/*.dcb[sal]"


def find_dcbs(folder: "os.PathLike[str] | str", pattern: str = DEFAULT_PATTERN, *,
              timeouts=None, storage_options: Optional[dict] = None) -> list[str]:
    """The files under ``folder`` matching ``pattern`` (``**/`` for any depth), sorted.

    Folders are walked as for DICOM input: symbolic links followed, each folder once (no
    loop), FIFOs and devices left out. ``folder`` may be an s3:// prefix (listed with the
    S3 API) or an http(s):// folder with a directory index (e.g. nginx ``autoindex``);
    the URLs of the matching objects are returned."""
    root = os.fspath(folder)
    deep = "**" in pattern
    pat = pattern.replace(os.sep, "/")
    rest = pat[3:] if pat.startswith("**/") else None
    if is_url(root):
        import urllib.parse

        base = root.rstrip("/") + "/"
        pairs = [(e.location, urllib.parse.unquote(e.location[len(base):]))
                 for e in list_folder(root, timeouts=timeouts, storage_options=storage_options)
                 if e.location.startswith(base)]
        pairs = [(loc, rel) for loc, rel in pairs if deep or "/" not in rel]
    else:
        from ..dicom.dicom_io import list_files

        pairs = [(path, os.path.relpath(path, root).replace(os.sep, "/"))
                 for path in list_files(root, recursive=deep)]
    found = [loc for loc, rel in pairs
             if fnmatch.fnmatchcase(rel, pat) or (rest is not None and fnmatch.fnmatchcase(rel, rest))]
    return sorted(found)


def affine_of(space) -> Optional[np.ndarray]:
    """4x4 map from (frame, row, column) indices to patient LPS mm (None for None)."""
    if space is None:
        return None
    m = np.eye(4)
    m[:3, 0] = np.asarray(space.z_orientation, float) * space.spacing[2]
    m[:3, 1] = np.asarray(space.y_orientation, float) * space.spacing[1]
    m[:3, 2] = np.asarray(space.x_orientation, float) * space.spacing[0]
    m[:3, 3] = space.origin
    return m


class DcbsDataset:
    """Map-style dataset over .dcbs files (plain numpy; wrap it with
    :class:`dicube.torch.TorchDcbsDataset` for PyTorch).

    ``mode``: ``"volume"`` (one sample per file), ``"slice"`` (2-D slices) or ``"slab"``
    (``slab_size`` consecutive slices). With ``random`` (default) each file gives
    ``samples_per_file`` samples at random positions, drawn from (``seed``, epoch, index)
    only, so results do not depend on which worker draws them; call :meth:`set_epoch` to
    draw new positions. Without ``random`` every slice, or every slab at starts
    0, ``stride``, 2*``stride``... (default stride: ``slab_size``), is enumerated.

    ``rescale`` gives real values (RescaleSlope/Intercept, per slice when they vary) as
    ``dtype``; ``window`` (a :data:`~dicube.data.WINDOW_PRESETS` name, ``"dicom"`` or
    (width, center)) maps them onto [0, 1]. ``keys`` names metadata (e.g.
    ``["PatientID", "SliceThickness"]``) put in ``Sample.meta``: a shared value as is,
    a per-slice one as the value of the slice (slice mode) or a list over the frames.

    ``paths`` may be local paths or http(s):// / s3:// URLs (read with coalesced range
    requests; ``source_options`` such as ``timeouts`` or ``coalesce_gap`` go to each
    :class:`~dicube.storage.reader.DcbsReader`; :attr:`stats` counts this process's bytes
    and requests). Files are opened lazily by the process that reads them (safe with
    forked and spawned workers). With ``reuse_buffers`` images are decoded into arrays kept by the dataset
    and reused only once no sample, view or tensor refers to them any more, which saves
    fresh-memory page faults without two live samples ever sharing memory.
    ``num_threads``: decoding threads per sample (default: all cores).
    Slab modes read every file's frame count when the dataset is made: files shorter than
    a slab are left out with a warning (``short_files="skip"``) or refused
    (``short_files="error"``).
    """

    def __init__(self, paths: Iterable["os.PathLike[str] | str"], mode: str = "volume", *,
                 slab_size: int = 16, random: bool = True, samples_per_file: int = 1,
                 stride: Optional[int] = None, seed: int = 0, rescale: bool = False,
                 window: WindowSpec = None, dtype: Any = np.float32, keys: Sequence[str] = (),
                 with_space: bool = True, reuse_buffers: bool = True,
                 num_threads: Optional[int] = None, max_open: int = 128,
                 buffer_bytes: int = 1 << 30, short_files: str = "skip",
                 source_options: Optional[dict] = None):
        self.paths = [os.fspath(p) for p in paths]
        self.mode = mode
        self.seed, self.epoch = int(seed), 0
        if self.seed < 0:
            raise ValueError("seed must be non-negative")
        self.window = window
        if window is not None and not (isinstance(window, str) and window == "dicom"):
            resolve_window(window)  # reject a bad spec now, not in a worker
        self.rescale = rescale or window is not None
        self.dtype = np.dtype(dtype)
        self.keys = list(keys)
        if self.keys:  # reject a misspelt keyword now, not in a worker
            from ..dicom.dicom_tags import to_tag

            for k in self.keys:
                try:
                    to_tag(k)
                except (KeyError, TypeError, ValueError):
                    raise ValueError(f"unknown metadata key {k!r} (a DICOM keyword or "
                                     "GGGGEEEE tag)") from None
        self.with_space = with_space
        self.num_threads = num_threads
        self._files = FileCache(max_open, **(source_options or {}))
        self._pool = BufferPool(buffer_bytes) if reuse_buffers else None
        size = 1 if mode == "slice" else slab_size
        counts = None
        if mode != "volume" and (not random or size > 1):
            counts = [self._files.get(p).frame_count for p in self.paths]
            self._drop_short(counts, size, short_files)
        self.plan = Plan(mode, len(self.paths), size, random, samples_per_file, stride, counts)

    def _drop_short(self, counts: list, size: int, short_files: str) -> None:
        """Files with fewer frames than a slab: left out with a warning ("skip"), or refused
        here ("error") rather than in a worker mid-epoch."""
        if short_files not in ("skip", "error"):
            raise ValueError(f"short_files must be 'skip' or 'error', got {short_files!r}")
        short = [p for p, c in zip(self.paths, counts) if c < size]
        if not short:
            return
        what = f"{len(short)} of {len(self.paths)} files have fewer than {size} frames"
        if short_files == "error":
            raise DataConsistencyError(f"{what}, e.g. {short[0]}", short[0])
        import warnings

        warnings.warn(f"{what}: left out (e.g. {short[0]})", stacklevel=3)
        keep = [k for k, c in enumerate(counts) if c >= size]
        self.paths = [self.paths[k] for k in keep]
        counts[:] = [counts[k] for k in keep]

    @classmethod
    def from_folder(cls, folder: "os.PathLike[str] | str", mode: str = "volume",
                    pattern: str = DEFAULT_PATTERN, **kwargs) -> "DcbsDataset":
        """A dataset over the .dcbs files under ``folder``, a local folder or an s3:// or
        http(s):// prefix (see :func:`find_dcbs`)."""
        opts = kwargs.get("source_options") or {}
        paths = find_dcbs(folder, pattern, timeouts=opts.get("timeouts"),
                          storage_options=opts.get("storage_options"))
        if not paths:
            raise DataConsistencyError(f"no files matching {pattern}", folder)
        return cls(paths, mode, **kwargs)

    @property
    def stats(self):
        """Bytes and requests this process's readers have read (a TransferStats)."""
        return self._files.stats

    def set_epoch(self, epoch: int) -> None:
        """Draw the random positions of epoch ``epoch`` (before creating the workers)."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.plan)

    def __getitem__(self, index: int) -> Sample:
        return self.sample(index)

    def sample(self, index: int, num_threads: Optional[int] = None) -> Sample:
        """Sample ``index``, decoded on ``num_threads`` threads (default: the dataset's)."""
        n = len(self)
        index = int(index)
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError(f"sample {index} out of range for {n} samples")
        path = self.paths[self.plan.file_of(index)]
        f = self._files.get(path)
        win = self.plan.window(index, f.frame_count, self.seed, self.epoch)
        if win is None:
            raise DataConsistencyError(
                f"{f.frame_count} frames, fewer than the slab size {self.plan.size}", path)
        start, stop = win
        image = self._pixels(f, start, stop,
                             self.num_threads if num_threads is None else num_threads)
        if self.mode == "slice":
            image = image[0]
        space, affine = self._geometry(f, start, stop) if self.with_space else (None, None)
        return Sample(image, path, index, (start, stop), space, affine, self._meta(f, start, stop))

    def _geometry(self, f: OpenFile, start: int, stop: int) -> tuple:
        """(Space, affine) of a frame window, computed once per window (validating a new
        Space takes ~0.3 ms, a fifth of decoding a slice); each sample gets its own copies."""
        got = f.windows.get((start, stop))
        if got is None:
            if len(f.windows) >= _WINDOW_CACHE:
                f.windows.clear()
            space = subset_space(f.space, np.arange(start, stop), f.frame_count)
            got = f.windows[(start, stop)] = (space, affine_of(space))
        space, affine = got
        return copy.copy(space), None if affine is None else affine.copy()

    def _empty(self, shape: tuple, dtype) -> np.ndarray:
        return np.empty(shape, dtype) if self._pool is None else self._pool.take(shape, dtype)

    def _pixels(self, f: OpenFile, start: int, stop: int, num_threads) -> np.ndarray:
        r = f.reader
        shape = (stop - start,) + r.frame_shape
        if not self.rescale:
            return r.read_frames(slice(start, stop), out=self._empty(shape, r.dtype),
                                 num_threads=num_threads)
        raw = r.read_frames(slice(start, stop), out=self._empty(shape, r.dtype),
                            num_threads=num_threads)
        ph = f.pixel_header
        if stop - start != f.frame_count:
            ph = subset_pixel_header(ph, np.arange(start, stop))
        window = resolve_window(self.window, ph, r.path)
        return to_float(raw, ph, self._empty(shape, self.dtype), window)

    def _meta(self, f: OpenFile, start: int, stop: int) -> dict:
        if not self.keys:
            return {}
        values = self._files.meta_values(f, self.keys)
        out = {}
        for k in self.keys:
            how, v = values[k]
            if how == "per_slice" and len(v) == f.frame_count:
                v = v[start] if self.mode == "slice" else v[start:stop]
            elif how == "per_slice":  # one metadata record for a multi-frame file
                v = v[0]
            out[k] = v
        return out

    def close(self) -> None:
        """Close the files this process opened (they reopen on the next sample)."""
        self._files.close()


def collate(samples: Sequence[Sample], stack: Callable = np.stack) -> dict:
    """A batch from samples of equal image shape: ``image`` stacked with ``stack``,
    ``index`` as an array, the rest (path, frames, space, affine, meta) as lists."""
    return {
        "image": stack([s.image for s in samples]),
        "index": np.asarray([s.index for s in samples], np.int64),
        "path": [s.path for s in samples],
        "frames": [s.frames for s in samples],
        "space": [s.space for s in samples],
        "affine": [s.affine for s in samples],
        "meta": [s.meta for s in samples],
    }
