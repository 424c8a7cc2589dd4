"""Errors and warnings raised by :mod:`esg_lib.data` (defined in :mod:`esg_lib.errors`).

Every error a user can cause (a wrong path, a bad archive, a corrupt image) is a :class:`DataError`,
which is a :class:`esg_lib.errors.UserError`: the ``esg`` command prints it as one line without a
traceback, and library users can catch the specific subclass.
"""
from __future__ import annotations

from esg_lib.errors import (CorruptImageError, DataError, DatasetLayoutError, DatasetNotFoundError,  # noqa: F401
                            DataWarning, DownloadError, ManifestMismatchError, UnsafeArchiveError)
