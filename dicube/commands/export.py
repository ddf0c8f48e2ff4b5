"""``dicube export FILE OUT_DIR`` (DICOM folder) or ``dicube export FILE --nifti OUT.nii.gz``."""
from __future__ import annotations

import os
import warnings

from ._output import error_message, human_bytes, pass_on, plural, print_error

CMD = "export"

#: Names accepted by ``--transfer-syntax`` (a UID is accepted too).
SYNTAXES = {
    "source": None,  # the source files' syntax when it can be written losslessly
    "explicit": "1.2.840.10008.1.2.1",
    "implicit": "1.2.840.10008.1.2",
    "big-endian": "1.2.840.10008.1.2.2",
    "deflated": "1.2.840.10008.1.2.1.99",
    "htj2k": "1.2.840.10008.1.2.4.201",
    "htj2k-rpcl": "1.2.840.10008.1.2.4.202",
    "rle": "1.2.840.10008.1.2.5",
    "jpeg-ls": "1.2.840.10008.1.2.4.80",
    "j2k": "1.2.840.10008.1.2.4.90",
}


def register(sub) -> None:
    p = sub.add_parser("export", help="write a .dcbs file back as DICOM files or as NIfTI",
                       description="Write FILE as one DICOM file per source file in OUT_DIR "
                                   "(equal to the source files element for element), and/or "
                                   "as NIfTI with --nifti.")
    p.add_argument("file", metavar="FILE", help=".dcbs file")
    p.add_argument("out_dir", nargs="?", metavar="OUT_DIR", help="DICOM output folder")
    p.add_argument("--nifti", metavar="OUT.nii.gz", help="write a NIfTI file (.nii or .nii.gz)")
    p.add_argument("-t", "--transfer-syntax", default="source", metavar="SYNTAX",
                   help="DICOM transfer syntax: " + ", ".join(SYNTAXES)
                        + " or a UID (default: source, i.e. the source files' syntax when it "
                          "can be written losslessly, else explicit, and the output says so); "
                          "a syntax that cannot be produced is an error")
    p.add_argument("--overwrite", action="store_true",
                   help="replace files a previous export wrote (OUT_DIR), or an existing NIfTI file")
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help="decoding threads (default: all cores)")
    p.set_defaults(func=run, _parser=p)


def _syntax(text: str):
    key = text.strip().lower()
    if key in SYNTAXES:
        return SYNTAXES[key]
    if all(part.isdigit() for part in key.split(".")) and "." in key:
        return key
    raise ValueError(f"unknown transfer syntax {text!r}; use one of {', '.join(SYNTAXES)} or a UID")


def run(args) -> int:
    if args.out_dir is None and args.nifti is None:
        args._parser.error("give OUT_DIR, --nifti OUT.nii.gz, or both")
    try:
        ts = _syntax(args.transfer_syntax)
    except ValueError as exc:
        args._parser.error(str(exc))
    if args.nifti and not args.nifti.lower().endswith((".nii", ".nii.gz")):
        args._parser.error(f"--nifti {args.nifti}: the name must end in .nii or .nii.gz")
    if args.nifti and os.path.lexists(args.nifti) and not args.overwrite:
        print_error(CMD, "already exists (pass --overwrite to replace it)", args.nifti)
        return 1
    from ..exceptions import DicomCubeError

    try:
        _export(args, ts)
    except (DicomCubeError, OSError) as exc:
        # the library's hint names its keyword argument; here it is the option
        print_error(CMD, error_message(exc, args.file).replace("overwrite=True", "--overwrite"))
        return 1
    return 0


def _export(args, ts) -> None:
    from ..core.io import load

    image = load(args.file, num_threads=args.threads)
    if args.out_dir is not None:
        from ..dicom.export import save_to_dicom_folder

        with warnings.catch_warnings(record=True) as caught:  # e.g. stored names not used
            warnings.simplefilter("always")
            paths = save_to_dicom_folder(image, args.out_dir, transfer_syntax=ts,
                                         overwrite=args.overwrite)
        for w in caught:
            text = str(w.message)
            pass_on(text if text.startswith(f"{args.out_dir}:") else
                    f"{args.out_dir}: {text}", CMD)  # once each; not with -q
        size = sum(os.path.getsize(p) for p in paths)
        print(f"{args.out_dir}: {plural(len(paths), 'DICOM file')}, {human_bytes(size)}")
        _print_syntaxes(args.out_dir, paths, ts)
    if args.nifti:
        from ..core.nifti_io import save_to_nifti

        save_to_nifti(image, args.nifti)
        print(f"{args.nifti}: NIfTI {'x'.join(map(str, image.raw_image.shape[::-1]))}, "
              f"{human_bytes(os.path.getsize(args.nifti))}")


def _print_syntaxes(out_dir, paths, requested) -> None:
    """One line per (source syntax, written syntax) pair that differ, for ``-t source``."""
    from ..dicom.export import syntax_name

    if requested is not None:
        return
    for (src, used, why), n in sorted(paths.changed_syntaxes().items(), key=str):
        files = plural(n, "file") if n == len(paths) else f"{n} of {len(paths)} files"
        print(f"{out_dir}: {files} written as {syntax_name(used)}, not in the source's "
              f"{syntax_name(src)}" + (f": {why}" if why else ""))
