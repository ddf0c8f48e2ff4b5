"""DicomMeta: every data element of every slice of a series, shared values stored once.

Internally each slice is DICOM JSON (see :mod:`dicube.dicom.dicom_json`), split into
``shared`` (identical on all slices) and ``per_slice`` (one entry per slice, ``None``
where absent). File meta information (group 0002) is kept in the same structure; pixel
data is not. ``index(i)`` rebuilds the complete pydicom Dataset of slice ``i``.

A DicomMeta read by :func:`dicube.load_meta` is lazy, like pydicom's deferred elements: the
document's skeleton, shared elements, filenames and slice_info are parsed and validated at
once, each per-slice element is kept as its JSON text and parsed and validated (the same
checks, the same MetaDataError naming the file and the element) the first time it is used.
"""
from __future__ import annotations

import json
from itertools import chain, islice
from operator import itemgetter
from typing import Any, Iterable, Optional

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset

from ..exceptions import MetaDataError
from ..jsontext import orjson, parse_json
from .dicom_json import json_to_dataset, json_value_to_python
from .dicom_tags import TagLike, tag_key, to_tag
from .merge_utils import merge_slice, split_shared
from .meta_validation import (FORMAT, FORMAT_VERSION, INTERPRETED, check_document, check_model,
                              per_slice_keys_ok)
from .meta_validation import _name as _element_name

__all__ = ["DicomMeta"]


