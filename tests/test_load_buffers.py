"""Volumes from dicube.load reuse the memory of freed ones (dicube.codecs.buffers): the same
pixels, no memory shared with a forked child's later loads, a typed MemoryError when none."""
from __future__ import annotations

import multiprocessing as mp

import numpy as np
import pytest

import dicube
from dicube.codecs import buffers


def _address(a: np.ndarray) -> int:
    return a.__array_interface__["data"][0]


def test_a_freed_volume_is_reused_by_the_next_load_with_the_same_pixels(dcbs_samples):
    path = dcbs_samples["sample_200"]
    buffers.trim()
    first = dicube.load(path).raw_image
    expected, where = first.copy(), _address(first)
    assert first.flags.c_contiguous and first.flags.writeable
    first[:] = 7  # stale values must not survive into the next load
    del first
    assert buffers.kept_bytes() >= expected.nbytes
    again = dicube.load(path).raw_image
    assert _address(again) == where and buffers.kept_bytes() == 0
    np.testing.assert_array_equal(again, expected)
    slab = dicube.load(path, frames=slice(0, 5)).raw_image  # too small for the kept block
    np.testing.assert_array_equal(slab, expected[:5])


def test_small_arrays_are_plain_numpy_and_large_ones_are_kept_bounded():
    buffers.trim()
    small = buffers.empty((4, 4), np.int16)
    assert small.flags.owndata and small.shape == (4, 4) and small.dtype == np.int16
    blocks = [buffers.empty((9 << 20,), np.uint8) for _ in range(6)]
    del blocks
    assert 0 < buffers.kept_bytes() <= 4 * (10 << 20)  # at most 4 blocks kept
    buffers.trim()
    assert buffers.kept_bytes() == 0


def test_an_impossible_size_is_a_memory_error():
    with pytest.raises(MemoryError):
        buffers.empty((1 << 50,), np.uint8)


def _child(conn, expected_sum):
    # the parent's kept blocks are not mapped here; its live volume is, copy-on-write
    got = (buffers.kept_bytes(), int(_child.volume.sum(dtype=np.int64)) == expected_sum)
    del _child.volume
    fresh = buffers.empty((16 << 20,), np.uint8)
    fresh[:] = 1
    conn.send(got + (int(fresh.sum()),))


def test_a_forked_child_sees_live_volumes_and_never_the_parents_kept_memory(dcbs_samples):
    path = dcbs_samples["sample_10"]
    volume = dicube.load(path).raw_image
    spare = buffers.empty((16 << 20,), np.uint8)
    spare[:] = 9
    del spare  # kept in the parent
    assert buffers.kept_bytes() > 0
    _child.volume = volume
    ctx = mp.get_context("fork")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_child, args=(child, int(volume.sum(dtype=np.int64))))
    proc.start()
    kept, same, fresh_sum = parent.recv()
    proc.join(30)
    del _child.volume
    assert proc.exitcode == 0
    assert kept == 0 and same and fresh_sum == 16 << 20
    np.testing.assert_array_equal(volume, dicube.load(path).raw_image)  # the parent's is intact
