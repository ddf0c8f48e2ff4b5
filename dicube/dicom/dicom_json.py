"""Exact conversion between DICOM data elements and DICOM JSON (PS3.18 F.2).

The JSON form used by dicube follows PS3.18 F.2 with choices that make it lossless:

* Every element is ``{"vr": VR}`` plus ``"Value"`` (a list) or ``"InlineBinary"``
  (base64). No ``"Value"`` means a zero-length (empty) value.
* DS and IS values are JSON *strings* holding the text exactly as written in the file
  (``"1.50"`` stays ``"1.50"``, leading spaces are kept); only the one padding
  character that makes the length even is dropped. Other string VRs are handled the same
  way; multi-valued strings are split on backslash, empty components are ``""``.
* PN components are objects with ``Alphabetic``/``Ideographic``/``Phonetic`` keys; every
  component group present in the text is present as a key, so ``"A^B="`` round-trips.
* Binary VRs (OB, OD, OF, OL, OV, OW, UN) are ``InlineBinary`` of the exact bytes, of any
  size. Any value that cannot be represented exactly otherwise (odd length, undecodable
  text, non-finite floats) falls back to ``InlineBinary`` of its raw bytes.
* AT values are ``"GGGGEEEE"`` strings.

:func:`json_to_dataset` rebuilds a :class:`pydicom.Dataset` whose elements are raw
(undecoded) elements re-encoded from the JSON; pydicom converts them exactly as it
converts elements read from a file, so values and VRs match the source file.
"""
from __future__ import annotations

import base64
import math
import struct
from typing import Any, Optional

from pydicom.charset import convert_encodings, decode_bytes, encode_string
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag

__all__ = [
    "PIXEL_TAGS",
    "element_from_raw",
    "element_from_value",
    "dataset_to_json",
    "json_to_dataset",
    "encode_element",
    "encodings_for",
    "json_value_to_python",
]

#: Tags of the pixel data elements, which are not part of the metadata.
PIXEL_TAGS = frozenset({0x7FE00008, 0x7FE00009, 0x7FE00010})

NUMBER_FORMATS = {
    "US": "H", "SS": "h", "UL": "I", "SL": "i", "FL": "f", "FD": "d", "SV": "q", "UV": "Q",
}
NUMBER_SIZES = {vr: struct.calcsize("<" + f) for vr, f in NUMBER_FORMATS.items()}
BINARY_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "UN"})
#: VRs decoded with the Specific Character Set; the others use the default repertoire.
CHARSET_VRS = frozenset({"SH", "LO", "ST", "LT", "UC", "UT", "PN"})
SINGLE_VALUED = frozenset({"ST", "LT", "UT", "UR"})
STRING_VRS = frozenset(
    {"AE", "AS", "CS", "DA", "DS", "DT", "IS", "TM", "UI", "UR", "SH", "LO", "ST", "LT", "UC",
     "UT", "PN"}
)
PN_KEYS = ("Alphabetic", "Ideographic", "Phonetic")
DEFAULT_CODEC = "latin_1"
_TEXT_DELIMS = {0x5C, 0x3D, 0x5E}  # backslash, '=', '^' (PN delimiters reset ISO 2022)


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _binary(vr: str, raw: bytes) -> dict:
    return {"vr": vr, "InlineBinary": _b64(raw)} if raw else {"vr": vr}


def encodings_for(charset_value: Any, parent: list[str]) -> list[str]:
    """Python encodings for a (0008,0005) value (str, list or ``None``)."""
    if charset_value is None:
        return parent
    return convert_encodings(charset_value)


def single_codec(encodings: list[str]) -> Optional[str]:
    """The one Python codec to use for ``encodings``, or ``None`` when ISO 2022 switching
    (several encodings) requires pydicom's escape-sequence handling."""
    if len(encodings) == 1 and not encodings[0].startswith("iso2022"):
        return encodings[0]
    return None


def _pn_component(text: str) -> dict:
    if not text:
        return {}
    groups = text.split("=")
    if len(groups) > 3:
        raise ValueError("too many PN component groups")
    return dict(zip(PN_KEYS, groups))


def _pn_text(obj: Any) -> str:
    if obj is None:
        return ""
    if isinstance(obj, str):
        return obj
    groups = [obj.get(k) for k in PN_KEYS]
    while groups and groups[-1] is None:
        groups.pop()
    return "=".join(g or "" for g in groups)


