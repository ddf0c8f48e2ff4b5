"""CRC-32C (the checksum of .dcbs sections and frames) against a bytewise reference."""
from __future__ import annotations

import numpy as np
import pytest

from dicube.codecs.jph import crc32c


def _reference(data: bytes, crc: int = 0) -> int:
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    c = crc ^ 0xFFFFFFFF
    for b in data:
        c = table[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def test_check_value():
    assert crc32c(b"123456789") == 0xE3069283  # the catalogue's check value for CRC-32C


@pytest.mark.parametrize("n", [0, 1, 7, 8, 4095, 4096, 4097, 12345, 24577, 65539])
def test_lengths_and_continuation(n):
    """Short buffers take one chain, long ones three joined chains: same results."""
    data = np.random.default_rng(n).integers(0, 256, n, dtype=np.uint8).tobytes()
    assert crc32c(data) == _reference(data)
    assert crc32c(data, 0x1234567) == _reference(data, 0x1234567)
    k = n // 3
    assert crc32c(data[k:], crc32c(data[:k])) == crc32c(data)
