"""DIMSE services over an archive of .dcbs files (pynetdicom): C-ECHO, C-FIND, C-GET, C-MOVE.

Instances leave as the streaming reader writes them: the stored HTJ2K codestream when the
peer accepted HTJ2K Lossless for the SOP class, else Explicit or Implicit VR Little Endian.
The data set bytes are sent as they are (pynetdicom would otherwise decode and re-encode
every instance); a peer that accepted none of these syntaxes gets a failure status with an
error comment instead of an instance it did not agree to.
"""
from __future__ import annotations

import functools
import logging
import struct
import threading
import time
import weakref
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator, Mapping

from pydicom import Dataset
from pydicom.multival import MultiValue
from pydicom.uid import UID

from ..exceptions import DicomCubeError
from .dimse_wire import Wire, p_data_pdus
from .pixels import store_for

log = logging.getLogger(__name__)

__all__ = ["DimseServer", "start_dimse"]

EXPLICIT_LE = "1.2.840.10008.1.2.1"
IMPLICIT_LE = "1.2.840.10008.1.2"
HTJ2K_LOSSLESS = "1.2.840.10008.1.2.4.201"
HTJ2K_RPCL = "1.2.840.10008.1.2.4.202"
JPEG_XL_LOSSLESS = "1.2.840.10008.1.2.4.110"
#: Syntaxes accepted for C-STORE sub-operations (C-GET role negotiation), best first.
STORE_SYNTAXES = [HTJ2K_LOSSLESS, HTJ2K_RPCL, JPEG_XL_LOSSLESS, EXPLICIT_LE, IMPLICIT_LE]
LEVELS = ("PATIENT", "STUDY", "SERIES", "IMAGE")
PREFETCH = 3  # data sets encoded ahead per retrieve
WORKERS = 4   # threads encoding data sets, shared by all associations
PENDING_EVERY = 0.1  # seconds between pending C-GET responses (progress) on an association
STUDY_ROOT = "1.2.840.10008.5.1.4.1.2.2."  # Study Root Q/R models: .1 FIND, .2 MOVE, .3 GET
# Keys of a query identifier that are not attributes to match or return.
_CONTROL = {"QueryRetrieveLevel", "SpecificCharacterSet", "TimezoneOffsetFromUTC",
            "QueryRetrieveView"}
_SYNTAX_NAMES = {HTJ2K_LOSSLESS: "HTJ2K Lossless", HTJ2K_RPCL: "HTJ2K RPCL",
                 JPEG_XL_LOSSLESS: "JPEG XL Lossless", EXPLICIT_LE: "Explicit VR LE",
                 IMPLICIT_LE: "Implicit VR LE"}


class DimseServer:
    """A running DIMSE service (pynetdicom association server on its own threads)."""

    def __init__(self, ae, server, ae_title: str, host: str, port: int, pool=None):
        self._ae, self._server, self._pool = ae, server, pool
        self.ae_title, self.host, self.port = ae_title, host, port

    def shutdown(self) -> None:
        """Stop accepting associations and close the ones in progress."""
        self._server.shutdown()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> "DimseServer":
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()