def _split_text(vr: str, text: str) -> list:
    if vr in SINGLE_VALUED:
        return [text]
    parts = text.split("\\")
    if vr == "PN":
        return [_pn_component(p) for p in parts]
    return parts


def element_from_raw(vr: str, raw: bytes, codec: Optional[str], encodings: list[str]) -> dict:
    """DICOM JSON for one non-sequence element given its VR and raw little-endian bytes.

    ``codec`` is the single Python codec of the dataset's character set (or ``None`` to
    use pydicom's ISO 2022 decoder with ``encodings``).
    """
    n = len(raw)
    if n == 0:
        return {"vr": vr}
    fmt = NUMBER_FORMATS.get(vr)
    if fmt is not None:
        size = NUMBER_SIZES[vr]
        if n % size:
            return _binary(vr, raw)
        values = list(struct.unpack(f"<{n // size}{fmt}", raw))
        if fmt in "fd" and not all(map(math.isfinite, values)):
            return _binary(vr, raw)
        return {"vr": vr, "Value": values}
    if vr in BINARY_VRS or n % 2:
        return _binary(vr, raw)
    if vr == "AT":
        if n % 4:
            return _binary(vr, raw)
        v = struct.unpack(f"<{n // 2}H", raw)
        return {"vr": vr, "Value": [f"{v[i]:04X}{v[i + 1]:04X}" for i in range(0, len(v), 2)]}
    if vr not in STRING_VRS:
        return _binary(vr, raw)
    try:
        if vr in CHARSET_VRS:
            if codec is not None:
                text = raw.decode(codec)
            else:
                text = decode_bytes(raw, encodings, _TEXT_DELIMS)
                if encode_string(text, encodings) != raw:
                    return _binary(vr, raw)
        else:
            text = raw.decode(DEFAULT_CODEC)
        pad = "\x00" if vr == "UI" else " "
        if text[-1] == pad:
            text = text[:-1]
        return {"vr": vr, "Value": _split_text(vr, text)}
    except (UnicodeError, ValueError, LookupError):
        return _binary(vr, raw)


def _str_of(value: Any) -> str:
    return "" if value is None else str(value)


def element_from_value(elem: DataElement, encodings: list[str]) -> dict:
    """DICOM JSON for a pydicom :class:`DataElement` whose value is already converted.

    Used for files pydicom has to parse itself (implicit VR, big endian, deflated).
    """
    vr = str(elem.VR)
    value = elem.value
    if vr == "SQ":
        item_list = []
        for item in value or []:
            item_list.append(dataset_to_json(item, encodings))
        return {"vr": vr, "Value": item_list}
    if value is None or (isinstance(value, (str, bytes, list, tuple)) and len(value) == 0):
        return {"vr": vr}
    if vr == "PN" and not isinstance(value, (list, tuple)) and str(value) == "":
        return {"vr": vr}
    if isinstance(value, (bytes, bytearray)):
        return _binary(vr, bytes(value))
    values = list(value) if isinstance(value, (list, tuple)) or hasattr(value, "append") else [value]
    if vr in NUMBER_FORMATS:
        values = [float(v) if vr in ("FL", "FD") else int(v) for v in values]
        if vr in ("FL", "FD") and not all(map(math.isfinite, values)):
            fmt = NUMBER_FORMATS[vr]
            return _binary(vr, struct.pack(f"<{len(values)}{fmt}", *values))
        return {"vr": vr, "Value": values}
    if vr == "AT":
        return {"vr": vr, "Value": [f"{int(v):08X}" for v in values]}
    if vr == "PN":
        return {"vr": vr, "Value": [_pn_component(_str_of(v)) for v in values]}
    if vr in SINGLE_VALUED:
        return {"vr": vr, "Value": ["\\".join(_str_of(v) for v in values)]}
    return {"vr": vr, "Value": [_str_of(v) for v in values]}


