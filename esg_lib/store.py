"""The results store: where runs, their records and their files live, and what a record must hold.

Every other module asks this one for a path instead of spelling the layout again, so that a new
profile, arm or file kind changes one place. The layout::

    runs/<profile>/<dataset>/<model>/s<seed>-<id10>/     a run folder (local, never committed)
    results/<profile>/
        runs/<dataset>__<model>__s<seed>-<id10>.json    a run's record (small, committed)
        artifacts/<dataset>/<model>/s<seed>-<id10>/     the run folder's light files (committed)
        reruns/<dataset>/<model>/s<seed>-<id10>/        a committed rerun's light files (esg verify --keep)
        tuning/runs/<model>__<candidate>.json          a tuning run's validation record (esg tune)
        <table>.csv  <table>.md                         tables, ``<dataset>`` or ``<dataset>__<protocol>``

A run's files (curves, confusion matrices, features) are looked for in that order: its run folder,
then its committed artifacts, then a committed rerun (:func:`find_run_files`).

**Records.** :func:`record_problem` is the one validator of a parsed record: it checks the type of
every field that the report, the plan and the figures read, so a record that would crash them is
skipped by name (:func:`read_records`) instead. Whether a record is *current* (trained with the
recipe its profile gives its row) is answered from two fields the engine stores in it: ``variant``
(the run's own config variant) and ``profile_variant`` (the variant the profile trains for that row,
stamped when the record is written and refreshed whenever ``esg report`` or ``esg queue`` writes
records: :func:`esg_lib.engine.runs.stamp_records`); see :func:`is_current`.

This module imports nothing of ``esg_lib`` (nor torch, numpy or pandas): the command line, the
notebooks' runner and the report can all use it cheaply (a test loads it alone and checks that).
"""
from __future__ import annotations

import json
import math
import re
import warnings
from pathlib import Path
from typing import Any, Iterable, Mapping, NamedTuple

RESULTS = "results"        # the committed half, under the project root
RUNS = "runs"              # the run folders' root, and each profile's record folder inside results/
ARTIFACTS = "artifacts"
RERUNS = "reruns"
TUNING = "tuning"
RERUN_FILE = "rerun.json"  # in a rerun's folder: the record it reruns, the hardware, the differences
SEP = "__"                 # joins the parts of a record's (and a split protocol's table's) file name
LEAK_FREE = "leak-free"    # the split protocol that names no table suffix


# ---------------------------------------------------------------------------------------- names
def profile_key(profile: Any) -> str:
    """A profile's name from a name or a ``Profile`` (its ``.name``): the store sits below the engine,
    which defines ``Profile``, so it cannot import it and reads the name instead."""
    return getattr(profile, "name", profile)


def slug(text: str) -> str:
    """A name fit for a file or folder: the last path part, runs of other characters as ``-``, lower case."""
    text = Path(str(text).rstrip("/\\")).name or str(text)
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-").lower() or "x"


def run_name(seed: int, run_id: str) -> str:
    """A run folder's name, ``s<seed>-<first 10 characters of the run id>``; a record's file name ends with it."""
    return f"s{seed}-{run_id[:10]}"


def table_name(dataset: str, protocol: str | None = LEAK_FREE) -> str:
    """Tables are per dataset and split protocol: ``x-sdd``, ``x-sdd__augment-then-split``."""
    return dataset if protocol in (None, LEAK_FREE) else f"{dataset}{SEP}{protocol}"


def record_name(dataset: str, model: str, run: str) -> str:
    """A record's file name: ``<dataset>__<model>__<run>.json`` (dataset and model slugged)."""
    return SEP.join((slug(dataset), slug(model), run)) + ".json"


class RecordName(NamedTuple):
    """The parts of a record's file name (:func:`parse_record_name`)."""

    dataset: str
    model: str
    run: str


def parse_record_name(path: str | Path) -> RecordName | None:
    """``<dataset>__<model>__<run>.json`` back into its parts (None: not a record's name)."""
    parts = Path(path).name.removesuffix(".json").split(SEP)
    return RecordName(*parts) if len(parts) == 3 and all(parts) else None


# ---------------------------------------------------------------------------------------- paths
def results_root(root: str | Path) -> Path:
    """``<root>/results``: the committed results under a project root."""
    return Path(root) / RESULTS


def runs_root(root: str | Path) -> Path:
    """``<root>/runs``: the run folders under a project root."""
    return Path(root) / RUNS


def profile_dir(results: str | Path, profile: Any) -> Path:
    """``results/<profile>``: a profile's tables and committed files."""
    return Path(results) / profile_key(profile)


def records_dir(results: str | Path, profile: Any) -> Path:
    """``results/<profile>/runs``: a profile's run records."""
    return profile_dir(results, profile) / RUNS


def record_path(results: str | Path, profile: Any, dataset: str, model: str, run: str) -> Path:
    """Where the record of one run lives."""
    return records_dir(results, profile) / record_name(dataset, model, run)