def start_dimse(index, ae_title: str = "DICUBE", host: str = "127.0.0.1", port: int = 11112,
                destinations: Mapping[str, tuple] | None = None) -> DimseServer:
    """Serve ``index`` (an :class:`~dicube.server.index.ArchiveIndex`) over DIMSE as
    ``ae_title`` on ``host:port`` (0: a free port, see ``DimseServer.port``); returns at once.

    ``destinations`` maps the AE titles C-MOVE may send to onto ``(host, port)``; any other
    Move Destination is refused with status 0xA801.
    """
    from pynetdicom import AE, evt
    from pynetdicom.presentation import AllStoragePresentationContexts
    from pynetdicom.sop_class import (
        PatientRootQueryRetrieveInformationModelFind as PRF,
        PatientRootQueryRetrieveInformationModelGet as PRG,
        PatientRootQueryRetrieveInformationModelMove as PRM,
        StudyRootQueryRetrieveInformationModelFind as SRF,
        StudyRootQueryRetrieveInformationModelGet as SRG,
        StudyRootQueryRetrieveInformationModelMove as SRM,
        Verification,
    )

    _check_ae_title(ae_title)
    services = _Services(index, destinations or {})
    ae = AE(ae_title)
    ae.maximum_pdu_size = 0  # no limit on what peers send us (only small requests)
    ae.add_supported_context(Verification, [EXPLICIT_LE, IMPLICIT_LE])
    for uid in (PRF, PRG, PRM, SRF, SRG, SRM):
        ae.add_supported_context(uid, [EXPLICIT_LE, IMPLICIT_LE])
    for cx in AllStoragePresentationContexts:  # C-GET: we are the Storage SCU on the peer's
        ae.add_supported_context(cx.abstract_syntax, STORE_SYNTAXES, scp_role=True,
                                 scu_role=False)
    handlers = [(evt.EVT_C_ECHO, lambda event: 0x0000),
                (evt.EVT_C_FIND, services.on_find),
                (evt.EVT_C_GET, services.on_get),
                (evt.EVT_C_MOVE, services.on_move)]
    server = ae.start_server((host, port), block=False, evt_handlers=handlers)
    services.ae = ae
    return DimseServer(ae, server, ae_title, host, server.server_address[1], services.pool)


def _check_ae_title(title: str) -> None:
    if not title or len(title) > 16 or not title.isascii() or "\\" in title:
        raise ValueError(f"not a valid AE title (1-16 ASCII characters): {title!r}")


# ------------------------------------------------------------------ data set bytes
def _part10_body(data: bytes) -> bytes:
    """The data set of Part 10 bytes written by dicube: what follows the file meta group
    (whose first element is its group length)."""
    (length,) = struct.unpack_from("<I", data, 140)
    return data[144 + length:]


class _Source:
    """The instances of one streaming reader: their SOP classes and the syntaxes they
    can be written in (the reader's order: stored codestream first)."""

    def __init__(self, reader, pixels):
        self.reader, self.pixels = reader, pixels
        self.syntaxes = tuple(reader.available_transfer_syntaxes())
        classes = reader.meta.get_values("00080016")
        fallback = reader.meta.get_values("00020002")
        self.sop_classes = [str(a or b or "") for a, b in zip(classes, fallback)]

    def pdus(self, frame: int, syntax: str, context_id: int, max_pdu: int) -> bytes:
        """The encoded data set of ``frame`` in ``syntax`` (one of ``self.syntaxes``) as
        the P-DATA-TF PDUs that carry it; its Pixel Data value from the archive's
        PixelStore (shared with WADO-RS: a frame decoded for one is not decoded again)."""
        pixels = self.pixels.instance(self.reader, frame, syntax)
        pieces = self.reader.get_dicom_pieces(frame, syntax, pixels)
        return p_data_pdus(context_id, b"", [_part10_body(pieces[0])] + pieces[1:], max_pdu)

    def dataset(self, frame: int, syntax: str) -> Dataset:
        """``frame``'s instance in ``syntax`` as a pydicom Dataset (the slow path)."""
        from io import BytesIO

        from pydicom import dcmread

        return dcmread(BytesIO(self.reader.get_dicom_for_instance(frame, transfer_syntax=syntax)))


class _Pending(Dataset):
    """A C-STORE sub-operation: the instance's UIDs (all pynetdicom looks at) plus where
    its bytes come from; our send_c_store sends those bytes unchanged."""

    def __init__(self, source: _Source, frame: int, sop_class: str, sop_instance: str):
        super().__init__()
        self.SOPClassUID = sop_class
        self.SOPInstanceUID = sop_instance
        object.__setattr__(self, "_dicube_source", (source, frame))
        object.__setattr__(self, "_dicube_pdus", None)  # (key, Future) when made ahead

    def pdus(self, syntax: str, context_id: int, max_pdu: int) -> bytes:
        ahead = self._dicube_pdus
        if ahead is not None and ahead[0] == (syntax, context_id, max_pdu):
            return ahead[1].result()
        source, frame = self._dicube_source
        return source.pdus(frame, syntax, context_id, max_pdu)


