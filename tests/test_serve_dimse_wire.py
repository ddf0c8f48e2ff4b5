"""The direct C-STORE path of ``dicube serve``'s DIMSE side (dicube.server.dimse_wire) on a
socket pair, against pynetdicom's own encoders: PDUs within the peer's limit, the
response read and decoded, and everything unexpected pushed back untouched for
pynetdicom's DUL thread (an abort, a data fragment, an oversized PDU, another message, a
silent peer). dcmtk getscu/movescu and Orthanc exercise it end to end in
test_serve_dimse.py and test_serve_orthanc.py."""
from __future__ import annotations

import queue
import socket
import struct
import threading

import pytest
from pynetdicom.dimse_messages import C_GET_RSP, C_STORE_RSP
from pynetdicom.dimse_primitives import C_GET, C_STORE
from pynetdicom.pdu import P_DATA_TF

from dicube.server.dimse import _get_pending_command
from dicube.server.dimse_wire import Wire, p_data_pdus

CT = "1.2.840.10008.5.1.4.1.1.2"
SOP = "1.2.3.4.5.6.7.8.9"


def pdus(data: bytes) -> list:
    """(type, PDVs [(context, control, bytes)]) of each PDU in ``data``."""
    out, pos = [], 0
    while pos < len(data):
        kind, length = data[pos], struct.unpack(">I", data[pos + 2:pos + 6])[0]
        body, pvs, k = data[pos + 6:pos + 6 + length], [], 0
        while k < len(body):
            n = struct.unpack(">I", body[k:k + 4])[0]
            pvs.append((body[k + 4], body[k + 5], body[k + 6:k + 4 + n]))
            k += 4 + n
        out.append((kind, length, pvs))
        pos += 6 + length
    return out


def pynetdicom_bytes(primitive, message_class, context_id: int = 1) -> bytes:
    """The PDUs pynetdicom itself would send for ``primitive``."""
    msg = message_class()
    msg.primitive_to_message(primitive)
    out = []
    for p in msg.encode_msg(context_id, 0):
        pdu = P_DATA_TF()
        pdu.from_primitive(p)
        out.append(pdu.encode())
    return b"".join(out)


def store_rsp(message_id: int, status: int = 0x0000, **optional) -> bytes:
    rsp = C_STORE()
    rsp.MessageIDBeingRespondedTo = message_id
    rsp.AffectedSOPClassUID = CT
    rsp.AffectedSOPInstanceUID = SOP
    rsp.Status = status
    for keyword, value in optional.items():
        setattr(rsp, keyword, value)
    return pynetdicom_bytes(rsp, C_STORE_RSP)


class _Box:
    """What Wire needs of pynetdicom's AssociationSocket."""

    def __init__(self, sock):
        self.socket = sock

    def send(self, data) -> None:
        self.socket.sendall(data)

    def recv(self, n: int) -> bytearray:
        out = bytearray()
        while len(out) < n:
            chunk = self.socket.recv(n - len(out))
            if not chunk:
                break
            out += chunk
        return out


class _Dul:
    def __init__(self, box):
        self.socket = box
        self.to_provider_queue = queue.Queue()
        self.read = []

    def _read_pdu_data(self) -> None:  # as pynetdicom: the header, then the rest
        head = self.socket.recv(6)
        self.read.append(bytes(head + self.socket.recv(struct.unpack(">I", head[2:6])[0])))

    def _is_transport_event(self) -> bool:
        return False


class _Assoc:
    def __init__(self, sock, timeout=5):
        self.dul = _Dul(_Box(sock))
        self.dimse_timeout = timeout


@pytest.fixture
def pair():
    ours, peer = socket.socketpair()
    yield ours, peer
    ours.close()
    peer.close()


def exchange(pair, answer: bytes, max_pdu: int = 16384, timeout=5, msg_id: int = 7):
    """Wire.store of a 100,000-byte data set; the peer reads it all, then writes
    ``answer``. Returns (store's result, the wire, the fake DUL, what the peer got)."""
    ours, peer = pair
    assoc = _Assoc(ours, timeout)
    wire = Wire.attach(assoc)
    got = bytearray()
    command = _store_command(msg_id)
    data = p_data_pdus(1, b"", bytes(100_000), max_pdu)
    total = len(p_data_pdus(1, command, b"", max_pdu)) + len(data)

    def peer_side():
        while len(got) < total:
            got.extend(peer.recv(65536))
        peer.sendall(answer)

    t = threading.Thread(target=peer_side)
    t.start()
    result = wire.store(1, command, data, max_pdu, msg_id)
    t.join(10)
    return result, wire, assoc.dul, bytes(got)


