"""``dicube demo [FOLDER]``: the main job (see :mod:`dicube.demo`)."""
from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("demo", help="round-trip a DICOM series through dicube and compare "
                                    "the exported files with the source files",
                       description="Convert FOLDER (default: a series built from pydicom's "
                                   "bundled CT_small.dcm) to .dcbs, reload it, export it back "
                                   "to DICOM and compare every element and pixel of every "
                                   "file with its source file.")
    p.add_argument("folder", nargs="?",
                   help="DICOM series folder (default: a series built from pydicom's bundled files)")
    p.add_argument("-o", "--output", metavar="DIR",
                   help="keep the files in DIR (series.dcbs, dicom/, and source/ when built); "
                        "by default a temporary folder is used and removed")
    p.add_argument("--series-uid", metavar="UID",
                   help="the series to use when FOLDER holds several")
    p.set_defaults(func=_run)


def _run(args) -> int:
    from ..demo import run_demo
    from ..exceptions import MultipleSeriesError

    try:
        return run_demo(args.folder, args.output, args.series_uid)
    except MultipleSeriesError as exc:  # the library's hint names its keyword argument
        raise MultipleSeriesError(exc.reason.replace("series_uid=", "--series-uid UID"),
                                  exc.path, series=exc.series) from None