def _usable(assoc, sop_class: str, syntaxes) -> "tuple | None":
    """(context, syntax): the accepted context in which we may send ``sop_class`` as the
    Storage SCU, in the first of ``syntaxes`` the peer accepted; None when there is none.
    Kept per association (its accepted contexts do not change)."""
    known = assoc.__dict__.setdefault("_dicube_usable", {})
    key = (sop_class, tuple(syntaxes))
    if key not in known:
        known[key] = _find_usable(assoc, sop_class, syntaxes)
    return known[key]


def _find_usable(assoc, sop_class: str, syntaxes) -> "tuple | None":
    by_syntax = {}
    for cx in assoc.accepted_contexts:
        if cx.abstract_syntax == sop_class and cx.as_scu:
            by_syntax.setdefault(str(cx.transfer_syntax[0]), cx)
    for ts in syntaxes:
        if ts in by_syntax:
            return by_syntax[ts], ts
    return None


def _refusal(assoc, sop_class: str, syntaxes) -> str:
    """Why ``sop_class`` cannot be sent on ``assoc`` (for the log and the error comment)."""
    offered = sorted({_SYNTAX_NAMES.get(str(cx.transfer_syntax[0]),
                                        str(cx.transfer_syntax[0]))
                      for cx in assoc.accepted_contexts
                      if cx.abstract_syntax == sop_class and cx.as_scu})
    ours = ", ".join(_SYNTAX_NAMES.get(t, t) for t in syntaxes)
    return (f"peer {assoc.requestor.ae_title if assoc.is_acceptor else assoc.acceptor.ae_title}"
            f" accepted no transfer syntax we produce for {UID(sop_class).name}: we offer {ours},"
            f" it accepted {', '.join(offered) or 'nothing'}")


def _send_c_store(assoc, original, dataset, msg_id: int = 1, priority: int = 2,
                  originator_aet: str | None = None, originator_id: int | None = None):
    """Association.send_c_store for _Pending sub-operations: the data set bytes as the
    streaming reader made them, in the best syntax the peer accepted. Anything else goes
    to pynetdicom's own send_c_store."""
    pending = getattr(dataset, "_dicube_source", None)
    if pending is None:
        return original(dataset, msg_id=msg_id, priority=priority,
                        originator_aet=originator_aet, originator_id=originator_id)
    source = pending[0]
    sop_class = str(dataset.SOPClassUID)
    chosen = _usable(assoc, sop_class, source.syntaxes)
    if chosen is None:
        msg = _refusal(assoc, sop_class, source.syntaxes)
        log.warning("C-STORE of %s refused: %s", dataset.SOPInstanceUID, msg)
        raise ValueError(msg)
    cx, syntax = chosen
    wire = getattr(assoc, "_dicube_wire", None)
    if wire is None:  # no plain socket to write on: pynetdicom encodes a real data set
        return original(source.dataset(pending[1], syntax), msg_id=msg_id, priority=priority,
                        originator_aet=originator_aet, originator_id=originator_id)
    max_pdu = assoc.dimse.maximum_pdu_size
    data = dataset.pdus(syntax, cx.context_id, max_pdu)
    command = _store_rq_command(sop_class, str(dataset.SOPInstanceUID), msg_id, priority,
                                originator_aet, originator_id)
    # As pynetdicom's send_c_store: pause the association's reactor while we wait for
    # the response, so it does not take the C-STORE-RSP off the queue.
    assoc._reactor_checkpoint.clear()
    try:
        while not assoc._is_paused:
            time.sleep(0.0001)
        status = wire.store(cx.context_id, command, data, max_pdu, msg_id)
        if status is not None:
            return status
        _, rsp = assoc.dimse.get_msg(block=True)
    finally:
        assoc._reactor_checkpoint.set()
    if rsp is None:
        assoc._handle_no_response()
        return Dataset()
    return assoc._check_received_status(rsp)