def _store_command(msg_id: int) -> bytes:
    from dicube.server.dimse import _store_rq_command

    return _store_rq_command(CT, SOP, msg_id, 2, None, None)


def test_pdus_stay_within_the_peers_limit_and_flag_command_and_data():
    command, data = bytes(range(200)), bytes(50_001)
    for max_pdu in (16384, 4096, 0):
        parsed = pdus(p_data_pdus(3, command, data, max_pdu))
        assert all(kind == 0x04 and (not max_pdu or length <= max_pdu)
                   for kind, length, _ in parsed)
        pvs = [pv for _, _, pvs in parsed for pv in pvs]
        assert all(ctx == 3 for ctx, _, _ in pvs)
        assert b"".join(b for _, c, b in pvs if c & 1) == command
        assert b"".join(b for _, c, b in pvs if not c & 1) == data
        assert [c for _, c, _ in pvs if c & 1][-1] == 0x03 and pvs[-1][1] == 0x02
        assert sum(c in (0x02, 0x03) for _, c, _ in pvs) == 2  # one last fragment each
        # a data set in pieces gives the very same PDUs
        pieces = [data[:5], b"", data[5:20_000], data[20_000:]]
        assert p_data_pdus(3, command, pieces, max_pdu) == p_data_pdus(3, command, data, max_pdu)


def test_pending_get_response_matches_pynetdicom():
    rsp = C_GET()
    rsp.MessageIDBeingRespondedTo = 12
    rsp.AffectedSOPClassUID = "1.2.840.10008.5.1.4.1.2.2.3"
    rsp.Status = 0xFF00
    rsp.NumberOfRemainingSuboperations = 150
    rsp.NumberOfCompletedSuboperations = 49
    rsp.NumberOfFailedSuboperations = 1
    rsp.NumberOfWarningSuboperations = 0
    ours = p_data_pdus(1, _get_pending_command(rsp), b"", 16384)
    assert ours == pynetdicom_bytes(rsp, C_GET_RSP)


def test_store_reads_its_response(pair):
    rsp, wire, dul, got = exchange(pair, store_rsp(7, 0xB000, ErrorComment="coerced",
                                                   OffendingElement=[0x00100010, 0x00100020]))
    assert rsp.Status == 0xB000 and rsp.ErrorComment == "coerced"
    assert rsp.OffendingElement == [0x00100010, 0x00100020]
    assert not wire.pushback and not dul.read
    parsed = pdus(got)
    assert all(length <= 16384 for _, length, _ in parsed)
    assert sum(len(b) for _, _, pvs in parsed for _, c, b in pvs if not c & 1) == 100_000


ABORT = bytes([0x07, 0, 0, 0, 0, 4, 0, 0, 2, 0])
OVERSIZED = struct.pack(">BBI", 4, 0, 1 << 20) + bytes(16)


@pytest.mark.parametrize("answer,kept", [
    (ABORT, ABORT[:6]),                                                 # A-ABORT: its header
    (store_rsp(8), store_rsp(8)),                                       # another message id
    (OVERSIZED, OVERSIZED[:6]),                                         # oversized PDU
    (struct.pack(">BBIIBB", 4, 0, 10, 6, 1, 0x02) + b"data", None),     # a data fragment
    (struct.pack(">BBIIBB", 4, 0, 8, 99, 1, 0x03) + b"xx", None),       # PDV beyond its PDU
    (b"", b""),                                                         # a silent peer
], ids=["abort", "other-message", "oversized", "data-fragment", "bad-item", "silent"])
def test_anything_unexpected_is_pushed_back_for_pynetdicom(pair, answer, kept):
    rsp, wire, dul, _ = exchange(pair, answer, timeout=0.5)
    assert rsp is None
    assert bytes(wire.pushback) == (answer if kept is None else kept)
    if answer == ABORT:  # the DUL thread reads it whole, as if from the socket
        assert dul._is_transport_event() is True
        assert dul.read == [ABORT] and not wire.pushback


