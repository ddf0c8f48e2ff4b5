"""``dicube serve``: a PACS back end over a folder of .dcbs files.

:class:`~dicube.server.index.ArchiveIndex` indexes the folder (heads only);
:mod:`dicube.server.app` answers DICOMweb (QIDO-RS here, WADO-RS in
:mod:`dicube.server.wado`) and :mod:`dicube.server.dimse` DIMSE. Needs the ``serve``
extra (``pip install 'dicube[serve]'``) for the servers; the index needs nothing more.
"""
from __future__ import annotations

from .index import ArchiveIndex, InstanceRef

__all__ = ["ArchiveIndex", "InstanceRef", "serve", "create_app"]


def __getattr__(name: str):
    if name in ("serve", "create_app"):  # Starlette is imported only when serving
        from . import app

        return getattr(app, name)
    raise AttributeError(f"module 'dicube.server' has no attribute {name!r}")