def record_files(results: str | Path, profile: Any) -> list[Path]:
    """A profile's record files, in file-name order (nothing read or checked)."""
    folder = records_dir(results, profile)
    return sorted(folder.glob("*.json")) if folder.is_dir() else []


def artifacts_dir(results: str | Path, profile: Any) -> Path:
    return profile_dir(results, profile) / ARTIFACTS


def reruns_dir(results: str | Path, profile: Any) -> Path:
    return profile_dir(results, profile) / RERUNS


def run_root(out: str | Path, profile: Any) -> Path:
    """``runs/<profile>``: a profile's run folders (``out`` is ``runs/`` or another root)."""
    return Path(out) / profile_key(profile)


def run_folder(out: str | Path, profile: Any, dataset: str, model: str, run: str) -> Path:
    """``runs/<profile>/<dataset>/<model>/<run>``: where a run trains."""
    return run_in(run_root(out, profile), dataset, model, run)


def run_in(base: str | Path, dataset: str, model: str, run: str) -> Path:
    """``<base>/<dataset>/<model>/<run>``: a run's folder under one of :func:`run_file_bases`."""
    return Path(base) / slug(dataset) / slug(model) / run


def _run_part(folder: str | Path) -> Path:
    """``<dataset>/<model>/<run>``: the part of a run folder that its copies keep."""
    return Path(*Path(folder).parts[-3:])


def artifact_folder(folder: str | Path, profile_results: str | Path) -> Path:
    """Where a run folder's light files are committed: ``<results>/<profile>/artifacts/<dataset>/<model>/<run>``."""
    return Path(profile_results) / ARTIFACTS / _run_part(folder)


def rerun_folder(folder: str | Path, profile_results: str | Path) -> Path:
    """Where a rerun's light files are committed: ``<results>/<profile>/reruns/<dataset>/<model>/<run>``."""
    return Path(profile_results) / RERUNS / _run_part(folder)


def run_file_bases(root: str | Path, profile: Any, runs: str | Path | None = None) -> tuple[Path, Path, Path]:
    """Where a run's files may sit, in the order they are looked for: run folders (``runs`` or
    ``<root>/runs``), committed artifacts, committed reruns (each holds ``<dataset>/<model>/<run>``)."""
    results = results_root(root)
    return (run_root(runs if runs is not None else runs_root(root), profile), artifacts_dir(results, profile),
            reruns_dir(results, profile))


def find_run_files(root: str | Path, profile: Any, dataset: str, model: str, run: str,
                   runs: str | Path | None = None) -> Path | None:
    """The first folder holding the run's files (:func:`run_file_bases`), or None."""
    for base in run_file_bases(root, profile, runs):
        if run_in(base, dataset, model, run).is_dir():
            return run_in(base, dataset, model, run)
    return None


def rerun_files(results: str | Path, profile: Any) -> list[Path]:
    """The ``rerun.json`` of every committed rerun of a profile, in path order."""
    return sorted(reruns_dir(results, profile).glob(f"*/*/*/{RERUN_FILE}"))


def tuning_runs_root(out: str | Path) -> Path:
    """``runs/tuning``: tuning runs train under their own root, so they never mix with the result runs."""
    return Path(out) / TUNING


def tuning_records_dir(results: str | Path, profile: Any) -> Path:
    """``results/<profile>/tuning/runs``: the validation records of ``esg tune``."""
    return profile_dir(results, profile) / TUNING / RUNS


def tuning_record_path(results: str | Path, profile: Any, model: str, candidate: str) -> Path:
    return tuning_records_dir(results, profile) / (SEP.join((slug(model), slug(candidate))) + ".json")


# -------------------------------------------------------------------------------------- records
class RecordWarning(UserWarning):
    """Run records that cannot be read were left out: the warning names each file, says why, and
    says how many of the folder's records were used."""


_TEXT = ("dataset", "model")                                 # required, non-empty text
_OPTIONAL_TEXT = ("run", "run_id", "profile", "protocol", "variant", "profile_variant", "label", "timm_name",
                  "hardware", "status")
_NUMBERS = ("acc", "precision", "recall", "f1", "loss", "fps", "train_seconds", "wall_seconds", "params",
            "steps", "gmacs", "test_n", "best_epoch", "epochs", "epochs_done")
_NUMBER_MAPS = ("val", "per_class_recall")                  # {name: number}


