"""How the frames of a .dcbs file group into the DICOM instances it was made from.

A file holds one metadata slice per source instance and ``frame_count`` frames: one frame
per instance (a CT series), or N frames of each instance (a multi-frame RT Dose, Enhanced
MR, US cine: usually one instance). Every instance holds the same number of frames, and
its Number of Frames (0028,0008) must say so; anything else is refused, naming the file.
"""
from __future__ import annotations

from ..exceptions import MetaDataError

NUMBER_OF_FRAMES = "00280008"


def frames_per_instance(meta, frame_count: int, path) -> int:
    """Frames of each instance of a file with ``frame_count`` frames and metadata ``meta``;
    MetaDataError (naming ``path``) when the metadata and the frames disagree."""
    m = len(meta) if meta is not None else 0
    if m == 0:
        raise MetaDataError("the file has no DICOM metadata to build instances from", path)
    if frame_count % m:
        raise MetaDataError(f"{m} source file(s) for {frame_count} frames: the frames do not "
                            "split evenly over the instances", path)
    per = frame_count // m
    if per == 1 and NUMBER_OF_FRAMES not in meta:  # (a lazy DicomMeta stays unparsed)
        return per  # single-frame instances without the attribute: nothing to check
    for i in (0,) if meta.is_shared(NUMBER_OF_FRAMES) else range(m):
        declared = _declared(meta.get_element(NUMBER_OF_FRAMES, i), i, path)
        if declared is None and per == 1:
            continue
        if declared != per:
            said = "no Number of Frames" if declared is None else f"Number of Frames {declared}"
            raise MetaDataError(f"instance {i} has {said} but the file holds {per} frame(s) "
                                f"for it ({frame_count} frames, {m} instance(s))", path)
    return per


def _declared(elem, i: int, path):
    """Number of Frames of one instance (an IS value), None when absent or empty."""
    if not elem or not elem.get("Value"):
        return None
    values = elem["Value"]
    if len(values) != 1:
        raise MetaDataError(f"instance {i}: Number of Frames has {len(values)} values", path)
    try:
        n = int(str(values[0]).strip())
    except ValueError:
        raise MetaDataError(f"instance {i}: Number of Frames {values[0]!r} is not a number",
                            path) from None
    if n < 1:
        raise MetaDataError(f"instance {i}: Number of Frames {n} is not positive", path)
    return n
