"""The paper's experiments as a few calls, for the notebooks (which stay thin) and for tests.

An :class:`Experiment` fixes the profile, dataset, seeds, device and output folders; its methods train
(or reuse) the runs a table needs, and turn run folders into tables, curves, confusion matrices,
features and Grad-CAM maps. Every run goes through :func:`esg_lib.engine.train.fit`, so a run needed by
two notebooks (the X-SDD comparison feeds Table 3, the t-SNE and the Grad-CAM figures) is trained once
and reused by its identity hash.

Paths: figures go to ``figures/<profile>/``, tables to ``results/<profile>/``, runs to ``runs/``, all
under the project root (wherever the notebook's working directory is).
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import itertools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from esg_lib import store
from esg_lib.data import DataError, SplitPlan, leak_audit, plan_data, resolve_dataset
from esg_lib.data.registry import dataset_title, short_class_names
from esg_lib.engine import runs as R
from esg_lib.engine.config import ESG_CONVNEXT, Profile, ProfileRef, build_config, get_profile, profile_name
from esg_lib.engine.fps import fps_figures, load_fps
from esg_lib.engine.gradcam import CAM_FILE, CamExplanation, explain, load_cams, load_run_model, pick_images
from esg_lib.engine.models import resolve_model
from esg_lib.engine.provenance import hardware_text
from esg_lib.engine.runs import is_finished, read_json
from esg_lib.engine.train import fit, planned_run_dir, prepare_bundle
from esg_lib.errors import UserError
from esg_lib.markdown import markdown_table
# The tables over run records are the reporting layer's; the notebooks reach them through here too.
from esg_lib.report.frames import (ABLATION_MODELS, COMPARISON_MODELS, METRICS, PAPER_LABELS,  # noqa: F401
                                   PAPER_MODELS, PROTOCOLS, label_paper_columns, paired_difference,
                                   paired_differences, paper_table, protocol_table, records_frame, side_by_side,
                                   summarize)
from esg_lib.reproduce import project_root as _project_root

__all__ = ["Experiment", "RunResult", "PAPER_MODELS", "COMPARISON_MODELS", "ABLATION_MODELS", "PROTOCOLS",
           "paper_table", "main_dataset", "paired_difference", "dataset_available", "PAPER_LABELS",
           "records_frame", "summarize", "side_by_side", "paired_differences", "protocol_table",
           "markdown_table", "CamSet", "GRADCAM_FILES", "TSNE_SETTINGS", "tsne_files", "features_digest",
           "load_tsne", "tsne_embeddings", "seeds_of_lines"]

# what a run needs for Fig. 13 (one of them): its checkpoint, or the maps a kept rerun saved from it
GRADCAM_FILES = ("best.pt", CAM_FILE)


def dataset_available(name: str) -> bool:
    """Whether a known dataset (or folder) can be loaded here without downloading."""
    try:
        resolve_dataset(name)
        return True
    except DataError:
        return False


def main_dataset(requested: str = "neu-cls-64", fallback: str = "x-sdd", *, profile: ProfileRef | None = None,
                 train_missing: bool = True, root: str | Path | None = None,
                 models: Sequence[str] | None = None,
                 files: Sequence[str | Sequence[str]] = ()) -> tuple[str, str]:
    """``(dataset, note)``: the requested dataset, or the fallback with a one-line note saying why
    and how to get the requested one (NEU-CLS-64 is never committed and cannot be fetched offline).

    With ``train_missing=False`` (a notebook that trains nothing) and a ``profile``, the requested
    dataset must also have a finished run of that profile under ``<root>/runs``, or its committed
    light files (artifacts or a rerun, under ``<root>/results/<profile>/``) (``root``: the project
    root, as :class:`Experiment`'s); otherwise the notebook would have nothing to show, so
    it falls back too (e.g. NEU-CLS-64 fetched but its `cpu` runs not trained yet). With ``models``
    (the notebook's model keys) each of them needs a finished leak-free run there: the ablation
    notebook must not switch to a dataset on which only the full network has been trained. With
    ``files`` (e.g. ``(GRADCAM_FILES,)`` for Grad-CAM: a tuple inside means any one of them;
    ``("test_features.npz",)`` for t-SNE) such a run
    must also hold them: runs trained elsewhere may come back without their checkpoints."""
    if not dataset_available(requested):
        return fallback, (f"{requested} is not available here: `esg data fetch {requested}` downloads it (or "
                          f"set ESG_NEU_CLS_64 to your copy). Running the same experiment on {fallback} "
                          f"instead; every figure and table below is labelled {fallback}.")
    if train_missing or profile is None:
        return requested, ""
    name = profile_name(profile)
    root = Path(root) if root else _project_root()
    # a run's files may be its run folder, its committed artifacts or a committed rerun's (figure_runs)
    finished = [folder for base in store.run_file_bases(root, name) for folder in R.find_runs(base / requested)
                if R.is_finished(folder) and all(_holds_any(folder, f) for f in files)]
    have = {c.get("model") for c in map(R.run_config, finished) if c.get("protocol", "leak-free") == "leak-free"}
    missing = [m for m in models or () if m not in have]
    if finished and not missing:
        return requested, ""
    what = f"runs of {', '.join(missing)}" if finished else "runs"
    if files:
        what += " holding " + ", ".join(f if isinstance(f, str) else " or ".join(f) for f in files)
    return fallback, (f"{requested} has no finished `{name}` {what} yet and this notebook trains nothing "
                      f"(train_missing=False): showing {fallback} instead; every figure and table below is "
                      f"labelled {fallback}. `esg queue --profile {name}` trains them.")


def _holds_any(folder: Path, names: str | Sequence[str]) -> bool:
    """Whether ``folder`` holds the file ``names``, or one of them when it is a sequence."""
    return any((folder / n).is_file() for n in ((names,) if isinstance(names, str) else names))


@dataclass
class RunResult:
    """One finished (or reused) training run."""
    key: str
    label: str
    seed: int
    protocol: str
    dataset: str
    run_dir: Path
    metrics: dict[str, Any]
    hardware: str | None = None     # set for a run known only from its committed record (no folder)
    rerun: dict[str, Any] | None = None   # a committed rerun's rerun.json: the figure shows the rerun

    @property
    def run_name(self) -> str:
        """``s<seed>-<id10>``: the run folder's name (a record's file name ends with it)."""
        parsed = store.parse_record_name(self.run_dir) if self.run_dir.suffix == ".json" else None
        return parsed.run if parsed else self.run_dir.name

    @classmethod
    def from_record(cls, key: str, label: str, protocol: str, record: Mapping[str, Any],
                    record_path: Path) -> "RunResult":
        """A run known only from its committed record (``results/<profile>/runs/*.json``): its test
        metrics and hardware, nothing that needs the run folder (curves, confusion, features)."""
        metrics = {"test": {**{m: record.get(m) for m in METRICS}, "n": record.get("test_n")},
                   **{k: record.get(k) for k in ("fps", "params", "steps", "train_seconds", "gmacs")}}
        return cls(key, label, int(record["seed"]), protocol, record["dataset"], record_path, metrics,
                   hardware=record.get("hardware"))

    @classmethod
    def from_rerun(cls, key: str, label: str, protocol: str, folder: Path) -> "RunResult":
        """A committed rerun of a run (``results/<profile>/reruns/...``, see
        :mod:`esg_lib.engine.artifacts`): its own files and metrics, and what ``rerun.json`` says of it."""
        about = json.loads((folder / store.RERUN_FILE).read_text())
        config = R.run_config(folder)
        return cls(key, label, int(config["seed"]), protocol, config["dataset"], folder,
                   json.loads((folder / "metrics.json").read_text()), hardware=about.get("hardware"), rerun=about)

    def log(self) -> list[dict[str, Any]]:
        path = self.run_dir / "log.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []

    def confusion(self) -> np.ndarray:
        """Test confusion matrix (rows = true class, columns = predicted)."""
        return pd.read_csv(self.run_dir / "test_confusion.csv", index_col=0).to_numpy(dtype=np.int64)

    def features(self) -> tuple[np.ndarray, np.ndarray]:
        data = np.load(self.run_dir / "test_features.npz")
        return data["features"], data["labels"]


@dataclass
class Experiment:
    """One profile, dataset, seed list and device; where outputs go.

    ``overrides`` are config fields applied to every run (``{"epochs": 3}``), as from a notebook's
    parameters cell. ``seeds=None`` means the profile's seeds. ``train_missing=False`` trains
    nothing: only finished runs are used and missing ones are listed in :attr:`skipped` (figures
    from a partly finished plan, e.g. the `cpu` profile between sessions).

    ``profile`` is a name or a :class:`~esg_lib.engine.config.Profile`; it is resolved once, here:
    :attr:`prof` holds the :class:`Profile` that every run's config is built from, and
    :attr:`profile` its name (folders, titles, captions).
    """
    profile: ProfileRef = "smoke"
    dataset: str = "x-sdd"
    seeds: Sequence[int] | None = None
    device: str = "auto"
    overrides: Mapping[str, Any] = field(default_factory=dict)
    root: Path | None = None
    progress: bool = True
    train_missing: bool = True

    prof: Profile = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.root = Path(self.root) if self.root else _project_root()
        self.prof = get_profile(self.profile)
        self.profile = self.prof.name     # notebooks, titles and folders read the name
        self.seeds = tuple(self.seeds) if self.seeds is not None else tuple(self.prof.seeds)
        self._bundles: dict[tuple, Any] = {}
        self._plans: dict[str, SplitPlan] = {}
        self.skipped: list[str] = []

    # ------------------------------------------------------------------------------ folders
    @property
    def figures_dir(self) -> Path:
        return self.root / "figures" / self.profile

    @property
    def results_dir(self) -> Path:
        return store.profile_dir(store.results_root(self.root), self.profile)

    @property
    def runs_dir(self) -> Path:
        return store.runs_root(self.root)

    def title(self, what: str, dataset: str | None = None,
              runs: Sequence[RunResult] | None = None, seeds: Sequence[int] | None = None) -> str:
        """A figure title naming the experiment, dataset (spelled as the paper does: X-SDD), profile and
        the seeds actually shown:
        ``seeds`` when given (a figure of one seed's split or runs), else those of ``runs`` -- each
        model's own where they differ (:func:`seeds_of_lines`: a partly run plan, or reruns of some
        seeds only) -- else the experiment's."""
        if seeds is None and runs:
            said = seeds_of_lines(runs)
        else:
            shown = sorted(set(seeds)) if seeds is not None else self.seeds
            said = _seeds_text(shown)
        text = f"{what} — {dataset_title(dataset or self.dataset)}, profile {self.profile}, {said}"
        return text + rerun_note(runs or ())

    # ---------------------------------------------------------------------------- the split
    def split_plan(self, dataset: str | None = None) -> SplitPlan:
        """The first seed's leak-free split of ``dataset`` (default: the experiment's), planned without
        decoding an image: what a figure needs to know of the data (class names, the validation part's
        size) without preparing a bundle. Every model of a seed trains on this split, so the model
        whose config it is read from does not matter."""
        data = self.config(ESG_CONVNEXT, self.seeds[0], dataset=dataset).data
        key = str(data.dataset)
        if key not in self._plans:
            self._plans[key] = plan_data(data.dataset, **data.split_fields())
        return self._plans[key]

    def class_names(self, dataset: str | None = None, *, short: bool = False) -> list[str]:
        """The classes in label order as the paper names them (legends, t-SNE, confusion matrices), or
        with ``short`` their short axis labels (:func:`esg_lib.data.registry.short_class_names`)."""
        plan = self.split_plan(dataset)
        return short_class_names(dataset or self.dataset, plan.class_names) if short else plan.display_names

    def val_size(self, dataset: str | None = None) -> int:
        """Images in the first seed's validation part: a validation-accuracy curve moves in steps of
        100 / val_size points, which the curves' captions state."""
        return self.split_plan(dataset).size("val")

    # ----------------------------------------------------------------------------- training
    def config(self, key: str, seed: int, protocol: str = "leak-free", dataset: str | None = None):
        return build_config(self.prof, **{**dict(model=key, seed=seed, protocol=protocol,
                                                     dataset=dataset or self.dataset, device=self.device,
                                                     out=str(self.runs_dir), progress=self.progress),
                                             **dict(self.overrides)})

    def bundle(self, cfg) -> Any:
        """The data bundle of a config (shared by every model of the same seed, protocol and data)."""
        key = cfg.data   # the frozen DataConfig: exactly what prepare_bundle reads
        if key not in self._bundles:
            self._bundles = {key: prepare_bundle(cfg)}  # one at a time: bundles hold decoded images
        return self._bundles[key]

    def train(self, keys: Iterable[str], protocol: str = "leak-free", dataset: str | None = None,
              seeds: Iterable[int] | None = None, records: bool = False) -> list[RunResult]:
        """Train (or reuse) every model of ``keys`` for every seed; seed-major so a seed's split is
        decoded once and shared by all models. ``records``: see :meth:`train_protocols`."""
        return self.train_protocols(keys, (protocol,), dataset, seeds, records)

    def figure_runs(self, runs: Sequence[RunResult], needs: str | Sequence[str]) -> list[RunResult]:
        """The runs a figure can draw: each run that holds the file ``needs`` (``log.jsonl`` for
        curves, ``test_confusion.csv``, ``test_features.npz``; a tuple means any one of them, as
        :data:`GRADCAM_FILES` for Grad-CAM), else its committed rerun
        (``results/<profile>/reruns/``, same run id, retrained on other hardware) when that holds it.

        A run with neither is left out; when that leaves a model of ``runs`` without any run, the
        figure would silently lose a model, so nothing is returned and the committed figure stays as it
        is. What was substituted or why nothing is drawn is printed (the notebook's output)."""
        what = needs if isinstance(needs, str) else " or ".join(needs)
        shown, missing = [], []
        for r in runs:
            if _holds_any(r.run_dir, needs):
                shown.append(r)
                continue
            folder = store.run_in(store.reruns_dir(store.results_root(self.root), self.profile), r.dataset, r.key,
                                  r.run_name)
            if _holds_any(folder, needs) and (folder / store.RERUN_FILE).is_file():
                shown.append(RunResult.from_rerun(r.key, r.label, r.protocol, folder))
            else:
                missing.append(f"{r.label} seed {r.seed}")
        lacking = sorted({r.label for r in runs} - {r.label for r in shown})
        if lacking:
            print(f"No {what} here for {', '.join(lacking)} (no run folder, artifacts or rerun): this figure "
                  "is not drawn, and its committed version stays as it is.")
            return []
        reruns = [r for r in shown if r.rerun]
        if reruns:
            print(f"{len(reruns)} of {len(shown)} runs drawn from committed reruns (same run ids, retrained on "
                  f"{'; '.join(sorted({r.hardware or '?' for r in reruns}))}); the tables keep the records' numbers.")
        if missing:
            print(f"Left out (no {what} here): {', '.join(missing)}.")
        return shown

    def train_protocols(self, keys: Iterable[str], protocols: Sequence[str] = PROTOCOLS,
                        dataset: str | None = None, seeds: Iterable[int] | None = None,
                        records: bool = False) -> list[RunResult]:
        """:meth:`train` under each split protocol in turn. With ``train_missing=False`` a protocol
        without finished runs is left out (the leak table shows "—" there); only nothing at all
        is an error. ``records=True`` (for tables and figures of test metrics only) also takes a run
        that has neither a run folder nor committed light files from its committed record, as on a
        fresh clone of the 78 ``cpu`` runs, whose folders were not kept."""

        keys = list(keys)
        seed_list = self.seeds if seeds is None else tuple(seeds)
        results = []
        for protocol, seed, key in itertools.product(protocols, seed_list, keys):
            cfg = self.config(key, seed, protocol, dataset)
            label = resolve_model(key, self.prof).label
            planned = planned_run_dir(cfg, self.bundle(cfg))
            committed = store.artifact_folder(planned, self.results_dir)
            if not is_finished(planned) and is_finished(committed):
                # a fresh clone: the run's light files are committed beside its record
                results.append(RunResult(key, label, seed, protocol, cfg.dataset, committed,
                                         json.loads((committed / "metrics.json").read_text())))
                continue
            record_path = store.record_path(self.results_dir.parent, self.profile, cfg.dataset, key, planned.name)
            if records and not is_finished(planned) and not self.train_missing and record_path.is_file():
                results.append(RunResult.from_record(key, label, protocol, json.loads(record_path.read_text()),
                                                     record_path))
                continue
            if not self.train_missing and not is_finished(planned):
                self.skipped.append(f"{key} seed {seed} ({protocol})")
                continue
            fitted = fit(cfg, self.bundle(cfg))
            results.append(RunResult(key, label, seed, protocol, cfg.dataset, Path(fitted.run_dir),
                                     dict(fitted.metrics)))
        if self.skipped:
            print(f"not trained (train_missing=False), left out: {', '.join(self.skipped)}")
            if not results:
                raise RuntimeError(f"no finished {self.profile} runs for {', '.join(keys)} "
                                   f"({', '.join(protocols)}); "
                                   "train them first (esg queue) or set train_missing=True")
        return results

    def data_overview(self, dataset: str | None = None) -> dict[str, Any]:
        """The data behind Fig. 1 / Fig. 14: the first seed's leak-free bundle, images per class and
        split, and the leak audit of every protocol (same seed)."""
        cfg = self.config("resnet18", self.seeds[0], "leak-free", dataset)  # the model does not matter
        bundle = self.bundle(cfg)
        counts = {split: getattr(bundle, split).class_counts() for split in ("train", "val", "test")}
        # how many of the training images per class are augmented copies (the rest are originals)
        copies = np.bincount(bundle.train.labels.numpy()[np.asarray(bundle.train.copies) > 0],
                             minlength=len(counts["train"])).tolist()
        audits = []
        for protocol in PROTOCOLS:
            b = bundle if protocol == "leak-free" else self.bundle(self.config("resnet18", self.seeds[0], protocol,
                                                                                dataset))
            audits.append({"protocol": protocol, **leak_audit(b).as_dict()})
        return {"bundle": bundle, "counts": counts, "copies": copies, "audit": pd.DataFrame(audits),
                "seed": self.seeds[0]}

    # ------------------------------------------------------------------------------- tables
    def results_frame(self, runs: Sequence[RunResult]) -> pd.DataFrame:
        """One row per run: model, seed, protocol, test metrics (%), FPS, params, train seconds."""
        return records_frame(_run_record(r) for r in runs)

    def summary(self, runs: Sequence[RunResult], by: Sequence[str] = ("key", "model")) -> pd.DataFrame:
        """Mean and std (ddof=1) over seeds per model: columns ``<metric>_mean``, ``<metric>_std``, ``n``."""
        return summarize(self.results_frame(runs), by)

    def side_by_side(self, runs: Sequence[RunResult], table: int) -> pd.DataFrame:
        """Our mean ± std beside the paper's Table ``table`` (the paper's columns are labelled so);
        FPS from ``esg fps`` (``results/<profile>/fps.json``) when it has been measured: one figure per
        network, its median and range over the timings (:func:`~esg_lib.engine.fps.fps_figures`)."""

        speed = load_fps(self.prof, self.results_dir.parent)
        frame = side_by_side(self.summary(runs), table, fps_figures(speed))
        return label_paper_columns(frame, table, runs[0].dataset if runs else self.dataset)

    def paired_differences(self, runs: Sequence[RunResult], target: str = "esg-convnext",
                           metric: str = "acc") -> pd.DataFrame:
        """``target`` minus every other model, paired per seed (see :func:`paired_differences`)."""
        return paired_differences(self.results_frame(runs), target, metric)

    def protocol_table(self, runs: Sequence[RunResult], metric: str = "acc") -> pd.DataFrame:
        """``metric`` under each split protocol and the leak's effect (see :func:`protocol_table`)."""
        return protocol_table(self.results_frame(runs), metric)

    def write_table(self, frame: pd.DataFrame, name: str, caption: str = "",
                    runs: Sequence[RunResult] | None = None) -> list[Path]:
        """``results/<profile>/<name>.csv`` and ``.md``. With ``runs``, the caption also names the
        seeds and the hardware the runs were trained on (from their ``meta.json``)."""
        self.results_dir.mkdir(parents=True, exist_ok=True)
        csv_path, md_path = self.results_dir / f"{name}.csv", self.results_dir / f"{name}.md"
        frame.to_csv(csv_path, index=False)
        header = caption.strip()
        if runs:
            seeds = sorted({r.seed for r in runs})
            header += (f"\n\nOurs: profile `{self.profile}`, {len(seeds)} seed(s) ({', '.join(map(str, seeds))}), "
                       f"test split, mean ± std over seeds (%). Trained on: {'; '.join(_hardware_of(runs))}. "
                       "Columns marked 'paper' are the paper's published numbers, not ours.")
        md_path.write_text(header + "\n\n" + markdown_table(frame) + "\n")
        return [csv_path, md_path]

    # ------------------------------------------------------------------------- curves etc.
    @staticmethod
    def curves(runs: Sequence[RunResult], metric: str = "val_acc", scale: float = 100.0) -> dict[str, list[list[float]]]:
        """Per model label, the per-seed series of a logged metric (epoch order)."""
        out: dict[str, list[list[float]]] = {}
        for r in runs:
            out.setdefault(r.label, []).append([scale * e[metric] for e in r.log() if metric in e])
        return out

    @staticmethod
    def confusion_matrices(runs: Sequence[RunResult], seed: int | None = None,
                           total: bool = False) -> dict[str, np.ndarray]:
        """Per model label, the test confusion matrix of one seed (the first by default), or with
        ``total=True`` the sum over every seed's test part (each seed is its own split)."""
        if total:
            out: dict[str, np.ndarray] = {}
            for r in runs:
                out[r.label] = out[r.label] + r.confusion() if r.label in out else r.confusion()
            return out
        seed = runs[0].seed if seed is None else seed
        return {r.label: r.confusion() for r in runs if r.seed == seed}

    @staticmethod
    def features(runs: Sequence[RunResult], seed: int | None = None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        seed = runs[0].seed if seed is None else seed
        return {r.label: r.features() for r in runs if r.seed == seed}

    def tsne(self, runs: Sequence[RunResult], class_names: Sequence[str] | None = None, seed: int | None = None,
             recompute: bool = False) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Fig. 12's 2-D embeddings of each model's test features (one seed, the first by default),
        from ``results/<profile>/tsne/<dataset>.csv`` while the features are the ones it was computed
        from; t-SNE runs only for a model whose features changed, or for all with ``recompute``
        (:func:`tsne_embeddings`)."""
        seed = runs[0].seed if seed is None else seed
        shown = [r for r in runs if r.seed == seed]
        features = {r.label: r.features() for r in shown}
        sources = {r.label: _relative(r.run_dir / "test_features.npz", self.root) for r in shown}
        return tsne_embeddings(features, self.results_dir, shown[0].dataset, sources=sources,
                               class_names=class_names, recompute=recompute)

    def gradcam(self, runs: Sequence[RunResult], n_images: int = 6, seed: int = 42, stage: str = "auto") -> CamSet:
        """Grad-CAM of each run's best checkpoint on the same seeded test images (one per class first,
        as in the paper's figure, then random ones: :func:`~esg_lib.engine.gradcam.pick_images`) from
        the test split of the first run's seed; only runs of that seed are explained. A run without a
        checkpoint (a committed rerun) shows the maps saved with it, which must be of the same images,
        seed and stage."""
        first = runs[0]
        cfg = self.config(first.key, first.seed, first.protocol, first.dataset)
        bundle = self.bundle(cfg)
        test = bundle.test
        labels = test.labels.numpy()
        picks = pick_images(labels, len(bundle.class_names), n_images, seed)
        raw = test.images[picks]
        x = test.normalize(raw)
        explained = {}
        for r in runs:
            if r.seed != first.seed:
                continue
            if (r.run_dir / "best.pt").is_file():
                explained[r.label] = explain(load_run_model(r.run_dir), x, stage=stage)
                continue
            stored = load_cams(r.run_dir)
            if not stored.matches(picks, seed, stage):
                raise UserError(f"{r.label}: the Grad-CAM maps saved in {r.run_dir / CAM_FILE} are of test images "
                                f"{stored.indices} (seed {stored.seed}, stage {stored.stage}), not of {picks} "
                                f"(seed {seed}, stage {stage}): use n_images={len(stored.indices)}, seed={stored.seed}, "
                                f"or a run folder with its best.pt")
            explained[r.label] = stored.explanation
        return CamSet(images=raw.permute(0, 2, 3, 1).float().numpy() / 255.0, truths=labels[picks],
                      class_names=list(bundle.display_names),
                      short_names=short_class_names(bundle.dataset_name, bundle.class_names),
                      explained=explained, seed=first.seed)


@dataclass
class CamSet:
    """What Fig. 13 shows: images float (N, H, W, 3) in [0, 1], their true classes, the class names
    (the paper's, and short codes for panel labels), and each model's :class:`~esg_lib.engine.gradcam.CamExplanation` (maps, predicted classes, grid)."""
    images: np.ndarray
    truths: np.ndarray
    class_names: list[str]
    short_names: list[str]
    explained: dict[str, CamExplanation]
    seed: int

    @property
    def cams(self) -> dict[str, np.ndarray]:
        return {label: e.maps for label, e in self.explained.items()}

    def correct(self) -> dict[str, int]:
        """Per model, how many of the shown images it classifies right."""
        return {label: int((e.predictions == self.truths).sum()) for label, e in self.explained.items()}


# ------------------------------------------------------------------ tables from run records
# The tables themselves are esg_lib.report.frames': they serve the notebooks (records of the run
# folders they trained) and the README (records committed under results/<profile>/runs/).

def _run_record(r: RunResult) -> dict[str, Any]:
    test = r.metrics.get("test", {})
    return {"model": r.key, "label": r.label, "seed": r.seed, "protocol": r.protocol, "dataset": r.dataset,
            **{m: test.get(m) for m in METRICS}, "test_n": test.get("n"), "fps": r.metrics.get("fps"),
            "params": r.metrics.get("params"), "steps": r.metrics.get("steps"),
            "train_seconds": r.metrics.get("train_seconds"), "gmacs": r.metrics.get("gmacs")}


def _seeds_text(seeds: Sequence[int]) -> str:
    return f"{'seed' if len(seeds) == 1 else 'seeds'} {','.join(map(str, seeds))}"


def seeds_of_lines(runs: Sequence[RunResult]) -> str:
    """The seeds of ``runs`` as a title says them: ``seeds 0,1,2`` when every model (label) has the
    same seeds, else each set with its models, the most common set last as "the other N":
    ``seeds 0,1,2 for MobileNetV3 and ConvNeXtV2, seed 0 for the other 7``."""
    by_label: dict[str, list[int]] = {}
    for r in runs:
        by_label.setdefault(r.label, []).append(r.seed)
    groups: dict[tuple[int, ...], list[str]] = {}
    for label, seeds in by_label.items():
        groups.setdefault(tuple(sorted(set(seeds))), []).append(label)
    if len(groups) <= 1:
        return _seeds_text(next(iter(groups), ()))
    ordered = sorted(groups.items(), key=lambda kv: len(kv[1]))   # the largest group last (ties: first seen first)
    parts = [f"{_seeds_text(seeds)} for {' and '.join([', '.join(labels[:-1]), labels[-1]] if len(labels) > 1 else labels)}"
             for seeds, labels in ordered[:-1]]
    seeds, labels = ordered[-1]
    parts.append(f"{_seeds_text(seeds)} for the other {len(labels)}" if len(labels) > 1
                 else f"{_seeds_text(seeds)} for {labels[0]}")
    return ", ".join(parts)


def rerun_note(runs: Iterable[RunResult]) -> str:
    """A title's second line when some of ``runs`` are committed reruns, naming where they ran."""
    hardware = sorted({r.hardware or "?" for r in runs if r.rerun})
    if not hardware:
        return ""
    on = "; ".join(re.sub(r"\b1 threads\b", "1 thread", h) for h in hardware)   # the records' text says "1 threads"
    return f"\ndrawn from reruns (same run ids) on {on}; the tables keep the records' numbers"


def _hardware_of(runs: Sequence[RunResult]) -> list[str]:
    """Distinct hardware descriptions from the runs' meta.json files."""
    def text(r: RunResult) -> str | None:
        if r.hardware:
            return r.hardware
        meta = read_json(r.run_dir / "meta.json")
        return hardware_text(meta) if meta else None

    seen = {t: None for t in map(text, runs) if t}
    return list(seen) or ["unknown"]




# ------------------------------------------------------------------------------- Fig. 12's t-SNE
# t-SNE magnifies last-bit differences of the machine's floating-point paths (another processor, BLAS
# or thread count) into another layout, so the 2-D embeddings are committed beside the tables and the
# figure is drawn from them; t-SNE runs again only when a model's features change (their SHA-256 is
# stored with its embedding), when the settings change, or on request.
TSNE_SETTINGS: dict[str, Any] = {"random_state": 42, "perplexity": 30.0, "init": "pca"}   # the paper's seed


def tsne_files(results_dir: str | Path, dataset: str) -> tuple[Path, Path]:
    """``results/<profile>/tsne/<dataset>.csv`` (model, index, label, x, y) and ``.json`` (settings,
    class names, and per model the features file, their SHA-256 and where the embedding was computed)."""
    folder = Path(results_dir) / "tsne"
    return folder / f"{dataset}.csv", folder / f"{dataset}.json"


def features_digest(features: np.ndarray, labels: np.ndarray) -> str:
    """SHA-256 of the features (as float32) and labels (int64), with their shapes: the inputs of one
    model's t-SNE."""
    f = np.ascontiguousarray(np.asarray(features, dtype=np.float32))
    y = np.ascontiguousarray(np.asarray(labels, dtype=np.int64))
    digest = hashlib.sha256(repr((f.shape, y.shape)).encode())
    digest.update(f.tobytes())
    digest.update(y.tobytes())
    return digest.hexdigest()


def load_tsne(results_dir: str | Path, dataset: str) -> tuple[dict[str, Any], dict[str, tuple[np.ndarray, np.ndarray]]] | None:
    """``(about, {model: (xy, labels)})`` of the stored embeddings (models in the stored order), or
    None when there are none."""
    csv_path, json_path = tsne_files(results_dir, dataset)
    if not (csv_path.is_file() and json_path.is_file()):
        return None
    about = json.loads(json_path.read_text())
    table = pd.read_csv(csv_path)
    out = {}
    for label in about["models"]:
        part = table[table["model"] == label].sort_values("index")
        out[label] = (part[["x", "y"]].to_numpy(dtype=np.float64), part["label"].to_numpy(dtype=np.int64))
    return about, out


def tsne_embeddings(features: Mapping[str, tuple[np.ndarray, np.ndarray]], results_dir: str | Path, dataset: str,
                    sources: Mapping[str, str] | None = None, class_names: Sequence[str] | None = None,
                    recompute: bool = False, settings: Mapping[str, Any] = TSNE_SETTINGS,
                    progress: bool = True) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per model (``features[model] = (features, labels)``, in the figure's order) its 2-D t-SNE,
    read from the stored embeddings (:func:`tsne_files`) when they were computed from the same
    features (:func:`features_digest`) and ``settings``; computed (:func:`esg_lib.figures.tsne_embedding`)
    and stored otherwise, or for every model with ``recompute``. What is returned is always what the
    files hold, so a figure drawn after a recomputation equals one drawn later from the files.
    ``sources`` (model → features file) and ``class_names`` are stored with them."""
    from esg_lib.engine.provenance import hardware, hardware_text, package_versions

    stored = load_tsne(results_dir, dataset)
    about, kept = stored if stored else ({}, {})
    same_settings = about.get("settings") == dict(settings)
    models: dict[str, Any] = {}
    embeddings: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    computed, why = [], {}
    for label, (feats, labels) in features.items():
        digest = features_digest(feats, labels)
        old = (about.get("models") or {}).get(label, {})
        if not recompute and same_settings and old.get("features_sha256") == digest and label in kept:
            models[label] = old   # the same bytes: where they were read from is kept as stored
            embeddings[label] = kept[label]
            continue
        why[label] = ("on request" if recompute else "new" if not old else
                      "settings changed" if not same_settings else "features changed")
        if progress:
            print(f"t-SNE of {label} ({why[label]}) ...", flush=True)
        from esg_lib import figures

        xy = figures.tsne_embedding(feats, random_state=settings["random_state"], perplexity=settings["perplexity"])
        versions = package_versions()
        models[label] = {"features": (sources or {}).get(label), "features_sha256": digest, "n": int(len(labels)),
                         "computed": {"date": _dt.date.today().isoformat(),
                                      "hardware": re.sub(r"\b1 threads\b", "1 thread", hardware_text(
                                          {"hardware": hardware(), "threads": 1, "device": "cpu"})),
                                      "scikit-learn": versions.get("scikit-learn"), "numpy": versions.get("numpy"),
                                      "threads": 1}}
        embeddings[label] = (np.asarray(xy, dtype=np.float64), np.asarray(labels, dtype=np.int64))
        computed.append(label)
    names = list(class_names) if class_names is not None else about.get("class_names")
    wanted = {"dataset": dataset, "settings": dict(settings), "class_names": names, "models": models}
    csv_path, json_path = tsne_files(results_dir, dataset)
    if computed or wanted != about:
        csv_path.parent.mkdir(parents=True, exist_ok=True)
        rows = pd.concat([pd.DataFrame({"model": label, "index": np.arange(len(y)), "label": y,
                                        "x": xy[:, 0], "y": xy[:, 1]}) for label, (xy, y) in embeddings.items()])
        rows.to_csv(csv_path, index=False, float_format="%.3f", lineterminator="\n")
        json_path.write_text(json.dumps(wanted, indent=1) + "\n")
    if progress:
        where = _relative(csv_path, _project_root())
        if computed:
            print(f"t-SNE computed for {', '.join(f'{m} ({why[m]})' for m in computed)}; stored in {where}; "
                  f"{len(features) - len(computed)} of {len(features)} read from it.")
        else:
            print(f"Fig. 12 drawn from {where}: the stored t-SNE of each of the {len(features)} models was computed "
                  "from these very features (SHA-256 matches), so no t-SNE ran (recompute_tsne=True runs it again).")
    _, on_file = load_tsne(results_dir, dataset)
    return {label: on_file[label] for label in features}


def _relative(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` when inside it (the committed files' own names), else as it is."""
    try:
        return Path(path).resolve().relative_to(Path(root).resolve()).as_posix()
    except ValueError:
        return str(path)
