"""The error hierarchy, at the base of the package: every area raises these, and only the ``esg``
command line (:mod:`esg_lib.cli`) catches them, printing one line without a traceback (exit code 2).

Nothing here imports any other part of ``esg_lib``, so models, data, engine, bench and report can all
depend on it without depending on the command line.
"""
from __future__ import annotations

__all__ = ["UserError", "ConfigError", "DataError", "DatasetNotFoundError", "DatasetLayoutError",
           "ManifestMismatchError", "CorruptImageError", "UnsafeArchiveError", "DownloadError",
           "DiskWriteError", "DataWarning"]


class UserError(Exception):
    """An error caused by the user's input: printed as one line, exit code 2."""


class ConfigError(UserError):
    """A bad configuration value (unknown profile, model or field)."""


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


class DiskWriteError(UserError, OSError):
    """A file could not be written for lack of room (full disk or quota, file-size limit): one line
    naming the file; the previous version of the file is whole. Also an ``OSError`` (``errno`` and
    ``filename`` set; the message stays the one line)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class DataWarning(UserWarning):
    """Something was skipped (a README in a class folder, a corrupt file with ``skip_bad_files``)."""
