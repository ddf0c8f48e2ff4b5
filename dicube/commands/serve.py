"""``dicube serve ARCHIVE_DIR``: serve every .dcbs file under a folder as a PACS would,
over DICOMweb (QIDO-RS, WADO-RS) and optionally DIMSE, read-only, until Ctrl-C.

See docs/serving.md. Authentication: ``DICUBE_SERVE_TOKEN`` (bearer) and/or
``DICUBE_SERVE_USER`` + ``DICUBE_SERVE_PASSWORD`` (HTTP basic) in the environment.
"""
from __future__ import annotations

import argparse
import sys

from ._output import configure_logging

CMD = "serve"


def register(sub) -> None:
    p = sub.add_parser(
        "serve", help="serve a folder of .dcbs files over DICOMweb and DIMSE (read-only)",
        description="Serve every .dcbs file under ARCHIVE_DIR (found recursively, index kept "
                    "up to date) over DICOMweb at http://HOST:PORT/dicom-web and, with --dimse, "
                    "DIMSE (C-ECHO, C-FIND, C-GET, C-MOVE). Read-only. Loopback by default. "
                    "Set DICUBE_SERVE_TOKEN, or DICUBE_SERVE_USER and DICUBE_SERVE_PASSWORD, "
                    "to require a bearer token or HTTP basic credentials.")
    p.add_argument("archive", metavar="ARCHIVE_DIR", help="folder of .dcbs files")
    p.add_argument("--http", default="127.0.0.1:8042", metavar="HOST:PORT",
                   help="DICOMweb address (default 127.0.0.1:8042; 'off' for none)")
    p.add_argument("--dimse", metavar="AET@HOST:PORT",
                   help="also answer DIMSE as AE title AET (e.g. DICUBE@127.0.0.1:11112)")
    p.add_argument("--move-destination", action="append", default=[], metavar="AET=HOST:PORT",
                   help="a C-MOVE destination (repeat for several)")
    p.add_argument("--readonly", action="store_true", default=True,
                   help="read-only (the default, and the only mode: STOW-RS/C-STORE are refused)")
    p.add_argument("--cors", action="append", default=[], metavar="ORIGIN",
                   help="let web pages from ORIGIN (e.g. http://localhost:3000, an OHIF viewer; "
                        "'*' for any) call the server from a browser (repeat for several)")
    p.add_argument("--watch-interval", type=_interval, default=2.0, metavar="S",
                   help="seconds between rescans of the folder (default 2)")
    p.add_argument("-v", "--verbose", action="count", default=0,
                   help="log more (-v: requests and rescans, -vv: debug)")
    p.set_defaults(func=run)


def _interval(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        v = -1.0
    if not 0.05 <= v <= 86400:
        raise argparse.ArgumentTypeError(f"expected seconds between 0.05 and 86400, got {text!r}")
    return v


def run(args) -> int:
    from ..server.app import Auth
    from ..server.run import parse_destination, parse_dimse, parse_hostport, serve

    configure_logging(args.verbose)
    http = None if args.http.lower() in ("off", "none", "") else args.http
    try:  # check every address before indexing anything
        if http:
            parse_hostport(http)
        if args.dimse:
            parse_dimse(args.dimse)
        destinations = dict(parse_destination(d) for d in args.move_destination)
        auth = Auth.from_env()
    except ValueError as exc:
        print(f"dicube serve: error: {exc}", file=sys.stderr)
        return 2
    if not http and not args.dimse:
        print("dicube serve: error: nothing to serve: --http off and no --dimse", file=sys.stderr)
        return 2
    if destinations and not args.dimse:
        print("dicube serve: error: --move-destination needs --dimse", file=sys.stderr)
        return 2
    serve(args.archive, http=http, dimse=args.dimse, destinations=destinations or None,
          auth=auth, watch_interval=args.watch_interval, cors_origins=args.cors,
          log_requests=args.verbose > 0,
          print_fn=lambda text: print(text, flush=True))
    return 0
