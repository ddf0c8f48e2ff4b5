"""PixelDataHeader: how stored pixel values map to real values, plus display hints."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Optional, Union

__all__ = ["PixelDataHeader"]

Number = Union[float, list]


@dataclass
class PixelDataHeader:
    """Pixel description of a volume.

    ``RescaleSlope``/``RescaleIntercept`` are a float when shared by all slices, or a
    list with one value per slice. ``OriginalPixelDtype`` is the dtype of the stored
    DICOM values; ``PixelDtype`` the dtype of ``raw_image`` (equal for DICOM input).
    """

    RescaleSlope: Number = 1.0
    RescaleIntercept: Number = 0.0
    OriginalPixelDtype: str = "uint16"
    PixelDtype: str = "uint16"
    WindowCenter: Optional[float] = None
    WindowWidth: Optional[float] = None
    MinVal: Optional[float] = None
    MaxVal: Optional[float] = None
    Extras: dict = field(default_factory=dict)

    @property
    def per_slice_rescale(self) -> bool:
        return isinstance(self.RescaleSlope, list) or isinstance(self.RescaleIntercept, list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))

    @classmethod
    def from_dict(cls, d: dict) -> "PixelDataHeader":
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        return cls(**known)

    @classmethod
    def from_json(cls, s: str | bytes) -> "PixelDataHeader":
        return cls.from_dict(json.loads(s))
