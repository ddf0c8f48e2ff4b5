"""Running the servers: uvicorn on a thread (:class:`HttpServer`) and :func:`serve`,
which starts DICOMweb and DIMSE at once, indexes the folder meanwhile (answers come from
what is indexed so far) and blocks until Ctrl-C."""
from __future__ import annotations

import logging
import os
import signal
import threading
import time
from typing import Callable, Optional

from ..exceptions import DicomCubeError

__all__ = ["HttpServer", "serve", "parse_hostport", "parse_dimse", "parse_destination"]

log = logging.getLogger("dicube.server")


def parse_hostport(text: str, what: str = "--http", default_port: Optional[int] = None):
    """``HOST:PORT`` (``[v6]:PORT``, or ``:PORT`` for 127.0.0.1) -> (host, port)."""
    host, sep, port = text.rpartition(":")
    if not sep:
        if default_port is None:
            raise ValueError(f"{what} {text!r}: expected HOST:PORT")
        host, port = text, str(default_port)
    host = host.strip("[]") or "127.0.0.1"
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{what} {text!r}: {port!r} is not a port number")
    return host, int(port)


def _ae_title(ae: str, what: str) -> str:
    if not ae or len(ae) > 16 or not ae.isascii() or "\\" in ae or not ae.isprintable() \
            or ae.strip() != ae:
        raise ValueError(f"{what}: {ae!r} is not an AE title (1-16 printable ASCII characters)")
    return ae


def parse_dimse(text: str):
    """``AET@HOST:PORT`` (or ``AET@:PORT``, ``HOST:PORT`` with AE title DICUBE) ->
    (ae_title, host, port)."""
    ae, sep, rest = text.rpartition("@")
    ae = _ae_title(ae, "--dimse") if sep else "DICUBE"
    host, port = parse_hostport(rest, "--dimse", 11112)
    return ae, host, port


def parse_destination(text: str):
    """``AET=HOST:PORT`` -> (ae_title, (host, port))."""
    ae, sep, rest = text.partition("=")
    if not sep:
        raise ValueError(f"--move-destination {text!r}: expected AET=HOST:PORT")
    host, port = parse_hostport(rest, "--move-destination")
    return _ae_title(ae, "--move-destination"), (host, port)


class HttpServer:
    """uvicorn serving ``app`` on a thread; ``port=0`` picks a free port (see ``port``)."""

    def __init__(self, app, host: str = "127.0.0.1", port: int = 0, *, log_level: str = "warning",
                 access_log: bool = False):
        import uvicorn

        config = uvicorn.Config(app, host=host, port=port, log_level=log_level, lifespan="off",
                                access_log=access_log, timeout_graceful_shutdown=5)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._run, name="dicube-http", daemon=True)
        self.host = host
        self.port = port

    def _run(self) -> None:
        try:
            self._server.run()
        except SystemExit:  # uvicorn exits when it cannot bind: start() reports it
            pass

    def start(self, timeout: float = 20.0) -> "HttpServer":
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise DicomCubeError(f"the HTTP server did not start on {self.host}:{self.port} "
                                     "(address in use or not this machine's?)")
            time.sleep(0.01)
        sock = self._server.servers[0].sockets[0]
        self.port = sock.getsockname()[1]
        return self

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def shutdown(self, timeout: float = 10.0) -> None:
        self._server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout)
        if self._thread.is_alive():
            self._server.force_exit = True
            self._thread.join(timeout)

    def __enter__(self) -> "HttpServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.shutdown()


def serve(root, http: Optional[str] = "127.0.0.1:8042", dimse: Optional[str] = None,
          readonly: bool = True, *, destinations: Optional[dict] = None, auth=None,
          watch_interval: float = 2.0, cors_origins=(), log_requests: bool = False, print_fn: Callable[[str], None] = print,
          stop: Optional[threading.Event] = None) -> None:
    """Index ``root`` and serve it over DICOMweb (``http`` "HOST:PORT") and/or DIMSE
    (``dimse`` "AET@HOST:PORT") until Ctrl-C / SIGTERM (or ``stop`` is set). Both listen
    at once: while the first scan runs they answer from what is indexed so far (searches
    say so in a Warning header).
    ``auth``: an :class:`~dicube.server.app.Auth` (default: from the environment);
    ``cors_origins``: browser origins allowed (see :func:`~dicube.server.app.create_app`);
    ``log_requests``: one log line per HTTP request (uvicorn's access log)."""
    from .app import BASE, Auth, create_app
    from .index import ArchiveIndex

    if not readonly:
        raise ValueError("dicube serve is read-only: writing (STOW-RS, C-STORE) is not supported")
    if http is None and dimse is None:
        raise ValueError("nothing to serve: give an HTTP and/or a DIMSE address")
    http_addr = parse_hostport(http) if http else None
    dimse_addr = parse_dimse(dimse) if dimse else None
    if auth is None:
        auth = Auth.from_env()
    started = time.perf_counter()
    print_fn(f"Indexing {os.fspath(root)} (file heads only); answering from what is indexed "
             "so far ...")
    index = ArchiveIndex(root, wait=False)
    index.start_watching(watch_interval)
    servers: list = []
    stop = stop or threading.Event()

    def report() -> None:
        while not index.wait_ready(0.2):
            if stop.is_set():
                return
        if stop.is_set():
            return
        n = index.counts()
        print_fn(f"Indexed {os.fspath(root)} in {time.perf_counter() - started:.2f} s: "
                 f"{_plural(n['studies'], 'study', 'studies')}, "
                 f"{_plural(n['series'], 'series', 'series')}, {_plural(n['instances'], 'instance')}"
                 + (f"; {_plural(n['errors'], 'file')} cannot be read (see the log)"
                    if n["errors"] else ""))

    reporter = threading.Thread(target=report, name="dicube-index-report", daemon=True)
    try:
        if http_addr:
            web = HttpServer(create_app(index, auth=auth, refresh_interval=None,
                                        cors_origins=cors_origins), *http_addr,
                             access_log=log_requests,
                             log_level="info" if log_requests else "warning").start()
            servers.append(web)
            print_fn(f"DICOMweb: {web.url}{BASE}  (QIDO-RS, WADO-RS; read-only"
                     + (", authentication required" if auth else "") + ")")
        if dimse_addr:
            try:
                from .dimse import start_dimse
            except ImportError as exc:
                raise DicomCubeError(f"DIMSE is not available: {exc}") from exc
            ae, host, port = dimse_addr
            d = start_dimse(index, ae_title=ae, host=host, port=port, destinations=destinations)
            servers.append(d)
            print_fn(f"DIMSE: {ae}@{host}:{getattr(d, 'port', port)}  (C-ECHO, C-FIND, C-GET, C-MOVE)")
        print_fn("Press Ctrl-C to stop.")
        reporter.start()
        _wait(stop)
    finally:
        stop.set()
        if reporter.is_alive():
            reporter.join()
        for s in reversed(servers):
            try:
                s.shutdown()
            except Exception:
                log.exception("shutting down %r", s)
        index.close()
        print_fn("Stopped.")


def _wait(stop: threading.Event) -> None:
    """Block until ``stop`` is set, Ctrl-C or SIGTERM (on the main thread)."""
    if threading.current_thread() is threading.main_thread():
        previous = signal.getsignal(signal.SIGTERM)
        signal.signal(signal.SIGTERM, lambda *a: stop.set())
        try:
            while not stop.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
        finally:
            signal.signal(signal.SIGTERM, previous)
    else:
        stop.wait()


def _plural(n: int, word: str, plural: Optional[str] = None) -> str:
    return f"{n} {word if n == 1 else (plural or word + 's')}"
