"""Mutated HTJ2K codestreams and .dcbs files, and a runner that survives the decoder dying.

Shared by tests/test_hostile_codestreams.py (a fast subset) and benchmarks/fuzz_hostile.py
(the full corpus). Case ``i`` of a corpus is made from ``(seed, i)`` alone, so a worker
process can run a range of cases; when it dies the parent knows which case killed it,
counts a crash and starts a new worker after that case.
"""
from __future__ import annotations

import os
import random
import select
import signal
import struct
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Callable, Iterable, List, Optional, Tuple

import numpy as np

from crafting import Crafted, fix_codestream_checksum

SOD = b"\xff\x93"
SOT = b"\xff\x90"

#: Outcome names, as counted by :func:`run_cases`.
CRASH, HANG, UNTYPED, TYPED, DECODED, WRONG = "crash", "hang", "untyped", "typed", "decoded", "wrong"


# --- codestream structure -------------------------------------------------------------

def segments(cs: bytes) -> List[Tuple[int, int]]:
    """(offset, total length) of each main-header marker segment, SIZ first, up to the first SOT."""
    out, pos = [], 2
    while pos + 4 <= len(cs) and cs[pos:pos + 2] != SOT:
        length = struct.unpack_from(">H", cs, pos + 2)[0]
        out.append((pos, 2 + length))
        pos += 2 + length
    return out


def header_end(cs: bytes) -> int:
    return cs.find(SOT, 2)


def with_tlm(cs: bytes) -> bytes:
    """``cs`` with a TLM segment (Stlm: 1-byte tile index, 4-byte lengths) listing its tile-parts,
    as newer OpenJPH writes with ``tlm=True``."""
    end = header_end(cs)
    pos, lengths = end, []
    while pos < len(cs) - 2:
        psot = struct.unpack_from(">I", cs, pos + 6)[0] or len(cs) - 2 - pos
        lengths.append(psot)
        pos += psot
    body = bytes([0, 0x50]) + b"".join(b"\x00" + struct.pack(">I", n) for n in lengths)
    tlm = b"\xff\x55" + struct.pack(">H", 2 + len(body)) + body
    return fix_codestream_checksum(cs[:end] + tlm + cs[end:])


def split_tile_parts(cs: bytes, parts: int = 3) -> bytes:
    """``cs`` with its tile-part followed by ``parts - 1`` empty ones (SOT..SOD, TNsot set):
    a valid tile-part chain for the tile-part mutations to work on."""
    end = header_end(cs)
    first = struct.unpack_from(">I", cs, end + 6)[0]
    out = bytearray(cs[:end])
    out += SOT + struct.pack(">HHIBB", 10, 0, first, 0, parts) + cs[end + 12:end + first]
    for k in range(1, parts):
        out += SOT + struct.pack(">HHIBB", 10, 0, 14, k, parts) + SOD
    return fix_codestream_checksum(bytes(out) + b"\xff\xd9")


# --- mutations --------------------------------------------------------------------------

_INTERESTING = (0, 1, 2, 0x7F, 0x80, 0xFE, 0xFF)
_INTERESTING32 = (0, 1, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 0xFFFF, 0x10000)


def _byte(rng: random.Random) -> int:
    return rng.choice(_INTERESTING) if rng.random() < 0.5 else rng.randrange(256)


def mutate(cs: bytes, rng: random.Random, donors: List[bytes]) -> Tuple[str, bytes]:
    """One mutation of codestream ``cs`` (embedded checksum recomputed): (kind, bytes)."""
    try:
        return _mutate(cs, rng, donors)
    except (IndexError, ValueError):  # cs already too broken for that kind: cut it instead
        return "truncate", cs[:rng.randrange(len(cs) + 1)]


