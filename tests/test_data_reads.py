"""Partial reads: a sample decodes only its frames and reads only their bytes, a slab as
one contiguous byte range. Observed by wrapping the reader's decode and read calls."""
from __future__ import annotations

import numpy as np
import pytest

import dicube
import dicube.codecs._native_regions
from dicube.data import DcbsDataset
from dicube.storage.reader import DcbsReader


class Recorder:
    """Frames decoded and file byte ranges read by the frame-reading paths of DcbsReader."""

    def __init__(self, monkeypatch, use_file_regions: bool):
        self.decoded, self.ranges = [], []
        real_regions = dicube.codecs._native_regions.decode_regions
        real_file = dicube.codecs._native_regions.decode_file_regions
        real_preadinto = DcbsReader.preadinto

        def decode_regions(buf, offsets, lengths, out, **kw):
            self.decoded.append(len(out))
            return real_regions(buf, offsets, lengths, out, **kw)

        def decode_file_regions(fd, base, offsets, lengths, out, **kw):
            if not use_file_regions:
                return False  # as for a codestream without our checksum: buffer path
            self.decoded.append(len(out))
            for o, n in zip(np.asarray(offsets).tolist(), np.asarray(lengths).tolist()):
                self.ranges.append((base + o, base + o + n))
            return real_file(fd, base, offsets, lengths, out, **kw)

        def preadinto(reader, buf, offset):
            n = memoryview(buf).nbytes
            self.ranges.append((offset, offset + n))
            return real_preadinto(reader, buf, offset)

        reader_mod = dicube.codecs._native_regions  # what the registry's codecs call
        monkeypatch.setattr(reader_mod, "decode_regions", decode_regions)
        monkeypatch.setattr(reader_mod, "decode_file_regions", decode_file_regions)
        monkeypatch.setattr(DcbsReader, "preadinto", preadinto)

    def reset(self):
        self.decoded.clear()
        self.ranges.clear()

    def span(self) -> list:
        """The byte ranges read, merged where they touch."""
        merged = []
        for a, b in sorted(self.ranges):
            if merged and a <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], b)
            else:
                merged.append([a, b])
        return [tuple(m) for m in merged]


def _frame_bytes(path, start: int, stop: int) -> tuple:
    with DcbsReader(path) as r:
        idx = r.layout.index[start:stop]
        base = r.layout.header.frames_offset
        return base + int(idx["offset"].min()), base + int((idx["offset"] + idx["length"]).max())


@pytest.mark.parametrize("codec", ["htj2k", "zstd"])
@pytest.mark.parametrize("use_file_regions", [True, False], ids=["worker-reads", "one-buffer"])
def test_samples_decode_and_read_only_their_frames(dcbs_samples, dcbs_zstd_samples, monkeypatch,
                                                   use_file_regions, codec):
    path = str((dcbs_samples if codec == "htj2k" else dcbs_zstd_samples)["sample_200"])
    slabs = DcbsDataset([path], "slab", slab_size=16, samples_per_file=4, seed=9)
    slices = DcbsDataset([path], "slice", samples_per_file=4, seed=9)
    slabs[0], slices[0]  # open the file (its head is read once per process)
    rec = Recorder(monkeypatch, use_file_regions)
    for ds, size in ((slabs, 16), (slices, 1)):
        for i in range(4):
            rec.reset()
            s = ds[i]
            assert sum(rec.decoded) == size
            assert rec.span() == [_frame_bytes(path, *s.frames)]  # one contiguous range
            if not use_file_regions:
                assert len(rec.ranges) == 1  # ... read with one call
    for frames, want in ((slice(40, 56), [(40, 56)]), ([150, 3], [(3, 4), (150, 151)])):
        rec.reset()
        img = dicube.load(path, frames=frames)  # dicube.load itself: only the frames asked
        assert sum(rec.decoded) == img.shape[0] == sum(b - a for a, b in want)
        assert rec.span() == [_frame_bytes(path, a, b) for a, b in want]
    rec.reset()
    DcbsDataset([path], "volume")[0]
    assert sum(rec.decoded) == 200 and rec.span()[-1] == _frame_bytes(path, 0, 200)