def _element(tag: int, value: bytes) -> bytes:
    """One Implicit VR Little Endian element of a command set."""
    return struct.pack("<HHI", tag >> 16, tag & 0xFFFF, len(value)) + value


def _uid_value(uid: str) -> bytes:
    data = uid.encode("ascii")
    return data + b"\0" * (len(data) % 2)


def _store_rq_command(sop_class: str, sop_instance: str, msg_id: int, priority: int,
                      originator_aet: str | None, originator_id: int | None) -> bytes:
    """The encoded command set of a C-STORE-RQ with a data set (PS3.7 9.3.1.1), written
    directly: pynetdicom's pydicom round trip cost about as much as sending the data."""
    parts = [_element(0x00000002, _uid_value(sop_class)),
             _element(0x00000100, struct.pack("<H", 0x0001)),
             _element(0x00000110, struct.pack("<H", msg_id)),
             _element(0x00000700, struct.pack("<H", priority)),
             _element(0x00000800, struct.pack("<H", 0x0001)),  # a data set follows
             _element(0x00001000, _uid_value(sop_instance))]
    if originator_aet:
        aet = originator_aet.encode("ascii")
        parts.append(_element(0x00001030, aet + b" " * (len(aet) % 2)))
    if originator_id is not None:
        parts.append(_element(0x00001031, struct.pack("<H", originator_id)))
    rest = b"".join(parts)
    return _element(0x00000000, struct.pack("<I", len(rest))) + rest


def _install_sender(assoc):
    """Make ``assoc`` send _Pending instances with _send_c_store, and pending C-GET
    responses, straight on its socket (:class:`~dicube.server.dimse_wire.Wire`);
    returns ``assoc``."""
    if not getattr(assoc, "_dicube_sender", False):
        assoc.send_c_store = functools.partial(_send_c_store, assoc, assoc.send_c_store)
        assoc._dicube_sender = True
        assoc._dicube_wire = Wire.attach(assoc)
        if assoc._dicube_wire is not None:
            assoc.dimse.send_msg = functools.partial(_send_msg, assoc, assoc.dimse.send_msg)
    return assoc


def _send_msg(assoc, original, primitive, context_id: int) -> None:
    """DIMSEServiceProvider.send_msg with pending C-GET responses encoded here and written
    on the wire, at most one every PENDING_EVERY seconds (they are optional, PS3.4
    C.4.3.1.3.1: progress for the peer, not one message more per instance); everything
    else goes to pynetdicom's."""
    if (type(primitive).__name__ != "C_GET" or primitive.Status != 0xFF00
            or primitive.Identifier is not None):
        return original(primitive, context_id)
    now = time.monotonic()
    if now - assoc.__dict__.get("_dicube_pending_at", 0.0) < PENDING_EVERY:
        return None
    assoc._dicube_pending_at = now
    assoc._dicube_wire.send(context_id, _get_pending_command(primitive),
                            assoc.dimse.maximum_pdu_size)


