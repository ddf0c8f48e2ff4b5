"""Feed mutated codestreams to the decoder; run as a script in a child process by the tests.

usage: python fuzz_codec.py {ours|foreign} SEED COUNT SLICE.dcm
Prints one JSON line with the outcome counts. Exits non-zero only if an outcome was
neither a CodecError nor an array (a crash kills the process, which the test sees).
"""
from __future__ import annotations

import json
import random
import sys

import numpy as np
import pydicom

from dicube.codecs.jph import imdecode_jph, imencode_jph
from dicube.exceptions import CodecError


def mutations(data: bytes, rng: random.Random, count: int):
    for _ in range(count):
        m = bytearray(data)
        kind = rng.random()
        if kind < 0.25:
            m = m[: rng.randrange(len(m))]  # truncation
        elif kind < 0.5:
            for _ in range(rng.randint(1, 4)):  # bit flips anywhere
                m[rng.randrange(len(m))] ^= 1 << rng.randrange(8)
        elif kind < 0.7:
            m[rng.randrange(min(200, len(m)))] = rng.randrange(256)  # header byte replaced
        elif kind < 0.9:
            p = rng.randrange(len(m))
            m[p : p + 16] = bytes(rng.randrange(256) for _ in range(16))  # garbage run
        else:
            m = bytearray(rng.randbytes(rng.randrange(1, 2000)))  # random bytes
        yield bytes(m)


def main() -> int:
    mode, seed, count, path = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    image = pydicom.dcmread(path).pixel_array
    if mode == "ours":
        data = imencode_jph(image)
    else:
        import imagecodecs

        data = imagecodecs.htj2k_encode(image)
    counts = {"error": 0, "exact": 0, "different": 0, "crash_reported": 0}
    for m in mutations(data, random.Random(seed), count):
        try:
            out = imdecode_jph(m)
        except CodecError as exc:
            counts["error"] += 1
            counts["crash_reported"] += "crashed" in str(exc)
            continue
        if not isinstance(out, np.ndarray):
            return 2
        counts["exact" if out.shape == image.shape and np.array_equal(out, image) else "different"] += 1
    print(json.dumps(counts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