def _mutate(cs: bytes, rng: random.Random, donors: List[bytes]) -> Tuple[str, bytes]:
    m = bytearray(cs)
    end = header_end(cs)
    sod = cs.find(SOD, end) + 2
    kind = rng.choice(("header_byte", "segment_field", "segment_field32", "tile_part", "packet_header",
                       "codeblock", "codeblock_run", "truncate", "insert_delete", "splice", "multi"))
    if kind == "header_byte":
        for _ in range(rng.randint(1, 3)):
            m[rng.randrange(2, end)] = _byte(rng)
    elif kind in ("segment_field", "segment_field32"):
        off, length = rng.choice(segments(cs))
        p = off + 2 + rng.randrange(length - 2)
        if kind == "segment_field":
            m[p] = _byte(rng)
        else:
            m[p:p + 4] = struct.pack(">I", rng.choice(_INTERESTING32))[:len(m[p:p + 4])]
    elif kind == "tile_part":
        sots = [i for i in range(end, len(cs) - 12) if cs[i:i + 2] == SOT and cs[i + 2:i + 4] == b"\x00\x0a"]
        p = rng.choice(sots)
        field, size = rng.choice(((2, 2), (4, 2), (6, 4), (10, 1), (11, 1), (12, 2)))
        value = rng.choice(_INTERESTING32) if size == 4 else rng.randrange(1 << (8 * size))
        if size == 4 and rng.random() < 0.5:  # off by a little
            value = min(0xFFFFFFFF, max(0, struct.unpack_from(">I", cs, p + 6)[0] + rng.randint(-3, 3)))
        m[p + field:p + field + size] = value.to_bytes(size, "big")
    elif kind == "packet_header":  # the first bytes after SOD start the first packet header
        for _ in range(rng.randint(1, 3)):
            m[min(len(m) - 3, sod + rng.randrange(48))] = _byte(rng)
    elif kind == "codeblock":
        for _ in range(rng.randint(1, 8)):
            p = rng.randrange(sod, len(m) - 2)
            m[p] = rng.randrange(256) if rng.random() < 0.5 else m[p] ^ (1 << rng.randrange(8))
    elif kind == "codeblock_run":
        p = rng.randrange(sod, len(m) - 2)
        n = rng.randint(2, 64)
        fill = rng.choice((b"\xff", b"\x00", bytes([0x8F]), None))
        m[p:p + n] = (fill * n if fill else rng.randbytes(n))[:len(m[p:p + n])]
    elif kind == "truncate":
        m = m[:rng.randrange(len(m))]
        if rng.random() < 0.5:
            m += b"\xff\xd9"
    elif kind == "insert_delete":
        p = rng.randrange(2, len(m))
        if rng.random() < 0.5:
            del m[p:p + rng.randint(1, 16)]
        else:
            m[p:p] = rng.randbytes(rng.randint(1, 16))
    elif kind == "splice":  # a marker segment from another codestream: header and data disagree
        donor = rng.choice(donors)
        (off, length), (doff, dlength) = rng.choice(segments(cs)), rng.choice(segments(donor))
        m[off:off + length] = donor[doff:doff + dlength]
    else:  # multi: several of the above
        data = bytes(m)
        for _ in range(rng.randint(2, 4)):
            _, data = mutate(data, rng, donors)
            if header_end(data) <= 0 or data.find(SOD, header_end(data)) < 0:
                break
        return kind, data
    return kind, fix_codestream_checksum(bytes(m))


# --- the runner ---------------------------------------------------------------------------

def _classify(fn: Callable[[], object]) -> str:
    from dicube.exceptions import DicomCubeError

    try:
        result = fn()
    except DicomCubeError:
        return TYPED
    except Exception as exc:  # noqa: BLE001 - counting them is the point
        return f"{UNTYPED}:{type(exc).__name__}:{str(exc)[:80]}"
    return WRONG if result is WRONG else DECODED


