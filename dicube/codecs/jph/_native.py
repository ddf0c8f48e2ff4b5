"""Access to the compiled extension, with a clear error when it is missing."""
from __future__ import annotations

try:
    from dicube import _native as native  # noqa: F401
except ImportError as exc:  # pragma: no cover - only without a build
    raise ImportError(
        "dicube's compiled extension (dicube._native) is not available. Install the package "
        "with `pip install .` (needs Debian's libopenjph-dev) instead of importing it from "
        "the source tree."
    ) from exc

__all__ = ["native"]
