"""Series quality control: what is wrong with a series, and on which slices.

``check_series(meta)`` returns a :class:`QCReport` listing every problem found (status,
message, slice indices in the meta's slice order, files concerned); ``get_dicom_status(meta)``
returns the most severe status only. Reports are JSON-serialisable (``to_dict``/``to_json``).

Besides the metadata, a report covers how the series was read (``meta.read_report``, set
by :func:`dicube.dicom.dicom_io.read_dicom_series`): files that could not be read and were
skipped (UNREADABLE_FILES) and identical copies of an instance read once (DUPLICATE_FILES).
"""
from __future__ import annotations

import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

import numpy as np

from . import geometry
from .dicom_meta import DicomMeta

__all__ = ["DicomStatus", "QCIssue", "QCReport", "check_series", "get_dicom_status",
           "IDENTITY_STATUSES"]


class DicomStatus(str, Enum):
    """Series status, declared from most to least severe."""

    UNREADABLE_FILES = "UNREADABLE_FILES"        # files that may hold slices were skipped
    MISSING_SERIES_UID = "MISSING_SERIES_UID"
    NON_UNIFORM_SERIES_UID = "NON_UNIFORM_SERIES_UID"
    NON_UNIFORM_PATIENT = "NON_UNIFORM_PATIENT"  # PatientID/Name/BirthDate/Sex differ
    NON_UNIFORM_STUDY_UID = "NON_UNIFORM_STUDY_UID"
    MISSING_SHAPE = "MISSING_SHAPE"
    NON_UNIFORM_SHAPE = "NON_UNIFORM_SHAPE"
    MISSING_DTYPE = "MISSING_DTYPE"
    NON_UNIFORM_DTYPE = "NON_UNIFORM_DTYPE"
    MISSING_ORIENTATION = "MISSING_ORIENTATION"
    NON_UNIFORM_ORIENTATION = "NON_UNIFORM_ORIENTATION"
    MISSING_LOCATION = "MISSING_LOCATION"
    DUPLICATE_LOCATION = "DUPLICATE_LOCATION"
    GAP_LOCATION = "GAP_LOCATION"
    NON_UNIFORM_LOCATION = "NON_UNIFORM_LOCATION"
    MISSING_SPACING = "MISSING_SPACING"
    NON_UNIFORM_SPACING = "NON_UNIFORM_SPACING"
    MISSING_INSTANCE_NUMBER = "MISSING_INSTANCE_NUMBER"
    DUPLICATE_INSTANCE_NUMBERS = "DUPLICATE_INSTANCE_NUMBERS"
    GAP_INSTANCE_NUMBER = "GAP_INSTANCE_NUMBER"
    GANTRY_TILT = "GANTRY_TILT"
    NON_UNIFORM_RESCALE_FACTOR = "NON_UNIFORM_RESCALE_FACTOR"
    UNSORTED_LOCATION = "UNSORTED_LOCATION"
    DUPLICATE_FILES = "DUPLICATE_FILES"          # identical copies of an instance read once
    CONSISTENT = "CONSISTENT"

    @property
    def severity(self) -> int:
        """0 = most severe."""
        return _ORDER[self]

    def __str__(self) -> str:
        return self.value


_ORDER = {s: i for i, s in enumerate(DicomStatus)}


#: statuses that say the series mixes patients or studies: ``dicube convert`` refuses them
IDENTITY_STATUSES = frozenset({DicomStatus.NON_UNIFORM_PATIENT, DicomStatus.NON_UNIFORM_STUDY_UID})


@dataclass
class QCIssue:
    status: DicomStatus
    message: str
    slices: list[int] = field(default_factory=list)
    #: files concerned (not slices of the series): ``[path, reason]`` pairs
    files: list[list[str]] = field(default_factory=list)

    def to_dict(self) -> dict:
        d = {"status": self.status.value, "message": self.message, "slices": self.slices}
        if self.files:
            d["files"] = self.files
        return d