def run_cases(case: Callable[[int], Callable[[], object]], indices: Iterable[int], *,
              timeout: float = 60.0, log: Optional[Callable[[int, str], None]] = None) -> Counter:
    """Run ``case(i)()`` for every i in worker processes; count the outcomes.

    ``case(i)`` returns a thunk whose call decodes something (returning ``WRONG`` for
    wrong pixels). A worker that dies counts a ``crash`` for the case it was running (the
    signal in ``log``), one silent for ``timeout`` s a ``hang``; a new worker then continues.
    """
    todo = list(indices)
    counts: Counter = Counter()
    while todo:
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # worker: one line per case, then exit without Python's teardown
            os.close(r)
            code = 0
            try:
                for i in todo:
                    outcome = _classify(case(i))
                    os.write(w, f"{i}\t{outcome}\n".encode())
            except BaseException:  # noqa: BLE001
                code = 3
            os._exit(code)
        os.close(w)
        done, buf = 0, b""
        while True:
            ready, _, _ = select.select([r], [], [], timeout)
            if not ready:
                os.kill(pid, signal.SIGKILL)
                break
            chunk = os.read(r, 65536)
            if not chunk:
                break
            buf += chunk
            *lines, buf = buf.split(b"\n")
            for line in lines:
                i, outcome = line.decode().split("\t", 1)
                counts[outcome.split(":")[0]] += 1
                if log and outcome != DECODED and outcome != TYPED:
                    log(int(i), outcome)
                done += 1
        os.close(r)
        _, status = os.waitpid(pid, 0)
        todo = todo[done:]
        if not todo:
            break
        what = HANG if not os.WIFSIGNALED(status) or os.WTERMSIG(status) == signal.SIGKILL else CRASH
        if not os.WIFSIGNALED(status) and os.WEXITSTATUS(status) != 0:
            what = f"{UNTYPED}:worker exit {os.WEXITSTATUS(status)}"
        counts[what.split(":")[0]] += 1
        if log:
            log(todo[0], what if what != CRASH else f"{CRASH}: signal {os.WTERMSIG(status)}")
        todo = todo[1:]
    return counts


# --- corpora ------------------------------------------------------------------------------