def _get_pending_command(rsp) -> bytes:
    """The command set of a pending C-GET-RSP without identifier (PS3.7 9.3.3.2)."""
    parts = [_element(0x00000002, _uid_value(str(rsp.AffectedSOPClassUID))),
             _element(0x00000100, struct.pack("<H", 0x8010)),
             _element(0x00000120, struct.pack("<H", rsp.MessageIDBeingRespondedTo)),
             _element(0x00000800, struct.pack("<H", 0x0101)),  # no data set
             _element(0x00000900, struct.pack("<H", rsp.Status))]
    for tag, value in ((0x00001020, rsp.NumberOfRemainingSuboperations),
                       (0x00001021, rsp.NumberOfCompletedSuboperations),
                       (0x00001022, rsp.NumberOfFailedSuboperations),
                       (0x00001023, rsp.NumberOfWarningSuboperations)):
        if value is not None:
            parts.append(_element(tag, struct.pack("<H", value)))
    rest = b"".join(parts)
    return _element(0x00000000, struct.pack("<I", len(rest))) + rest


def _status(code: int, comment: str) -> Dataset:
    ds = Dataset()
    ds.Status = code
    ds.ErrorComment = comment[:64]  # LO
    return ds


# ------------------------------------------------------------------ queries
def _text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, tuple, MultiValue)):
        return "\\".join(_text(v) for v in value)
    return str(value)


class _BadQuery(Exception):
    """A malformed identifier: (status, comment)."""


def _query(identifier, model: str | None = None) -> tuple[str, dict, list]:
    """(level, filters, requested elements) of a C-FIND/C-GET/C-MOVE identifier."""
    level = str(identifier.get("QueryRetrieveLevel", "") or "").strip().upper()
    if level not in LEVELS:
        raise _BadQuery(f"Query/Retrieve Level {level or '(missing)'} is not one of "
                        + ", ".join(LEVELS))
    if level == "PATIENT" and model is not None and model.startswith(STUDY_ROOT):
        raise _BadQuery("Study Root has no PATIENT level")
    filters, requested = {}, []
    for elem in identifier:
        kw = elem.keyword
        if kw in _CONTROL or elem.tag.group in (0x0000, 0x0002):
            continue
        requested.append(elem)
        if not kw or elem.VR == "SQ":
            continue
        value = _text(elem.value).strip()
        if value:
            filters[kw] = value
    return level, filters, requested