@dataclass
class QCReport:
    """Every problem found in a series, most severe first."""

    num_slices: int
    issues: list[QCIssue] = field(default_factory=list)

    @property
    def status(self) -> DicomStatus:
        return self.issues[0].status if self.issues else DicomStatus.CONSISTENT

    @property
    def ok(self) -> bool:
        return not self.issues

    @property
    def statuses(self) -> list[DicomStatus]:
        return [i.status for i in self.issues]

    def has(self, status: DicomStatus) -> bool:
        return any(i.status == status for i in self.issues)

    def get(self, status: DicomStatus) -> list[QCIssue]:
        return [i for i in self.issues if i.status == status]

    def to_dict(self) -> dict:
        return {"status": self.status.value, "num_slices": self.num_slices,
                "issues": [i.to_dict() for i in self.issues]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    @classmethod
    def from_dict(cls, d: dict) -> "QCReport":
        return cls(d["num_slices"], [QCIssue(DicomStatus(i["status"]), i["message"],
                                             list(i["slices"]),
                                             [list(f) for f in i.get("files", [])])
                                     for i in d["issues"]])

    def __str__(self) -> str:
        lines = [f"{self.status.value} ({self.num_slices} slices)"]
        for i in self.issues:
            sl = f" slices {_fmt(i.slices)}" if i.slices else ""
            lines.append(f"  {i.status.value}: {i.message}{sl}")
        return "\n".join(lines)


def _files_text(pairs: list, limit: int = 10) -> str:
    text = "; ".join(f"{a} ({b})" for a, b in pairs[:limit])
    return text + (f"; ... ({len(pairs)} in all)" if len(pairs) > limit else "")


#: identity elements that must be equal on every slice of a series
PATIENT_TAGS = (("00100020", "PatientID"), ("00100010", "PatientName"),
                ("00100030", "PatientBirthDate"), ("00100040", "PatientSex"))
STUDY_TAGS = (("0020000D", "StudyInstanceUID"),)


def _identity(meta: DicomMeta, add) -> None:
    """Slices of one series that name different patients or studies."""
    for tags, status in ((PATIENT_TAGS, DicomStatus.NON_UNIFORM_PATIENT),
                         (STUDY_TAGS, DicomStatus.NON_UNIFORM_STUDY_UID)):
        parts, odd = [], set()
        for tag, name in tags:
            if meta.is_shared(tag) or tag not in meta:
                continue
            vals = [None if v in (None, "", []) else v for v in meta.get_values(tag)]
            if len({_key(v) for v in vals}) < 2:
                continue
            count = Counter(_key(v) for v in vals)
            parts.append(f"{name} differs: " + ", ".join(
                f"{json.loads(k)!r} on {c} slices" for k, c in count.most_common(5)))
            odd.update(_odd_ones(vals))
        if parts:
            add(status, "; ".join(parts), odd)


def _read_findings(meta: DicomMeta, add) -> None:
    report = getattr(meta, "read_report", None) or {}
    skipped = [list(x) for x in report.get("unreadable", [])]
    if skipped:
        many = len(skipped) != 1
        add(DicomStatus.UNREADABLE_FILES,
            f"{len(skipped)} file{'s' * many} that may hold slices could not be read and "
            f"{'were' if many else 'was'} skipped: {_files_text(skipped)}", files=skipped)
    dups = [list(x) for x in report.get("duplicates", [])]
    if dups:
        add(DicomStatus.DUPLICATE_FILES,
            f"{len(dups)} identical cop{'ies' if len(dups) != 1 else 'y'} of instances read once: "
            + _files_text([[a, f"copy of {b}"] for a, b in dups]),
            files=[[a, f"identical copy of {b}"] for a, b in dups])


def _fmt(slices: list[int], limit: int = 12) -> str:
    s = ", ".join(map(str, slices[:limit]))
    return s + (f", ... ({len(slices)} total)" if len(slices) > limit else "")


def _key(v: Any) -> Any:
    return json.dumps(v, sort_keys=True, default=repr)  # bytes: a damaged VR (OB, UN)


def _odd_ones(values: list) -> list[int]:
    """Indices whose value differs from the most common one."""
    common = Counter(_key(v) for v in values).most_common(1)[0][0]
    return [i for i, v in enumerate(values) if _key(v) != common]


def _missing_or_empty(meta: DicomMeta, tag: str) -> list[int]:
    return [i for i, v in enumerate(meta.get_values(tag)) if v is None or v == "" or v == []]


def check_series(meta: DicomMeta, *, gap_factor: float = 1.5,
                 tilt_degrees: float = 0.1) -> QCReport:
    """Run every check on a series and report all problems found."""
    n = len(meta)
    issues: list[QCIssue] = []

    def add(st, msg, sl=(), files=()):
        issues.append(QCIssue(st, msg, sorted(int(i) for i in sl), [list(f) for f in files]))

    _read_findings(meta, add)
    # identity
    _identity(meta, add)
    miss = _missing_or_empty(meta, "0020000E")
    if miss:
        add(DicomStatus.MISSING_SERIES_UID, "SeriesInstanceUID missing", miss)
    uids = meta.get_values("0020000E")
    present = {u for u in uids if u not in (None, "")}
    if len(present) > 1:
        groups = defaultdict(list)
        for i, u in enumerate(uids):
            groups[u].append(i)
        desc = "; ".join(f"{u}: {len(s)} slices" for u, s in groups.items() if u)
        add(DicomStatus.NON_UNIFORM_SERIES_UID, f"{len(present)} series mixed ({desc})",
            _odd_ones(uids))

    # shape and dtype
    for tags, missing_st, uneven_st, what in (
        (("00280010", "00280011"), DicomStatus.MISSING_SHAPE, DicomStatus.NON_UNIFORM_SHAPE,
         "Rows/Columns"),
        (("00280100", "00280101", "00280103", "00280002"), DicomStatus.MISSING_DTYPE,
         DicomStatus.NON_UNIFORM_DTYPE, "BitsAllocated/BitsStored/PixelRepresentation/"
         "SamplesPerPixel"),
    ):
        miss = sorted({i for t in tags[:3] for i in _missing_or_empty(meta, t)})
        if miss:
            add(missing_st, f"{what} missing", miss)
        combos = list(zip(*(meta.get_values(t) for t in tags)))
        if n and len({_key(c) for c in combos}) > 1:
            seen = Counter(_key(c) for c in combos)
            add(uneven_st, f"{what} differ between slices: {len(seen)} variants", _odd_ones(combos))

    # orientation
    iops = [geometry.floats(meta.get_element("00200037", i), 6) for i in range(n)]
    miss = [i for i, o in enumerate(iops) if o is None]
    if miss:
        add(DicomStatus.MISSING_ORIENTATION, "ImageOrientationPatient missing or invalid", miss)
    valid = [o for o in iops if o is not None]
    ref = None
    if valid:
        rounded = [tuple(np.round(o, 4)) if o is not None else None for o in iops]
        common = Counter(r for r in rounded if r is not None).most_common(1)[0][0]
        ref = next(o for o, r in zip(iops, rounded) if r == common)
        odd = [i for i, o in enumerate(iops) if o is not None and np.max(np.abs(o - ref)) > 1e-4]
        if odd:
            add(DicomStatus.NON_UNIFORM_ORIENTATION, "ImageOrientationPatient differs", odd)

    # location, gaps, tilt
    pos = meta.get_array("00200032")
    if pos.ndim == 1:
        pos = pos.reshape(n, -1) if n else pos.reshape(0, 3)
    miss = [i for i in range(n) if pos.shape[1] != 3 or not np.all(np.isfinite(pos[i]))]
    if miss:
        add(DicomStatus.MISSING_LOCATION, "ImagePositionPatient missing or invalid", miss)
    if ref is not None and n > 1 and pos.shape[1] == 3:
        ok = [i for i in range(n) if i not in set(miss)]
        _check_locations(add, pos, ok, ref, gap_factor, tilt_degrees)
    tilt = [v for v in meta.get_values("00181120") if isinstance(v, (int, float))]
    if any(abs(v) > 1e-6 for v in tilt) and not any(
            i.status == DicomStatus.GANTRY_TILT for i in issues):
        add(DicomStatus.GANTRY_TILT, f"GantryDetectorTilt is {max(tilt, key=abs)} degrees")

    # pixel spacing
    miss = _missing_or_empty(meta, "00280030")
    if miss:
        add(DicomStatus.MISSING_SPACING, "PixelSpacing missing", miss)
    if not meta.is_shared("00280030") and len(miss) < n:
        sp = [v for v in meta.get_values("00280030")]
        odd = [i for i in _odd_ones(sp) if i not in miss]
        if odd:
            add(DicomStatus.NON_UNIFORM_SPACING, "PixelSpacing differs between slices", odd)

    # instance numbers
    inst = meta.get_values("00200013")
    miss = [i for i, v in enumerate(inst) if not isinstance(v, (int, float))]
    if miss:
        add(DicomStatus.MISSING_INSTANCE_NUMBER, "InstanceNumber missing", miss)
    nums = defaultdict(list)
    for i, v in enumerate(inst):
        if isinstance(v, (int, float)):
            nums[v].append(i)
    dup = {v: s for v, s in nums.items() if len(s) > 1}
    if dup:
        desc = ", ".join(f"{v} x{len(s)}" for v, s in sorted(dup.items())[:10])
        add(DicomStatus.DUPLICATE_INSTANCE_NUMBERS, f"duplicate InstanceNumbers: {desc}",
            [i for s in dup.values() for i in s])
    uniq = sorted(nums)
    if len(uniq) > 1 and all(float(v).is_integer() for v in uniq):
        holes = [(a, b) for a, b in zip(uniq, uniq[1:]) if b - a > 1]
        if holes:
            missing_count = sum(int(b - a - 1) for a, b in holes)
            desc = ", ".join(f"{int(a) + 1}-{int(b) - 1}" if b - a > 2 else f"{int(a) + 1}"
                             for a, b in holes[:10])
            add(DicomStatus.GAP_INSTANCE_NUMBER,
                f"{missing_count} InstanceNumbers missing: {desc}",
                [i for a, b in holes for i in nums[a] + nums[b]])

    # rescale
    for tag, name in (("00281053", "RescaleSlope"), ("00281052", "RescaleIntercept")):
        if tag in meta and not meta.is_shared(tag):
            vals = meta.get_values(tag)
            add(DicomStatus.NON_UNIFORM_RESCALE_FACTOR,
                f"{name} varies per slice ({len(set(map(str, vals)))} values)", _odd_ones(vals))

    issues.sort(key=lambda i: i.status.severity)
    return QCReport(n, issues)


def _check_locations(add, pos: np.ndarray, ok: list[int], iop: np.ndarray,
                     gap_factor: float, tilt_degrees: float) -> None:
    normal = geometry.slice_normal(iop)
    proj = pos[ok] @ normal
    # order in the meta
    d = np.diff(proj)
    if d.size and not (np.all(d >= -1e-6) or np.all(d <= 1e-6)):
        add(DicomStatus.UNSORTED_LOCATION, "slices are not in position order",
            [ok[i + 1] for i in np.nonzero(np.sign(d) != np.sign(np.median(d) or 1))[0]])
    order = np.argsort(proj, kind="stable")
    sp = proj[order]
    idx = [ok[i] for i in order]
    steps = np.diff(sp)
    dup = np.nonzero(steps < 1e-3)[0]
    if dup.size:
        involved = sorted({idx[i] for i in dup} | {idx[i + 1] for i in dup})
        add(DicomStatus.DUPLICATE_LOCATION,
            f"{dup.size} duplicate slice positions (same position along the normal)", involved)
    real = steps[steps >= 1e-3]
    if real.size:
        med = float(np.median(real))
        gaps = [i for i in range(steps.size) if steps[i] > gap_factor * med]
        if gaps:
            desc = ", ".join(f"{steps[i]:.3g} mm between positions {sp[i]:.6g} and "
                             f"{sp[i + 1]:.6g} (~{int(round(steps[i] / med)) - 1} missing)"
                             for i in gaps[:5])
            add(DicomStatus.GAP_LOCATION, f"slice gaps (step {med:.4g} mm): {desc}",
                sorted({idx[i] for i in gaps} | {idx[i + 1] for i in gaps}))
        uneven = [i for i in range(steps.size) if steps[i] >= 1e-3 and i not in gaps
                  and abs(steps[i] - med) > max(0.05 * med, 0.01)]
        if uneven:
            add(DicomStatus.NON_UNIFORM_LOCATION,
                f"slice spacing varies: {steps[uneven].min():.4g}-{steps[uneven].max():.4g} mm "
                f"vs median {med:.4g} mm", sorted({idx[i + 1] for i in uneven}))
    # gantry tilt: slice-to-slice displacement not parallel to the normal
    sel = [i for i in range(steps.size) if steps[i] >= 1e-3]
    if sel:
        disp = pos[[idx[i + 1] for i in sel]] - pos[[idx[i] for i in sel]]
        cosang = np.abs(disp @ normal) / np.linalg.norm(disp, axis=1)
        ang = np.degrees(np.arccos(np.clip(cosang, -1, 1)))
        if float(np.median(ang)) > tilt_degrees:
            add(DicomStatus.GANTRY_TILT,
                f"slices are sheared: {float(np.median(ang)):.2f} degrees between the slice "
                f"normal and the slice-to-slice direction (gantry tilt); geometry kept")


def get_dicom_status(meta: DicomMeta) -> DicomStatus:
    """The most severe status of the series (``CONSISTENT`` when no problem found)."""
    return check_series(meta).status