def _c_get_sample_10(serve_archive):
    """A pynetdicom C-GET of the shared sample_10 study from a dicube DIMSE server:
    (statuses, data sets received, seconds)."""
    import time

    from pydicom.dataset import Dataset
    from pynetdicom import AE, build_role, evt
    from pynetdicom.sop_class import CTImageStorage
    from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelGet as GET

    from dicube.server import ArchiveIndex
    from dicube.server.dimse import start_dimse

    index = ArchiveIndex(serve_archive)
    server = start_dimse(index, "DICUBE", "127.0.0.1", 0)
    ae = AE("PACED")
    ae.add_requested_context(GET)
    ae.add_requested_context(CTImageStorage, ["1.2.840.10008.1.2.1"])
    received: list = []
    assoc = ae.associate("127.0.0.1", server.port, ae_title="DICUBE",
                         ext_neg=[build_role(CTImageStorage, scp_role=True)],
                         evt_handlers=[(evt.EVT_C_STORE,
                                        lambda e: received.append(e.dataset) or 0x0000)])
    try:
        study = next(s["StudyInstanceUID"] for s in index.find("STUDY", {})
                     if index.instances(s["StudyInstanceUID"])[0].path.name == "sample_10.dcbs")
        query = Dataset()
        query.QueryRetrieveLevel = "STUDY"
        query.StudyInstanceUID = study
        t0 = time.monotonic()
        responses = [status for status, _ in assoc.send_c_get(query, GET, msg_id=1)]
        return responses, received, time.monotonic() - t0
    finally:
        assoc.release()
        server.shutdown()
        index.close()


def test_pending_get_responses_are_paced(serve_archive):
    """A C-GET of 10 instances answers with fewer pending responses than sub-operations
    (one per PENDING_EVERY at most), every instance still arrives, the final counts hold."""
    from dicube.server.dimse import PENDING_EVERY

    responses, received, elapsed = _c_get_sample_10(serve_archive)
    pending = [s for s in responses if s.Status == 0xFF00]
    assert len(received) == 10 and responses[-1].Status == 0x0000
    assert responses[-1].NumberOfCompletedSuboperations == 10
    assert 1 <= len(pending) <= 1 + elapsed / PENDING_EVERY and len(pending) < 10


def test_without_a_plain_socket_pynetdicom_sends_real_data_sets(serve_archive, sample_10,
                                                               monkeypatch):
    """No wire (a TLS socket, say): each instance goes through pynetdicom's own
    send_c_store as a decoded data set, and arrives equal to the source."""
    import pydicom

    from dicube.server import dimse

    monkeypatch.setattr(dimse.Wire, "attach", classmethod(lambda cls, assoc: None))
    responses, received, _ = _c_get_sample_10(serve_archive)
    assert responses[-1].Status == 0x0000 and len(received) == 10
    sources = {str(ds.SOPInstanceUID): ds for ds in
               (pydicom.dcmread(p) for p in sorted(sample_10.iterdir()))}
    for ds in received:
        assert ds.PixelData == sources[str(ds.SOPInstanceUID)].PixelData


def test_store_status_refuses_malformed_command_sets():
    """A command set that does not parse whole (truncated, an element longer than what is
    left, a group other than 0000, a missing or wrong field) is not a response: None."""
    from dicube.server.dimse_wire import store_status

    good = b"".join(pdvs[0][2] for _, _, pdvs in pdus(store_rsp(5)))
    assert store_status(good, 5).Status == 0x0000
    assert store_status(good, 6) is None                          # another message id
    assert store_status(good[:-3], 5) is None                     # truncated element
    assert store_status(good[:5], 5) is None                      # truncated header
    huge = struct.pack("<HHI", 0, 0x0900, 0xFFFFFFFF) + b"\0\0"   # declared 4 GiB
    assert store_status(huge, 5) is None
    assert store_status(struct.pack("<HHI", 8, 0x18, 2) + b"ab", 5) is None  # not group 0
    assert store_status(b"", 5) is None


def test_a_pynetdicom_without_the_internals_gets_no_wire():
    """Another pynetdicom (its DUL lacks what a Wire replaces): attach() declines, so
    C-STOREs go through pynetdicom's own path instead of failing."""
    import socket
    from types import SimpleNamespace

    from dicube.server.dimse_wire import Wire

    a, b = socket.socketpair()
    with a, b:
        box = SimpleNamespace(socket=a, send=a.sendall, recv=a.recv)
        whole = dict(socket=box, to_provider_queue=None, _read_pdu_data=lambda: None,
                     _is_transport_event=lambda: False)
        for missing in ("_read_pdu_data", "_is_transport_event", "to_provider_queue"):
            dul = SimpleNamespace(**{k: v for k, v in whole.items() if k != missing})
            assert Wire.attach(SimpleNamespace(dul=dul, dimse_timeout=5)) is None, missing
        assert isinstance(Wire.attach(SimpleNamespace(dul=SimpleNamespace(**whole),
                                                      dimse_timeout=5)), Wire)