class _Services:
    """The event handlers, bound to one index."""

    def __init__(self, index, destinations: Mapping[str, tuple]):
        self.index = index
        self.pixels = store_for(index)
        self.destinations = {k.strip(): (str(v[0]), int(v[1])) for k, v in destinations.items()}
        self.ae = None
        self._sources: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
        self.pool = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="dicube-dimse")
        self._lock = threading.Lock()

    def source(self, path) -> _Source:
        reader = self.index.streaming_reader(path)
        with self._lock:
            src = self._sources.get(reader)
        if src is None:
            src = _Source(reader, self.pixels)
            with self._lock:
                self._sources[reader] = src
        return src

    def _check_studies(self, uids) -> None:
        """DicomCubeError naming the unreadable files of any of these studies."""
        for uid in uids:
            bad = self.index.study_errors(uid) if uid else None
            if bad:
                path, why = next(iter(bad.items()))
                log.error("study %s: %d file(s) cannot be read, e.g. %s: %s", uid, len(bad),
                          path, why)
                raise DicomCubeError(f"study has unreadable files: {path.name}: {why}")

    # C-FIND -------------------------------------------------------------------
    def on_find(self, event) -> Iterator:
        model = str(event.request.AffectedSOPClassUID)
        try:
            identifier = event.identifier
            level, filters, requested = _query(identifier, model)
            self._check_studies(filters.get("StudyInstanceUID", "").split("\\"))
            matches = self.index.find(level, filters)
        except _BadQuery as exc:
            log.warning("C-FIND refused: %s", exc)
            yield _status(0xA900, str(exc)), None
            return
        except ValueError as exc:
            log.warning("C-FIND refused, malformed identifier: %s", exc)
            yield _status(0xA900, f"malformed identifier: {exc}"), None
            return
        except DicomCubeError as exc:
            log.error("C-FIND failed: %s", exc)
            yield _status(0xC001, f"unable to process: {exc}"), None
            return
        except Exception as exc:  # undecodable identifier and the like
            log.warning("C-FIND refused: %s", exc)
            yield _status(0xA900, f"cannot read the identifier: {exc}"), None
            return
        for match in matches:
            if event.is_cancelled:
                yield 0xFE00, None
                return
            yield 0xFF00, _answer(level, requested, match)

    # C-GET / C-MOVE -----------------------------------------------------------
    def _resolve(self, event) -> list:
        level, filters, _ = _query(event.identifier, str(event.request.AffectedSOPClassUID))
        if level == "PATIENT":
            level = "STUDY"
        self._check_studies(filters.get("StudyInstanceUID", "").split("\\"))
        refs = []
        for m in self.index.find(level, filters):
            study = m.get("StudyInstanceUID")
            if not study:
                continue
            if level in ("STUDY", "PATIENT"):
                self._check_studies([study])
            series = m.get("SeriesInstanceUID") if level in ("SERIES", "IMAGE") else None
            sop = m.get("SOPInstanceUID") if level == "IMAGE" else None
            refs.extend(self.index.instances(study, series or None, sop or None))
        return refs

    def _refs_or_error(self, event, op: str):
        try:
            refs = self._resolve(event)
            if not refs and not getattr(self.index, "ready", True):
                done, found = self.index.scan_progress()
                raise DicomCubeError(f"not indexed yet: the first scan of the archive has "
                                     f"read {done} of {found} files")
            return refs, None
        except _BadQuery as exc:
            err = _status(0xA900, str(exc))
        except ValueError as exc:
            err = _status(0xA900, f"malformed identifier: {exc}")
        except DicomCubeError as exc:
            err = _status(0xC001, f"unable to process: {exc}")
        except Exception as exc:
            err = _status(0xA900, f"cannot read the identifier: {exc}")
        log.warning("%s refused: %s", op, err.ErrorComment)
        return None, err

    def _pending(self, refs) -> Iterator[_Pending]:
        sources: dict = {}
        for ref in refs:
            src = sources.get(ref.path)
            if src is None:
                src = sources[ref.path] = self.source(ref.path)
            yield _Pending(src, ref.frame, src.sop_classes[ref.frame], ref.sop_uid)

    def _suboperations(self, event, assoc, refs) -> Iterator:
        """(status, dataset) of every sub-operation, after checking the association can
        carry the instances at all (else one failure status saying why). A file that
        cannot be opened ends the retrieve with 0xC001 and the reason."""
        done = 0

        def failure(code: int, comment: str):
            failed = Dataset()
            failed.FailedSOPInstanceUIDList = [r.sop_uid for r in refs[done:]]
            return _status(code, comment), failed

        try:
            first = next(self._pending(refs[:1]))
        except (DicomCubeError, OSError) as exc:
            log.error("retrieve failed: %s", exc)
            yield failure(0xC001, f"unable to process: {exc}")
            return
        if _usable(assoc, str(first.SOPClassUID), first._dicube_source[0].syntaxes) is None:
            msg = _refusal(assoc, str(first.SOPClassUID), first._dicube_source[0].syntaxes)
            log.warning("retrieve refused: %s", msg)
            yield failure(0xA702, "no acceptable transfer syntax: HTJ2K, Explicit or "
                                  "Implicit VR LE needed")
            return
        # The next few data sets are encoded on worker threads while the current one
        # is on the wire (decoding a frame for a native syntax costs ~3 ms).
        window: list = []
        pendings = self._pending(refs)
        try:
            while True:
                try:
                    pending = next(pendings, None)
                except (DicomCubeError, OSError) as exc:
                    log.error("retrieve failed: %s", exc)
                    yield failure(0xC001, f"unable to process: {exc}")
                    return
                if pending is not None:
                    window.append(self._prefetch(assoc, pending))
                    if len(window) <= PREFETCH:
                        continue
                if not window:
                    return
                if event.is_cancelled:
                    yield 0xFE00, None
                    return
                done += 1
                yield 0xFF00, window.pop(0)
        finally:
            for left in window:
                if left._dicube_pdus is not None:
                    left._dicube_pdus[1].cancel()

    def _prefetch(self, assoc, pending: _Pending) -> _Pending:
        source, frame = pending._dicube_source
        chosen = _usable(assoc, str(pending.SOPClassUID), source.syntaxes)
        if chosen is not None and getattr(assoc, "_dicube_wire", None) is not None:
            key = (chosen[1], chosen[0].context_id, assoc.dimse.maximum_pdu_size)
            object.__setattr__(pending, "_dicube_pdus",
                               (key, self.pool.submit(source.pdus, frame, *key)))
        return pending

    def on_get(self, event) -> Iterator:
        refs, err = self._refs_or_error(event, "C-GET")
        yield from self._retrieve(event, refs, err, lambda: _install_sender(event.assoc))

    def on_move(self, event) -> Iterator:
        from pynetdicom import build_context, evt

        dest = _text(event.move_destination).strip()
        address = self.destinations.get(dest)
        if address is None:
            log.warning("C-MOVE refused: unknown move destination %r", dest)
            yield None, None
            return
        refs, err = self._refs_or_error(event, "C-MOVE")
        holder = {}

        def established(ev):
            holder["assoc"] = _install_sender(ev.assoc)

        from pynetdicom.sop_class import Verification

        # Verification too: a peer that accepts none of our storage contexts still
        # associates, and hears why nothing is sent (instead of an abort).
        contexts = [build_context(Verification)]
        for sop_class, syntaxes in self._proposals(refs or []).items():
            contexts += [build_context(sop_class, ts) for ts in syntaxes]
        if len(contexts) > 128:
            err = _status(0xA702, "more SOP classes than one association can carry")
        yield address[0], address[1], {"contexts": contexts,
                                       "evt_handlers": [(evt.EVT_ESTABLISHED, established)]}
        yield from self._retrieve(event, refs, err, lambda: holder["assoc"])

    def _retrieve(self, event, refs, err, assoc_of) -> Iterator:
        """The rest of a C-GET/C-MOVE handler: the number of sub-operations, then their
        statuses (one failure when ``err``), sent on the association ``assoc_of()`` gives."""
        if err is not None:
            yield 1
            yield err, None
            return
        yield len(refs)
        if refs:
            yield from self._suboperations(event, assoc_of(), refs)

    def _proposals(self, refs) -> dict:
        """SOP class -> transfer syntaxes to propose (one presentation context each)."""
        out: dict = {}
        for path in dict.fromkeys(r.path for r in refs):
            src = self.source(path)
            frames = [r.frame for r in refs if r.path == path]
            for sop_class in {src.sop_classes[f] for f in frames}:
                out.setdefault(sop_class, dict.fromkeys([]))
                out[sop_class].update(dict.fromkeys(src.syntaxes))
        return {k: list(v) for k, v in out.items()}


def _answer(level: str, requested: list, match: Mapping) -> Dataset:
    """A C-FIND match: the requested elements only, with the archive's values."""
    ds = Dataset()
    texts = []
    for elem in requested:
        value = match.get(elem.keyword, "") if elem.keyword else ""
        if elem.VR == "SQ":
            ds.add_new(elem.tag, "SQ", [])
            continue
        if value == "" or value is None:
            value = None
        elif isinstance(value, str):
            texts.append(value)
            if "\\" in value and elem.VR not in ("LT", "ST", "UT"):
                value = value.split("\\")
        try:
            ds.add_new(elem.tag, elem.VR, value)
        except (ValueError, TypeError, KeyError):  # an ambiguous VR ("US or SS") and the like
            ds.add_new(elem.tag, "UN", None)
    if not all(t.isascii() for t in texts):
        ds.SpecificCharacterSet = "ISO_IR 192"
    ds.QueryRetrieveLevel = level
    return ds