def dataset_to_json(ds: Dataset, parent_encodings: Optional[list[str]] = None,
                    skip_pixels: bool = True) -> dict:
    """DICOM JSON of every element of ``ds`` (pixel data elements skipped by default)."""
    encodings = parent_encodings or ["iso8859"]
    if 0x00080005 in ds:
        encodings = encodings_for(ds[0x00080005].value, encodings)
    out = {}
    for tag in ds.keys():
        if skip_pixels and tag in PIXEL_TAGS:
            continue
        try:
            elem = ds[tag]  # converts raw elements with pydicom's own rules
        except Exception:  # noqa: BLE001 - e.g. implicit VR data not fitting the dictionary VR
            raw = ds.get_item(tag)
            value = getattr(raw, "value", None)
            if not isinstance(value, (bytes, bytearray)):
                raise
            out[f"{tag:08X}"] = _binary("UN", bytes(value))  # the bytes kept as they are
            continue
        out[f"{tag:08X}"] = element_from_value(elem, encodings)
    return out


def encode_element(vr: str, elem: dict, encodings: list[str]) -> bytes:
    """Raw little-endian bytes (even length) of a non-sequence JSON element."""
    inline = elem.get("InlineBinary")
    if inline is not None:
        return base64.b64decode(inline)
    values = elem.get("Value")
    if not values:
        return b""
    fmt = NUMBER_FORMATS.get(vr)
    if fmt is not None:
        return struct.pack(f"<{len(values)}{fmt}", *values)
    if vr == "AT":
        out = []
        for v in values:
            t = int(v, 16) if isinstance(v, str) else int(v)
            out += [t >> 16, t & 0xFFFF]
        return struct.pack(f"<{len(out)}H", *out)
    if vr == "PN":
        text = "\\".join(_pn_text(v) for v in values)
    else:
        text = "\\".join("" if v is None else str(v) for v in values)
    if vr in CHARSET_VRS:
        codec = single_codec(encodings)
        raw = text.encode(codec) if codec else encode_string(text, encodings)
    else:
        raw = text.encode(DEFAULT_CODEC)
    if len(raw) % 2:
        raw += b"\x00" if vr == "UI" else b" "
    return raw


def json_to_dataset(data: dict, parent_encodings: Optional[list[str]] = None) -> Dataset:
    """A pydicom Dataset rebuilt from DICOM JSON produced by this module.

    Non-sequence elements are raw elements (explicit VR little endian bytes), converted
    by pydicom on access exactly like elements read from a file.
    """
    parent = parent_encodings or ["iso8859"]
    encodings = parent
    cs = data.get("00080005")
    if cs is not None:
        raw = encode_element("CS", cs, parent)
        value = raw.decode(DEFAULT_CODEC).rstrip(" \x00").split("\\")
        encodings = encodings_for(value[0] if len(value) == 1 else value, parent)
    elements = {}
    for key, elem in data.items():
        tag = BaseTag(int(key, 16))
        vr = elem["vr"]
        if vr == "SQ" and "InlineBinary" not in elem:
            items = [json_to_dataset(item, encodings) for item in elem.get("Value", [])]
            elements[tag] = DataElement(tag, "SQ", Sequence(items))
        else:
            raw = encode_element(vr, elem, encodings)
            elements[tag] = RawDataElement(tag, vr, len(raw), raw, 0, False, True)
    return Dataset(elements, parent_encoding=parent)


def json_value_to_python(elem: Optional[dict]) -> Any:
    """A convenient Python value for a JSON element.

    Numbers stay numbers, DS -> float, IS -> int, PN -> str, binary -> bytes,
    sequences -> list of JSON item dicts; one value -> scalar, several -> list.
    Empty -> ``None`` (``""`` for string VRs, ``[]`` for sequences).
    """
    if elem is None:
        return None
    vr = elem["vr"]
    if "InlineBinary" in elem:
        return base64.b64decode(elem["InlineBinary"])
    values = elem.get("Value")
    if values is None:
        return [] if vr == "SQ" else ("" if vr in STRING_VRS else None)
    if vr == "SQ":
        return values
    if vr == "PN":
        values = [_pn_text(v) for v in values]
    elif vr in ("DS", "IS"):
        values = [_number(v, vr) for v in values]
    return values[0] if len(values) == 1 else list(values)


def _number(text: Any, vr: str) -> Any:
    if not isinstance(text, str):
        return text
    s = text.strip()
    if not s:
        return None
    try:
        if vr == "IS":
            f = float(s)
            return int(f) if f.is_integer() else f
        return float(s)
    except ValueError:
        return text
