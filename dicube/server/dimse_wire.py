"""C-STORE sub-operations written and answered straight on an association's socket.

pynetdicom sends every PDU through its DUL thread, one PDU per turn of a loop that sleeps
1 ms whenever it finds nothing to do, and hands the response over through two queues: a
512 KB instance in 16 KB PDUs waited ~3 ms before its first PDU left and ~5 ms more for
its response to be noticed (dcmtk getscu: ~10 ms per instance, of which ~3 ms work).
:class:`Wire` instead writes the C-STORE-RQ's PDUs with one ``sendall`` and reads the
C-STORE-RSP itself, holding a lock the DUL thread must also hold to send or read; it does
not read a PDU it does not expect: anything else (another message, a data fragment, an
A-ABORT, a malformed or oversized PDU, a timeout) is pushed back for the DUL thread to
read as if it had never been touched, and the caller waits for the response the usual way.
pynetdicom's PDU events are not emitted for these PDUs. Relies on pynetdicom 3.0
internals (``dul.socket``, ``dul._read_pdu_data``, ``dul._is_transport_event``); without
them :meth:`Wire.attach` declines and pynetdicom sends every C-STORE itself.
"""
from __future__ import annotations

import select
import socket
import ssl
import struct
import threading
import time
from typing import Optional

__all__ = ["Wire", "tune_socket", "p_data_pdus", "store_status"]

P_DATA_TF = 0x04
#: The largest PDU accepted as a C-STORE-RSP (its command set is ~200 bytes).
MAX_RESPONSE_PDU = 64 << 10
C_STORE_RSP = 0x8001


def _has_internals(dul, box) -> bool:
    """Whether this pynetdicom has the internals a Wire replaces (those of 3.0)."""
    needed = ((dul, "_read_pdu_data"), (dul, "_is_transport_event"), (box, "send"), (box, "recv"))
    return all(callable(getattr(obj, name, None)) for obj, name in needed) \
        and hasattr(dul, "to_provider_queue")


def p_data_pdus(context_id: int, command: bytes, data: "bytes | list", max_pdu: int) -> bytes:
    """A DIMSE message (command set, then data set: bytes, or a list of pieces to join) as
    P-DATA-TF PDUs of one PDV each, every PDU within the peer's maximum length ``max_pdu``
    (0: unlimited; PS3.8 9.3.5); the data set is copied once, into the result."""
    pieces = data if isinstance(data, list) else [data]
    step = max(max_pdu - 6, 1) if max_pdu else max(len(command), sum(map(len, pieces)), 1)
    out: list = []
    for parts, more, last in (([command], 0x01, 0x03), (pieces, 0x00, 0x02)):
        fragments = list(_fragments(parts, step))
        for n, (views, size) in enumerate(fragments):
            flag = last if n == len(fragments) - 1 else more
            out.append(struct.pack(">BBIIBB", P_DATA_TF, 0, size + 6, size + 2, context_id, flag))
            out += views
    return b"".join(out)


def _fragments(pieces: list, step: int):
    """(views, total size) of consecutive ``step``-byte spans of the pieces' concatenation
    (the last one shorter), as memoryview slices: nothing is copied."""
    views, size = [], 0
    for piece in pieces:
        view = memoryview(piece)
        while len(view):
            take = min(step - size, len(view))
            views.append(view[:take])
            size += take
            view = view[take:]
            if size == step:
                yield views, size
                views, size = [], 0
    if views:
        yield views, size


def tune_socket(sock) -> None:
    """TCP_NODELAY on an association's socket: a C-STORE goes out as many PDUs, which
    Nagle would hold each behind an ACK."""
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (OSError, AttributeError):
        pass


def _quickack(sock) -> None:
    """Re-arm TCP_QUICKACK (Linux clears it as it goes): peers that write a PDU's header
    and body separately with Nagle on (dcmtk's storescp and getscu) otherwise wait for our
    delayed ACK, 40 ms per C-STORE response."""
    if hasattr(socket, "TCP_QUICKACK"):
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
        except (OSError, AttributeError):
            pass


