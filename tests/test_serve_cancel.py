"""C-CANCEL of a C-GET and of a C-MOVE part-way (dcmtk's getscu/movescu cannot cancel:
pynetdicom is the client). The server must end the retrieve with 0xFE00 (Cancel), count
what it did right, send no further sub-operation, and keep the association usable."""
from __future__ import annotations

import threading
import time

import pytest
from pydicom.dataset import Dataset

SAMPLE = "ct/sample_10.dcbs"
K = 3          # C-STOREs received before the client cancels
SETTLE = 0.5   # seconds to wait for a sub-operation the server should not send
UNCOMPRESSED = ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"]
HTJ2K = ["1.2.840.10008.1.2.4.201"] + UNCOMPRESSED


@pytest.fixture(scope="module")
def dimse(serve_archive):
    from dicube.server import ArchiveIndex
    from dicube.server.dimse import start_dimse

    index = ArchiveIndex(serve_archive)
    refs = [r for r in index.instances(_study(index)) if r.path.name == "sample_10.dcbs"]
    assert len(refs) == 10
    store = _StoreSCP()
    server = start_dimse(index, "DICUBE", "127.0.0.1", 0, destinations={"STORE": store.address})
    try:
        yield server, refs, store
    finally:
        server.shutdown()
        store.shutdown()
        index.close()


def _study(index) -> str:
    for s in index.find("STUDY", {}):
        refs = index.instances(s["StudyInstanceUID"])
        if refs and refs[0].path.name == "sample_10.dcbs":
            return s["StudyInstanceUID"]
    raise AssertionError("sample_10 not in the archive")


def _identifier(study: str) -> Dataset:
    ds = Dataset()
    ds.QueryRetrieveLevel = "STUDY"
    ds.StudyInstanceUID = study
    return ds


class _StoreSCP:
    """A pynetdicom Storage SCP (the C-MOVE destination); ``on_store`` is called with the
    number of data sets received so far, before the C-STORE response is sent."""

    def __init__(self):
        from pynetdicom import AE, evt
        from pynetdicom.sop_class import CTImageStorage

        self.received: list = []
        self.on_store = None
        ae = AE("STORE")
        ae.add_supported_context(CTImageStorage, ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"])
        self._server = ae.start_server(("127.0.0.1", 0), block=False,
                                       evt_handlers=[(evt.EVT_C_STORE, self._store)])
        self.address = ("127.0.0.1", self._server.server_address[1])

    def _store(self, event):
        self.received.append(event.request.AffectedSOPInstanceUID)
        if self.on_store is not None:
            self.on_store(len(self.received))
        return 0x0000

    def shutdown(self):
        self._server.shutdown()


def _associate(server, model, with_storage: bool, syntaxes=UNCOMPRESSED):
    from pynetdicom import AE, build_role
    from pynetdicom.sop_class import CTImageStorage, Verification

    ae = AE("CANCELSCU")
    ae.add_requested_context(Verification)
    ae.add_requested_context(model)
    roles = []
    if with_storage:
        ae.add_requested_context(CTImageStorage, syntaxes)
        roles = [build_role(CTImageStorage, scp_role=True)]
    received: list = []
    state = {"cancel": None, "syntaxes": set()}

    def on_store(event):
        state["syntaxes"].add(event.context.transfer_syntax)
        received.append(event.request.AffectedSOPInstanceUID)
        if state["cancel"] is not None:
            state["cancel"](len(received))
        return 0x0000

    from pynetdicom import evt

    assoc = ae.associate("127.0.0.1", server.port, ae_title="DICUBE", ext_neg=roles,
                         evt_handlers=[(evt.EVT_C_STORE, on_store)] if with_storage else [])
    assert assoc.is_established
    return assoc, received, state


def _final(responses: list):
    """The last (non-pending) response of a retrieve, after checking the pending ones."""
    statuses = [status.Status for status, _ in responses]
    assert statuses and all(s == 0xFF00 for s in statuses[:-1]), [hex(s) for s in statuses]
    return responses[-1][0]


def _counts(status) -> tuple:
    return tuple(int(getattr(status, f"NumberOf{w}Suboperations", -1))
                 for w in ("Remaining", "Completed", "Failed", "Warning"))


@pytest.mark.parametrize("syntaxes", [UNCOMPRESSED, HTJ2K], ids=["uncompressed", "htj2k"])
def test_c_get_cancelled_part_way(dimse, syntaxes):
    from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelGet as GET

    server, refs, _ = dimse
    assoc, received, state = _associate(server, GET, with_storage=True, syntaxes=syntaxes)
    try:
        def cancel(n):  # in the C-STORE handler: the C-CANCEL leaves before the response
            if n == K:
                assoc.send_c_cancel(1, query_model=GET)

        state["cancel"] = cancel
        responses = list(assoc.send_c_get(_identifier(refs[0].study_uid), GET, msg_id=1))
        final = _final(responses)
        assert final.Status == 0xFE00, hex(final.Status)
        time.sleep(SETTLE)
        assert len(received) == K, f"{len(received)} C-STOREs after a cancel at {K}"
        assert received == [r.sop_uid for r in refs[:K]]
        assert _counts(final) == (len(refs) - K, K, 0, 0)
        assert state["syntaxes"] == {syntaxes[0]}

        # the association stays usable: an echo, then the whole study again
        assert assoc.send_c_echo(msg_id=2).Status == 0x0000
        state["cancel"] = None
        received.clear()
        final = _final(list(assoc.send_c_get(_identifier(refs[0].study_uid), GET, msg_id=3)))
        assert final.Status == 0x0000 and len(received) == len(refs)
        assert _counts(final)[1:] == (len(refs), 0, 0)
    finally:
        assoc.release()


def test_c_move_cancelled_part_way(dimse):
    from pynetdicom.sop_class import StudyRootQueryRetrieveInformationModelMove as MOVE

    server, refs, store = dimse
    assoc, _, _ = _associate(server, MOVE, with_storage=False)
    store.received.clear()
    cancelled = threading.Event()

    def cancel(n):  # on the destination's association: C-CANCEL on the move's, then wait
        if n == K:  # for it to arrive before this C-STORE is answered
            assoc.send_c_cancel(1, query_model=MOVE)
            cancelled.set()
            time.sleep(0.3)

    store.on_store = cancel
    try:
        responses = list(assoc.send_c_move(_identifier(refs[0].study_uid), "STORE", MOVE,
                                           msg_id=1))
        final = _final(responses)
        assert cancelled.is_set()
        assert final.Status == 0xFE00, hex(final.Status)
        time.sleep(SETTLE)
        assert len(store.received) == K, f"{len(store.received)} C-STOREs after a cancel at {K}"
        assert _counts(final) == (len(refs) - K, K, 0, 0)

        assert assoc.send_c_echo(msg_id=2).Status == 0x0000
        store.on_store = None
        store.received.clear()
        final = _final(list(assoc.send_c_move(_identifier(refs[0].study_uid), "STORE", MOVE,
                                              msg_id=3)))
        assert final.Status == 0x0000 and len(store.received) == len(refs)
    finally:
        store.on_store = None
        assoc.release()
