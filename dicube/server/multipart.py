"""multipart/related bodies (RFC 2387, PS3.18 8.6.1.2) written part by part.

:func:`encode_parts` turns (content type, bytes) pairs into body chunks lazily, so a
whole study is never held in memory; small parts are gathered into chunks of about
``chunk`` bytes to keep the number of writes (and event-loop turns) low.
"""
from __future__ import annotations

import os
from typing import Iterable, Iterator, Tuple

__all__ = ["new_boundary", "content_type", "part_head", "closing", "encode_parts"]

#: Body chunk size aimed at: large writes are what makes loopback transfers fast.
CHUNK = 1 << 20


def new_boundary() -> str:
    """A boundary that cannot occur in our parts by chance (128 random bits)."""
    return os.urandom(16).hex()


def content_type(boundary: str, part_type: str, transfer_syntax: "str | None" = None) -> str:
    """The Content-Type field of a multipart/related response."""
    ts = f"; transfer-syntax={transfer_syntax}" if transfer_syntax else ""
    return f'multipart/related; type="{part_type}"{ts}; boundary={boundary}'


def part_head(boundary: str, part_type: str, extra: str = "") -> bytes:
    """The delimiter and header fields before one part's bytes."""
    return f"--{boundary}\r\nContent-Type: {part_type}{extra}\r\n\r\n".encode("ascii")


def closing(boundary: str) -> bytes:
    """The close delimiter after the last part."""
    return f"--{boundary}--\r\n".encode("ascii")


def encode_parts(parts: Iterable[Tuple[str, "bytes | list"]], boundary: str,
                 chunk: int = CHUNK) -> Iterator[bytes]:
    """Body chunks of the parts ``(part content type, bytes or a list of bytes to join)``,
    in order, closed; each part's bytes are copied once, into its chunk."""
    buf: list = []
    size = 0
    for ctype, data in parts:
        head = part_head(boundary, ctype)
        pieces = data if isinstance(data, list) else [data]
        n = sum(len(p) for p in pieces)
        if size and size + n > chunk:
            yield b"".join(buf)
            buf, size = [], 0
        buf += [head, *pieces, b"\r\n"]
        size += len(head) + n + 2
        if size >= chunk:
            yield b"".join(buf)
            buf, size = [], 0
    buf.append(closing(boundary))
    yield b"".join(buf)