class Corpus:
    """Base codestreams of one CT slice and the .dcbs it comes from; ``case(target, i)`` makes
    the i-th hostile input for a target and returns the thunk that decodes it."""

    TARGETS = ("imdecode", "batch", "load", "stream", "container", "damaged")

    def __init__(self, dcbs: Path, seed: int = 0, workdir: Optional[Path] = None):
        from dicube.codecs.jph import imencode_jph
        from dicube.storage.reader import DcbsReader

        self.seed = seed
        self.dcbs = Path(dcbs)
        self.crafted = Crafted.read(self.dcbs)
        with DcbsReader(self.dcbs) as r:
            self.pixels = r.read_frames(np.arange(r.frame_count))
        img = self.pixels[min(3, len(self.pixels) - 1)]
        rgb = np.stack([img >> 4, img >> 6, img >> 8], -1).astype(np.uint8)
        self.bases = [
            bytes(self.crafted.frames[1]),
            imencode_jph(img, progression="LRCP", levels=2, block_size=(32, 128)),
            imencode_jph(img.astype(np.int16), bits_stored=16, block_size=(16, 16)),
            with_tlm(imencode_jph(img, tlm=False)),  # one tile-part first, whatever the OpenJPH
            split_tile_parts(imencode_jph(img[:128, :96], progression="RLCP", tlm=False)),
            imencode_jph(rgb, color_transform=True),
        ]
        try:
            import imagecodecs

            self.bases.append(imagecodecs.htj2k_encode(img))
        except Exception:  # noqa: BLE001 - optional: another encoder's codestreams
            pass
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="dicube-hostile-"))

    def codestream(self, i: int) -> Tuple[str, bytes]:
        rng = random.Random(self.seed * 1_000_003 + i)
        return mutate(rng.choice(self.bases), rng, self.bases)

    def _file(self, data: bytes) -> Path:
        path = self.workdir / f"case-{os.getpid()}.dcbs"
        path.write_bytes(data)
        return path

    def frame_file(self, i: int) -> Tuple[Path, int]:
        """The .dcbs with frame k replaced by a mutation of it, every CRC recomputed: (path, k)."""
        rng = random.Random(self.seed * 1_000_003 + i)
        c = Crafted.read(self.dcbs)
        k = rng.randrange(len(c.frames))
        c.frames[k] = mutate(bytes(c.frames[k]), rng, self.bases)[1]
        return self._file(c.to_bytes()), k

    def container_file(self, i: int) -> Path:
        """The .dcbs with header fields, the frame index or a frame's bytes changed, every CRC recomputed."""
        rng = random.Random(self.seed * 1_000_003 + i)
        c = Crafted.read(self.dcbs)
        for _ in range(rng.randint(1, 3)):
            what = rng.random()
            if what < 0.4:
                key = rng.choice(("rows", "columns", "samples", "frame_codec", "dtype", "bits_stored", "frame_count"))
                if key == "dtype":
                    c.header_overrides[key] = rng.choice((b"<u2\0", b"<i4\0", b"|u1\0", b"<f8\0", b"\xff" * 4))
                    continue
                limit = 0xFFFF if key in ("samples", "frame_codec", "bits_stored") else 0xFFFFFFFF
                c.header_overrides[key] = rng.choice((0, 1, 2, 3, 8, 16, 255, 256, 4096, 65535, limit)) & limit
            elif what < 0.7:
                index = np.zeros(len(c.frames), np.dtype([("offset", "<u8"), ("length", "<u8"), ("crc", "<u4"),
                                                          ("reserved", "<u4")]))
                lengths = [len(f) for f in c.frames]
                index["length"] = lengths
                index["offset"][1:] = np.cumsum(lengths)[:-1]
                k = rng.randrange(len(index))
                field = rng.choice(("offset", "length"))
                index[field][k] = rng.choice((0, 1, max(0, int(index[field][k]) + rng.randint(-64, 64)), 2**31, 2**63))
                c.index = index
            else:
                k = rng.randrange(len(c.frames))
                f = bytearray(c.frames[k])
                p = rng.randrange(len(f))
                f[p:p + 4] = rng.randbytes(4)
                c.frames[k] = bytes(f)
        return self._file(c.to_bytes())

    def damaged_file(self, i: int) -> Path:
        """The .dcbs with 1-4 bytes changed anywhere and no CRC recomputed (a damaged disk)."""
        rng = random.Random(self.seed * 1_000_003 + i)
        data = bytearray(self.dcbs.read_bytes())
        for _ in range(rng.randint(1, 4)):
            p = rng.randrange(len(data))
            data[p] ^= 1 << rng.randrange(8)
        return self._file(bytes(data))

    def case(self, target: str, i: int) -> Callable[[], object]:
        import dicube
        from dicube.codecs.jph import decode_batch, imdecode_jph
        from dicube.dicom.streaming import DcbStreamingReader

        if target == "imdecode":
            return lambda: imdecode_jph(self.codestream(i)[1])
        if target == "batch":
            return lambda: decode_batch([self.codestream(i)[1]] * 2)
        if target == "load":
            return lambda: dicube.load(self.frame_file(i)[0])
        if target == "stream":
            def stream():
                path, k = self.frame_file(i)
                with DcbStreamingReader(path) as r:
                    r.get_dicom_for_frame(k, force_uncompressed=True)
            return stream
        if target == "container":
            return lambda: dicube.load(self.container_file(i))
        if target == "damaged":
            def damaged():
                img = dicube.load(self.damaged_file(i))
                return WRONG if not np.array_equal(img.raw_image, self.pixels) else None
            return damaged
        raise ValueError(target)


def elapsed(fn: Callable[[], object]) -> Tuple[object, float]:
    t = time.perf_counter()
    r = fn()
    return r, time.perf_counter() - t