class Wire:
    """Direct C-STORE exchanges on ``assoc``'s socket (see the module docstring);
    :meth:`attach` returns None when the association cannot have one (no socket, TLS)."""

    def __init__(self, assoc):
        self.dul = assoc.dul
        self.box = assoc.dul.socket          # pynetdicom's AssociationSocket
        self.sock = self.box.socket          # the TCP socket
        self.timeout = assoc.dimse_timeout
        self.lock = threading.Lock()
        self.pushback = bytearray()
        box_send, box_recv = self.box.send, self.box.recv
        dul_read, dul_event = self.dul._read_pdu_data, self.dul._is_transport_event

        def send(data) -> None:
            with self.lock:
                box_send(data)

        def recv(n: int) -> bytearray:
            out = bytearray()
            if self.pushback:
                out += self.pushback[:n]
                del self.pushback[:n]
            if len(out) < n:
                out += box_recv(n - len(out))
                _quickack(self.sock)
            return out

        def read_pdu() -> None:
            with self.lock:  # what made the DUL thread come may have been read by us
                if self.pushback or self._readable(0):
                    dul_read()

        def transport_event() -> bool:
            if self.pushback:
                read_pdu()
                return True
            return dul_event()

        self.box.send, self.box.recv = send, recv
        self.dul._read_pdu_data, self.dul._is_transport_event = read_pdu, transport_event

    @classmethod
    def attach(cls, assoc) -> "Optional[Wire]":
        """A Wire on ``assoc``'s socket, or None: a TLS socket, or a pynetdicom without
        the internals this relies on."""
        box = getattr(assoc.dul, "socket", None)
        sock = getattr(box, "socket", None)
        if sock is None or isinstance(sock, ssl.SSLSocket) or not _has_internals(assoc.dul, box):
            return None  # pynetdicom then sends every C-STORE itself
        tune_socket(sock)
        return cls(assoc)

    def _readable(self, timeout: Optional[float]) -> bool:
        try:
            return bool(select.select([self.sock], [], [], timeout)[0])
        except (OSError, ValueError):
            return False

    def send(self, context_id: int, command: bytes, max_pdu: int) -> None:
        """Send a DIMSE message without data set, after what pynetdicom has queued."""
        for _ in range(10000):  # ~1 s at most: the DUL thread sends a queued PDU per turn
            if not self.dul.to_provider_queue.queue:
                break
            time.sleep(0.0001)
        with self.lock:
            self.sock.sendall(p_data_pdus(context_id, command, b"", max_pdu))

    def store(self, context_id: int, command: bytes, data_pdus: bytes, max_pdu: int,
              message_id: int):
        """Send a C-STORE-RQ (``command``, then its data set already as P-DATA-TF PDUs,
        see :func:`p_data_pdus`) and read its response: the status Dataset, or None when
        the response is to be waited for through pynetdicom (what was read is pushed
        back). OSError when sending fails."""
        with self.lock:
            self.sock.sendall(p_data_pdus(context_id, command, b"", max_pdu))
            self.sock.sendall(data_pdus)
            taken = bytearray()
            command_set = self._response(taken)
            if command_set is not None:
                status = store_status(command_set, message_id)
                if status is not None:
                    return status
            self.pushback[:0] = taken
            return None

    def _response(self, taken: bytearray) -> Optional[bytes]:
        """The command set of the next message if it comes as command fragments alone
        within well-formed P-DATA-TF PDUs; None at the first thing that is not."""
        command = bytearray()
        while True:
            head = self._read(6, taken)
            if head is None:
                return None
            kind, length = head[0], int.from_bytes(head[2:6], "big")
            if kind != P_DATA_TF or not 6 <= length <= MAX_RESPONSE_PDU:
                return None
            body = self._read(length, taken)
            if body is None:
                return None
            pos, last = 0, False
            while pos < length:
                if length - pos < 6:
                    return None
                item = int.from_bytes(body[pos:pos + 4], "big")
                if not 2 <= item <= length - pos - 4:
                    return None
                control = body[pos + 5]
                if not control & 0x01 or last:  # a data set fragment, or more after the end
                    return None
                command += body[pos + 6:pos + 4 + item]
                last = bool(control & 0x02)
                pos += 4 + item
            if last:
                return bytes(command)

    def _read(self, n: int, taken: bytearray) -> Optional[bytes]:
        """``n`` more bytes from the socket (kept in ``taken``); None on a timeout, a
        closed connection or an error (what was read stays in ``taken``)."""
        start = len(taken)
        while len(taken) - start < n:
            if not self._readable(self.timeout):
                return None
            try:
                chunk = self.sock.recv(n - (len(taken) - start))
            except OSError:
                return None
            if not chunk:
                return None
            taken += chunk
            _quickack(self.sock)
        return bytes(taken[start:])


def store_status(command_set: bytes, message_id: int):
    """The status of a C-STORE-RSP command set answering ``message_id``, as pynetdicom's
    send_c_store gives it (a Dataset: Status, and OffendingElement / ErrorComment when
    present); None when the command set is something else or malformed."""
    from pydicom import Dataset

    fields, pos = {}, 0
    while pos < len(command_set):
        if pos + 8 > len(command_set):
            return None
        group, element, length = struct.unpack_from("<HHI", command_set, pos)
        pos += 8
        if group != 0 or pos + length > len(command_set):
            return None
        fields[element] = command_set[pos:pos + length]
        pos += length

    def us(element: int):
        value = fields.get(element)
        return struct.unpack("<H", value)[0] if value is not None and len(value) == 2 else None

    code = us(0x0900)
    if us(0x0100) != C_STORE_RSP or us(0x0120) != message_id or code is None:
        return None
    status = Dataset()
    status.Status = code
    comment = fields.get(0x0902)
    if comment:
        status.ErrorComment = comment.decode("latin-1").strip(" \0")
    offending = fields.get(0x0901)
    if offending and len(offending) % 4 == 0:
        tags = [(g << 16) | e for g, e in struct.iter_unpack("<HH", offending)]
        status.OffendingElement = tags if len(tags) > 1 else tags[0]
    return status
