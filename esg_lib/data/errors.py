"""Errors and warnings raised by :mod:`esg_lib.data`.

Every error a user can cause (a wrong path, a bad archive, a corrupt image) is a :class:`DataError`,
which is an :class:`esg_lib.cli.UserError`: the ``esg`` command prints it as one line without a
traceback, and library users can catch the specific subclass.
"""
from __future__ import annotations

from esg_lib.cli import UserError


class DataError(UserError):
    """Base class for the data area's user-facing errors."""


class DatasetNotFoundError(DataError):
    """A dataset folder, archive or known dataset is not where it was looked for."""


class DatasetLayoutError(DataError):
    """The folder exists but is not a usable folder-per-class dataset (empty class, one class, ...)."""


class ManifestMismatchError(DataError):
    """The files on disk differ from the committed content manifest (missing, extra or changed)."""


class CorruptImageError(DataError):
    """A file with an image extension could not be decoded."""


class UnsafeArchiveError(DataError):
    """An archive entry would land outside the extraction folder (zip-slip, absolute, symlink...)."""


class DownloadError(DataError):
    """A download failed, was truncated, or the archive is not a readable zip/tar."""


class DataWarning(UserWarning):
    """Something was skipped (a README in a class folder, a corrupt file with ``skip_bad_files``)."""