def _is_number(value: Any) -> bool:
    """A finite int or float; a bool is not a number here (JSON ``true`` is no accuracy)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _map_problem(key: str, value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        return f"'{key}' is not an object"
    if not all(_is_number(v) for v in value.values()):
        return f"'{key}' holds a value that is not a number (finite, not true/false)"
    return None


_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,63}")


def record_problem(record: Any) -> str | None:
    """Why a parsed record cannot be used (None: it can). Every field that the report, the plan's
    progress and the figures read is checked for its type, so a record that passes never crashes
    them: ``dataset`` and ``model`` as names (they name table files); an integer ``seed``; text or null for the names (run,
    run id, profile, protocol, variants, label, timm name, hardware, status); finite numbers or null for metrics, counts and
    seconds; ``{name: number}`` or null for ``val`` and ``per_class_recall``; an object or null for
    ``curve`` (with a text ``verdict`` if any)."""
    if not isinstance(record, dict):
        return f"holds a JSON {type(record).__name__} instead of an object"
    if not record:
        return "an empty record"
    for key in _TEXT:
        if not isinstance(record.get(key), str) or not record[key]:
            return f"'{key}' is missing or not text"
        if not _NAME.fullmatch(record[key]):   # it names table files: a path piece of sane length
            return f"'{key}' is not a name (letters, digits, '.', '_', '+', '-'; at most 64)"
    seed = record.get("seed")
    if not isinstance(seed, int) or isinstance(seed, bool):
        return "'seed' is missing or not an integer"
    for key in _OPTIONAL_TEXT:
        if record.get(key) is not None and not isinstance(record[key], str):
            return f"'{key}' is not text"
    for key in _NUMBERS:
        if record.get(key) is not None and not _is_number(record[key]):
            return f"'{key}' is not a number (finite, not true/false)"
    for key in _NUMBER_MAPS:
        why = _map_problem(key, record.get(key))
        if why:
            return why
    curve = record.get("curve")
    if curve is not None and (not isinstance(curve, dict) or not isinstance(curve.get("verdict", ""), str)):
        return "'curve' is not an object with a text verdict"
    return None


def read_records(folder: str | Path) -> tuple[list[dict[str, Any]], list[tuple[Path, str]]]:
    """``(records, skipped)`` of ``folder/*.json`` in file-name order: each file that cannot be read,
    parsed or used (:func:`record_problem`) goes to ``skipped`` as ``(path, why)``, never silently."""
    found, skipped = read_record_files(folder)
    return [record for _, record in found], skipped


def read_record_files(folder: str | Path) -> tuple[list[tuple[Path, dict[str, Any]]], list[tuple[Path, str]]]:
    """:func:`read_records` with each usable record beside its file: ``([(path, record)], skipped)``."""
    found: list[tuple[Path, dict[str, Any]]] = []
    skipped: list[tuple[Path, str]] = []
    for path in sorted(Path(folder).glob("*.json")) if Path(folder).is_dir() else []:
        record, why = _read_record(path)
        if why is None:
            found.append((path, record))
        else:
            skipped.append((path, why))
    return found, skipped


def _read_record(path: Path) -> tuple[Any, str | None]:
    """A record file's parsed content and why it cannot be used (None: it can)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        return None, f"cannot be read ({exc.strerror or type(exc).__name__})"
    try:
        record = json.loads(data)
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
        return None, "an empty file" if not data.strip() else f"not valid JSON ({exc})"
    return record, record_problem(record)


def skipped_message(folder: str | Path, used: int, skipped: list[tuple[Path, str]], limit: int = 10) -> str:
    """One line: how many records of ``folder`` were skipped, each by file name and why."""
    shown = "; ".join(f"{p.name}: {why}" for p, why in skipped[:limit])
    if len(skipped) > limit:
        shown += f"; ... (+{len(skipped) - limit} more)"
    return (f"skipped {len(skipped)} of {used + len(skipped)} run record(s) in {folder}, using the other {used}; "
            f"fix or delete: {shown}")


def load_record_files(profile: Any, results: str | Path = "results", *,
                      warn: bool = True) -> list[tuple[Path, dict[str, Any]]]:
    """A profile's usable records (``results/<profile>/runs/*.json``) beside their files, in file-name order.

    A file that cannot be read, is not valid JSON or is not a run record (:func:`record_problem`) is
    left out and, with ``warn``, named in one :class:`RecordWarning` that also says how many were skipped.
    """
    folder = records_dir(results, profile)
    found, skipped = read_record_files(folder)
    if skipped and warn:
        warnings.warn(skipped_message(folder, len(found), skipped), RecordWarning, stacklevel=3)
    return found


def load_records(profile: Any, results: str | Path = "results", *, warn: bool = True) -> list[dict[str, Any]]:
    """The records of :func:`load_record_files`, without their paths."""
    return [record for _, record in load_record_files(profile, results, warn=warn)]


def is_current(record: Mapping[str, Any]) -> bool:
    """Whether a record was trained with the recipe its profile gives its row: its ``variant`` is the
    ``profile_variant`` stamped in it. A record without the stamp is not counted as current (the
    engine stamps every record it writes, and restamps a profile's records on each ``esg report``)."""
    stamp = record.get("profile_variant")
    return bool(stamp) and record.get("variant") == stamp


def current_records(records: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The records that :func:`is_current` keeps, in their order."""
    return [r for r in records if is_current(r)]