class DicomMeta:
    """Metadata of a series: shared and per-slice DICOM JSON elements.

    Tags may be given as :class:`~dicube.dicom.CommonTags` members, keywords
    (``"PatientName"``), ints, ``(group, element)`` tuples or ``"GGGGEEEE"`` strings.
    """

    def __init__(self, shared: dict, per_slice: dict, num_slices: int,
                 filenames: Optional[list[Optional[str]]] = None,
                 slice_info: Optional[list[dict]] = None):
        self._shared = shared
        self._per_slice = per_slice  # a dict, or a _LazyPerSlice (checked as it is parsed)
        self._n = int(num_slices)
        if type(per_slice) is not _LazyPerSlice:
            for key, values in per_slice.items():
                if len(values) != self._n:
                    raise MetaDataError(f"tag {key}: {len(values)} values for {self._n} slices")
        self.filenames: list[Optional[str]] = list(filenames) if filenames else [None] * self._n
        #: per-slice extras needed to rebuild files (pixel data tag/VR, preamble, ...)
        self.slice_info: list[dict] = list(slice_info) if slice_info else [{} for _ in range(self._n)]

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_json_headers(cls, headers: list[dict], filenames=None, slice_info=None) -> "DicomMeta":
        """Build from one DICOM JSON dict per slice (group 0002 included)."""
        shared, per_slice = split_shared(headers)
        return cls(shared, per_slice, len(headers), filenames, slice_info)

    @classmethod
    def from_datasets(cls, datasets: Iterable[Dataset], filenames=None) -> "DicomMeta":
        """Build from pydicom datasets (their ``file_meta`` included when present)."""
        from .dicom_json import PIXEL_TAGS, dataset_to_json, element_from_value

        headers, info = [], []
        for ds in datasets:
            h = {}
            fm = getattr(ds, "file_meta", None)
            if fm is not None:
                for elem in fm:
                    h[f"{elem.tag:08X}"] = element_from_value(elem, ["iso8859"])
            h.update(dataset_to_json(ds))
            headers.append(h)
            pix = next((t for t in PIXEL_TAGS if t in ds), None)
            info.append({"pixel_tag": f"{pix:08X}", "pixel_vr": str(ds[pix].VR)} if pix else {})
        return cls.from_json_headers(headers, filenames, info)

    # ------------------------------------------------------------------ basic access
    @property
    def num_slices(self) -> int:
        """Number of slices (files) described."""
        return self._n

    def __len__(self) -> int:
        return self._n

    @property
    def shared(self) -> dict:
        """Shared DICOM JSON elements (read-only view by convention)."""
        return self._shared

    @property
    def per_slice(self) -> dict:
        """Per-slice DICOM JSON elements: tag -> list (``None`` = absent on that slice).
        (Of a lazy DicomMeta, every element is parsed and validated here.)"""
        ps = self._per_slice
        if type(ps) is _LazyPerSlice:
            ps = self._per_slice = ps.materialize()
        return ps

    def keys(self) -> list[str]:
        """All tag keys ("GGGGEEEE"), ascending."""
        return sorted(set(self._shared) | set(self._per_slice))

    def __contains__(self, tag: TagLike) -> bool:
        key = tag_key(tag)
        return key in self._shared or key in self._per_slice

    def is_shared(self, tag: TagLike) -> bool:
        """True if the element is present with the same value on every slice."""
        return tag_key(tag) in self._shared

    def get_vr(self, tag: TagLike) -> Optional[str]:
        """VR of the element (first slice having it), or ``None`` if absent."""
        key = tag_key(tag)
        if key in self._shared:
            return self._shared[key]["vr"]
        for e in self._per_slice.get(key, []):
            if e is not None:
                return e["vr"]
        return None

    def presence(self, tag: TagLike) -> list[bool]:
        """Whether each slice has the element (absent differs from empty)."""
        key = tag_key(tag)
        if key in self._shared:
            return [True] * self._n
        values = self._per_slice.get(key)
        return [False] * self._n if values is None else [v is not None for v in values]

    def get_element(self, tag: TagLike, index: int) -> Optional[dict]:
        """The DICOM JSON element of slice ``index`` (``None`` if absent)."""
        key = tag_key(tag)
        if key in self._shared:
            return self._shared[key]
        values = self._per_slice.get(key)
        return None if values is None else values[index]

    def get_shared_value(self, tag: TagLike, default: Any = None) -> Any:
        """The value of a shared element (see :func:`json_value_to_python`); ``default``
        when the element is absent or differs between slices (check :meth:`is_shared`)."""
        elem = self._shared.get(tag_key(tag))
        return default if elem is None else json_value_to_python(elem)

    def get_values(self, tag: TagLike, missing: Any = None) -> list:
        """One value per slice, in slice order; ``missing`` where the element is absent."""
        key = tag_key(tag)
        if key in self._shared:
            v = json_value_to_python(self._shared[key])
            return [v] * self._n
        values = self._per_slice.get(key)
        if values is None:
            return [missing] * self._n
        fast = _numbers(values, missing)
        if fast is not None:
            return fast
        return [missing if e is None else json_value_to_python(e) for e in values]

    def get_array(self, tag: TagLike, dtype=np.float64) -> np.ndarray:
        """Numeric per-slice values as an array: (N,) for one value per slice, (N, k)
        for k values (e.g. (N, 3) ImagePositionPatient). Absent/empty/non-numeric -> NaN."""
        vals = self.get_values(tag)
        kinds = set(map(type, vals))
        if kinds <= _NUMBER_TYPES and kinds:  # one number per slice
            return np.array(vals, dtype=dtype)
        if kinds == {list} and len(set(map(len, vals))) == 1 and \
                set(map(type, chain.from_iterable(vals))) <= _NUMBER_TYPES and len(vals[0]) > 1:
            return np.array(vals, dtype=dtype)  # k numbers on every slice
        width = max((len(v) if isinstance(v, list) else 1 for v in vals if v is not None),
                    default=1)
        out = np.full((self._n, width), np.nan, dtype=dtype)
        for i, v in enumerate(vals):
            seq = v if isinstance(v, list) else [v]
            for j, x in enumerate(seq[:width]):
                if isinstance(x, (int, float)) and not isinstance(x, bool):
                    out[i, j] = x
        return out[:, 0] if width == 1 else out

    # ------------------------------------------------------------------ datasets
    def slice_json(self, index: int) -> dict:
        """Complete DICOM JSON of slice ``index`` (group 0002 included)."""
        if not -self._n <= index < self._n:
            raise IndexError(f"slice {index} out of range ({self._n} slices)")
        return merge_slice(self._shared, self.per_slice, index % self._n)

    def index(self, index: int) -> Dataset:
        """The pydicom Dataset of slice ``index``, equal element for element to the file it
        came from (pixel data aside). ``ds.file_meta`` holds its file meta information,
        ``ds.preamble`` its preamble when one was kept."""
        data = self.slice_json(index)
        meta = {k: v for k, v in data.items() if k.startswith("0002")}
        body = {k: v for k, v in data.items() if not k.startswith("0002")}
        ds = json_to_dataset(body)
        ds.file_meta = FileMetaDataset(json_to_dataset(meta))
        pre = self.slice_info[index].get("preamble")
        if pre:
            import base64
            ds.preamble = base64.b64decode(pre)
        return ds

    def file_meta(self, index: int) -> FileMetaDataset:
        """File meta information (group 0002) of slice ``index``."""
        data = self.slice_json(index)
        return FileMetaDataset(json_to_dataset({k: v for k, v in data.items()
                                                if k.startswith("0002")}))

    def subset(self, indices: Iterable[int]) -> "DicomMeta":
        """A new DicomMeta with the given slices, in the given order."""
        idx = list(indices)
        headers = [self.slice_json(i) for i in idx]
        return DicomMeta.from_json_headers(headers, [self.filenames[i] for i in idx],
                                           [self.slice_info[i] for i in idx])

    # ------------------------------------------------------------------ serialization
    def to_dict(self) -> dict:
        return {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "num_slices": self._n,
            "shared": self._shared,
            "per_slice": self.per_slice,
            "filenames": self.filenames,
            "slice_info": self.slice_info,
        }

    def to_json(self) -> str:
        """Compact JSON string; :meth:`from_json` restores an identical DicomMeta."""
        return json.dumps(self.to_dict(), separators=(",", ":"), ensure_ascii=False,
                          allow_nan=False)

    @classmethod
    def from_dict(cls, d: dict, frame_count: Optional[int] = None) -> "DicomMeta":
        """The DicomMeta of a :meth:`to_dict` document, validated first against the DICOM
        JSON model (see :mod:`dicube.dicom.meta_validation`; ``frame_count`` bounds
        ``num_slices``). Raises MetaDataError naming the offending element."""
        check_document(d, frame_count)
        return cls(d["shared"], d["per_slice"], d["num_slices"], d.get("filenames"),
                   d.get("slice_info"))

    @classmethod
    def from_json_lazy(cls, data: bytes, frame_count: Optional[int] = None,
                       path=None) -> Optional["DicomMeta"]:
        """The DicomMeta of a :meth:`to_json` document with its per-slice elements left as
        JSON text until used (see the module docstring; errors then name ``path``). None
        when the document is not one this reading takes: not JSON, not valid, unusual
        (duplicate keys), or no native scanner; parse it with :meth:`from_json` instead,
        which raises the error."""
        return _lazy_meta(data, frame_count, path)

    @classmethod
    def from_json(cls, s: str | bytes) -> "DicomMeta":
        return cls.from_dict(parse_json(s, "metadata"))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, DicomMeta):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    # ------------------------------------------------------------------ display
    def display(self, max_width: int = 60) -> None:
        """Print :meth:`table` (returns None, so a REPL shows the table once)."""
        print(self.table(max_width))

    def table(self, max_width: int = 60) -> str:
        """A readable table of all top-level elements (shared values once, per-slice
        values summarised), as a string; :meth:`display` prints it."""
        from pydicom.datadict import keyword_for_tag

        per_slice = self.per_slice
        lines = [f"DicomMeta: {self._n} slices, {len(self._shared)} shared, "
                 f"{len(self._per_slice)} per-slice elements",
                 f"{'Tag':<11} {'Keyword':<32} {'VR':<3} {'Kind':<9} Value"]
        for key in self.keys():
            tag = to_tag(key)
            kw = keyword_for_tag(tag) or ("Private" if tag.is_private else "")
            if key in self._shared:
                e = self._shared[key]
                kind, text = "shared", _short(e, max_width)
            else:
                vals = per_slice[key]
                e = next(v for v in vals if v is not None)
                absent = sum(v is None for v in vals)
                distinct = len({json.dumps(v, sort_keys=True) for v in vals if v is not None})
                kind = "per-slice"
                text = f"{distinct} distinct" + (f", absent on {absent}" if absent else "")
                text += f"; first: {_short(e, max_width - len(text) - 9)}"
            lines.append(f"({key[:4]},{key[4:]}) {kw[:32]:<32} {e['vr']:<3} {kind:<9} {text}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (f"DicomMeta(num_slices={self._n}, shared={len(self._shared)}, "
                f"per_slice={len(self._per_slice)})")


_NUMBER_TYPES = frozenset({int, float})


def _numbers(values: list, missing: Any) -> Optional[list]:
    """``json_value_to_python`` of per-slice DS/IS elements of the usual form (``{"vr",
    "Value": [text, ...]}``, text that ``float`` reads) in a few passes over the whole list;
    None for anything else (the caller converts element by element)."""
    present = [e for e in values if e is not None]
    try:
        if not present or set(map(type, present)) != {dict} or set(map(len, present)) != {2}:
            return None
        vrs = set(map(itemgetter("vr"), present))
        lists = list(map(itemgetter("Value"), present))
    except KeyError:
        return None
    if not (vrs == {"DS"} or vrs == {"IS"}) or set(map(type, lists)) != {list}:
        return None
    flat = list(chain.from_iterable(lists))
    if set(map(type, flat)) != {str}:
        return None
    try:
        nums = list(map(float, flat))  # as _number: surrounding whitespace ignored
    except ValueError:  # empty or not a number: the slow path's rules
        return None
    if vrs == {"IS"}:
        nums = [int(f) if f.is_integer() else f for f in nums]
    out, it = [], iter(nums)
    for e, k in zip(values, map(len, (e["Value"] if e is not None else () for e in values))):
        if e is None:
            out.append(missing)
        else:
            out.append(next(it) if k == 1 else list(islice(it, k)))
    return out


def _short(elem: dict, width: int) -> str:
    width = max(width, 10)
    if "InlineBinary" in elem:
        n = len(elem["InlineBinary"]) * 3 // 4
        return f"<{n} bytes>"
    if elem["vr"] == "SQ":
        return f"<{len(elem.get('Value', []))} items>"
    v = json_value_to_python(elem)
    s = repr(v) if not isinstance(v, str) else v
    return s if len(s) <= width else s[:width - 3] + "..."


# ---------------------------------------------------------------------- lazy per-slice elements
class _LazyPerSlice:
    """Per-slice elements of a document kept as JSON text: ``tag -> (start, end)`` in
    ``data``; a tag's value list is parsed and validated (check_model on that tag, the
    checks of the whole-document reading) on first use, then cached. Iteration, ``in``
    and ``len`` need no parsing."""

    __slots__ = ("_data", "_spans", "_values", "_n", "_path")

    def __init__(self, data: bytes, spans: dict, n: int, path):
        self._data, self._spans, self._n, self._path = data, spans, n, path
        self._values: dict = {}

    def __iter__(self):
        return iter(self._spans)

    def __len__(self) -> int:
        return len(self._spans)

    def __contains__(self, key) -> bool:
        return key in self._spans

    def __getitem__(self, key: str) -> list:
        values = self._values.get(key)
        return values if values is not None else self._parse({key: self._spans[key]})[key]

    def get(self, key: str, default=None):
        values = self._values.get(key)
        if values is not None:
            return values
        span = self._spans.get(key)
        return default if span is None else self._parse({key: span})[key]

    def materialize(self) -> dict:
        """Every element parsed and validated: a plain dict in document order."""
        self._parse({k: v for k, v in self._spans.items() if k not in self._values})
        return {k: self._values[k] for k in self._spans}

    def _parse(self, spans: dict) -> dict:
        data, path = self._data, self._path
        try:
            parsed = {key: parse_json(data[a:b], f"metadata element {_element_name(key)}", path)
                      for key, (a, b) in spans.items()}
            check_model({}, parsed, self._n)
        except MetaDataError as exc:
            raise MetaDataError(exc.reason, path) from None
        except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
            raise MetaDataError(f"invalid metadata: {exc!r}", path) from None
        self._values.update(parsed)
        return parsed

    def __getstate__(self):
        return {k: getattr(self, k) for k in self.__slots__}

    def __setstate__(self, state):
        for k, v in state.items():
            setattr(self, k, v)


def _members(data: bytes, spans: list) -> Optional[tuple]:
    """(keys, [(value_start, value_end)]) of json_object_spans output; None when a key
    is not a JSON string."""
    try:
        keys = orjson.loads(b"[" + b",".join(data[spans[i]:spans[i + 1]]
                                             for i in range(1, len(spans), 4)) + b"]")
    except orjson.JSONDecodeError:
        return None
    return keys, list(zip(spans[3::4], spans[4::4]))


def _lazy_meta(data: bytes, frame_count: Optional[int], path) -> Optional[DicomMeta]:
    """DicomMeta.from_json_lazy.

    How the per-slice spans are found, and why they can be trusted: a native scan
    (cpp/json_spans.cpp) delimits the root object's members, then those of "per_slice",
    tracking strings and brackets exactly as a JSON parser does, in one pass without
    building anything. (A regular expression cannot do that in one C-speed pass, and a
    value split in the wrong place may still parse, as another value: proving each span
    by parsing it alone is not enough.) For valid JSON the spans are exactly the parser's
    members; the rest of the document is parsed with "per_slice" replaced by {} and
    validated; each span is parsed when used, so a fault inside it is reported then,
    naming the element. Anything the scan does not delimit, or that fails a check here,
    returns None and the caller parses the whole document (and reports as before).
    """
    from .. import _native

    if orjson is None or not hasattr(_native, "json_object_spans"):
        return None
    data = bytes(data)
    found = _native.json_object_spans(data, 0, b'"per_slice"')
    if found is None or found[1] is None or data[found[0][0]:].strip(b" \t\n\r"):
        return None
    root, inner = found
    keys, values = _members(data, root) or ([], [])
    if keys.count("per_slice") != 1 or len(set(keys)) != len(keys):
        return None
    vs, ve = values[keys.index("per_slice")]
    tags, spans = _members(data, inner) or (None, None)
    if tags is None or inner[0] != ve or len(set(tags)) != len(tags) \
            or any(data[a] != 0x5B for a, _ in spans):  # lists only
        return None
    try:
        doc = orjson.loads(data[:vs] + b"{}" + data[ve:])
        check_document(doc, frame_count)
    except (MetaDataError, ValueError, KeyError, TypeError, AttributeError, RecursionError):
        return None  # the whole reading says what is wrong, as it always did
    shared, n = doc["shared"], doc["num_slices"]
    if not per_slice_keys_ok(shared, tags):
        return None
    lazy = _LazyPerSlice(data, dict(zip(tags, spans)), n, path)
    interpreted = {k: lazy._spans[k] for k in INTERPRETED if k in lazy}
    if interpreted:  # numbers dicube uses (bits, rescale): checked now, as before
        try:
            lazy._parse(interpreted)
        except MetaDataError:
            return None
    return DicomMeta(shared, lazy, n, doc.get("filenames"), doc.get("slice_info"))
