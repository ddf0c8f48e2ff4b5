"""CT window presets: the one table used by previews (``dicube.preview``, ``dicube mosaic
-c``) and training datasets (``dicube.data``). Pure data and a lookup; imports nothing.

Values are (window width, window level/centre) in Hounsfield units, the typical values
listed by Radiopaedia, "Windowing (CT)" (Bell, Murphy et al.,
https://radiopaedia.org/articles/windowing-ct):

=============  ==============  =====================================================
name           (W, L)          Radiopaedia
=============  ==============  =====================================================
brain          (80, 40)        head and neck: brain W:80 L:40
subdural       (200, 80)       head and neck: subdural W:130-300 L:50-100
stroke         (40, 40)        head and neck: stroke W:8 L:32 or W:40 L:40
soft-tissue    (400, 40)       head and neck: soft tissues W:350-400 L:20-60
lung           (1500, -600)    chest: lungs W:1500 L:-600
mediastinum    (350, 50)       chest: mediastinum W:350 L:50
abdomen        (400, 50)       abdomen: soft tissues W:400 L:50
liver          (150, 30)       abdomen: liver W:150 L:30
bone           (1800, 400)     spine: bone W:1800 L:400
=============  ==============  =====================================================

Where Radiopaedia gives a range, the value is one inside it. Names are matched without
regard to case, and ``_`` or a space count as ``-`` (``soft_tissue`` = ``soft-tissue``);
:data:`ALIASES` adds short and plural forms.
"""
from __future__ import annotations

from typing import Optional, Tuple

__all__ = ["PRESETS", "ALIASES", "SOURCE", "canonical_name", "lookup", "names"]

SOURCE = "Radiopaedia, Windowing (CT), https://radiopaedia.org/articles/windowing-ct"

#: canonical name -> (window width, window level), in HU.
PRESETS = {
    "brain": (80.0, 40.0),
    "subdural": (200.0, 80.0),
    "stroke": (40.0, 40.0),
    "soft-tissue": (400.0, 40.0),
    "lung": (1500.0, -600.0),
    "mediastinum": (350.0, 50.0),
    "abdomen": (400.0, 50.0),
    "liver": (150.0, 30.0),
    "bone": (1800.0, 400.0),
}
#: other accepted names -> canonical name (after case and ``_``/space folding).
ALIASES = {
    "soft": "soft-tissue",
    "soft-tissues": "soft-tissue",
    "lungs": "lung",
    "media": "mediastinum",
    "mediastinal": "mediastinum",
    "abdominal": "abdomen",
    "bones": "bone",
}


def canonical_name(name: str) -> Optional[str]:
    """The canonical preset name for ``name`` (any case, ``_``/space for ``-``, or an
    alias), or None when it names no preset."""
    if not isinstance(name, str):
        return None
    key = "-".join(name.strip().lower().replace("_", " ").replace("-", " ").split())
    key = ALIASES.get(key, key)
    return key if key in PRESETS else None


def lookup(name: str) -> Optional[Tuple[float, float]]:
    """(width, level) of the preset ``name`` (see :func:`canonical_name`), or None."""
    key = canonical_name(name)
    return None if key is None else PRESETS[key]


def names() -> str:
    """The accepted names for messages and help: canonical names, then aliases."""
    return ", ".join(PRESETS) + " (also " + ", ".join(ALIASES) + ")"
