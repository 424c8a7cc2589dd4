"""Run the numbered notebooks with papermill: ``esg reproduce``, ``make reproduce`` and
``notebooks/00_reproduce_all.ipynb`` all end up here.

Each notebook runs in its own papermill subprocess (papermill inside a running kernel has hit "event
loop is already running"), with the same parameters, the project's kernel and ``notebooks/`` as its
working directory. Executed copies go to ``runs/<profile>/notebooks/`` (never over the sources). A
failing notebook does not stop the others; the failures are listed at the end, with the notebook's
name and the error, and the command exits non-zero. Training runs are reused by their identity hash,
so rerunning after a crash only costs what was not finished.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

__all__ = ["NOTEBOOKS", "PROFILES", "CHECK_RUN", "NotebookResult", "run_notebooks", "run_all", "project_root",
           "checkout", "kernel_name", "summary_markdown", "resolve_notebooks", "register"]

PROFILES = ("smoke", "cpu", "paper")
KERNEL = "esg-lib"
ROOT_ENV = "ESG_ROOT"

# ``esg reproduce --check``: a profile's models at its own sizes (for `paper`: 224 px, ViT-B/16,
# Swin-T window 7, Grad-CAM at 224 px, t-SNE on its pre-logit features) through every notebook, cut
# to one seed, 42 X-SDD images (each split keeps every class), one optimiser step of batch 2 per run
# and a 2-pass FPS loop: every code path at full scale on a CPU (`make test` runs every notebook on
# `paper`). One augmented copy (not 0) keeps the augment-then-split protocols of notebook
# 08 apart from leak-free. Outputs go under runs/check/ (git-ignored; its own runs/, figures/,
# results/): runs cut short by max_steps are never exported as results, and the committed figures/
# and results/ are left alone.
CHECK_RUN: dict[str, Any] = {
    "dataset": "x-sdd", "seeds": [0],
    "overrides": {"max_steps": 1, "epochs": 1, "batch_size": 2, "max_images": 42, "augment_copies": 1,
                  "eval_batch_size": 8, "fps_iters": 2, "fps_warmup": 1, "fps_batch_size": 1,
                  "keep_last": False},   # ViT-B/16's last.pt alone is ~1 GB
}

# The notebooks 00_reproduce_all runs, in order, with what each reproduces.
NOTEBOOKS: dict[str, str] = {
    "01_data_overview.ipynb": "Fig. 1 / Fig. 14 sample grids, class counts, the split and the leak audit",
    "02_activation_functions.ipynb": "Fig. 7 activation functions",
    "03_model_comparison.ipynb": "Table 1, Fig. 9 validation curves, Fig. 10 confusion matrices",
    "04_ablation.ipynb": "Table 2, Fig. 11 curves per ablation row",
    "05_tsne.ipynb": "Fig. 12 t-SNE of pre-logit features (random_state=42)",
    "06_gradcam.ipynb": "Fig. 13 Grad-CAM of the paper's 7 models",
    "07_xsdd_generalization.ipynb": "Table 3 (+ ResNet18 reference), Fig. 15 curves on X-SDD",
    "08_split_protocols.ipynb": "leak-free vs augment-then-group-split vs augment-then-split",
    "09_records_overview.ipynb": "accuracy vs FPS/GMACs, paired differences, ablation dots, per-class recall "
                                 "(from the run records)",
}
# Notebooks that read run folders (logs, predictions, features, checkpoints), not only the records.
# (08 is not among them: its table and bars need only test metrics, which the committed records hold.)
RUN_NOTEBOOKS = frozenset({"03_model_comparison.ipynb", "04_ablation.ipynb", "05_tsne.ipynb", "06_gradcam.ipynb",
                           "07_xsdd_generalization.ipynb"})
# Profiles whose runs take hours: `esg reproduce` trains nothing for them unless asked (--train-missing).
SLOW_PROFILES = frozenset({"cpu", "paper"})
# The summary shows the paper's tables first, in its order, then ours (by these name prefixes).
SUMMARY_ORDER = ("table1_", "table2_", "table3_", "paired_differences_", "protocols_", "leak_audit_")
# What a notebook that may fall back to X-SDD shows when it runs: "**Dataset used: X-SDD**".
_DATASET_USED = re.compile(r"Dataset used: ([A-Za-z0-9_.-]+)")


def resolve_notebooks(names: Sequence[str]) -> list[str]:
    """Full notebook file names for what a user typed: ``03_model_comparison.ipynb``, the name
    without ``.ipynb``, or any unambiguous prefix such as ``03``. Raises ``ValueError`` naming every
    name that matches no notebook or more than one."""
    choices = [*NOTEBOOKS, "00_reproduce_all.ipynb"]
    resolved, problems = [], []
    for name in names:
        matches = [c for c in choices if c == name] or [c for c in choices if c.startswith(name)]
        if len(matches) == 1:
            resolved.append(matches[0])
        else:
            problems.append(f"{name!r} ({'matches ' + ', '.join(matches) if matches else 'no such notebook'})")
    if problems:
        raise ValueError(f"unknown notebook(s): {'; '.join(problems)} (choose from {', '.join(choices)})")
    return resolved


def checkout() -> Path:
    """The checkout holding this package (its ``notebooks/`` are the sources); else the cwd."""
    here = Path(__file__).resolve().parents[1]
    return here if (here / "pyproject.toml").is_file() and (here / "notebooks").is_dir() else Path.cwd()


def project_root() -> Path:
    """Where the notebooks write ``figures/``, ``results/`` and ``runs/``: ``$ESG_ROOT`` when set (a
    check run that must not touch the committed outputs, see :data:`CHECK_RUN`), else the checkout."""
    given = os.environ.get(ROOT_ENV, "").strip()
    return Path(given).resolve() if given else checkout()


def kernel_name(preferred: str = KERNEL) -> str:
    """The project's kernel (``make install`` registers it); ``python3`` of this environment otherwise."""
    from jupyter_client.kernelspec import KernelSpecManager

    return preferred if preferred in KernelSpecManager().find_kernel_specs() else "python3"


@dataclass
class NotebookResult:
    name: str
    ok: bool
    seconds: float
    output: Path
    error: str = ""
    skipped: str = ""     # why it did not run (not a failure: its committed outputs stay as they are)


@dataclass
class RunFolders:
    """The committed records of a profile and how many of their runs have something to rebuild
    figures from here: a run folder under ``runs/``, committed light artifacts
    (``results/<profile>/artifacts/``, :mod:`esg_lib.engine.artifacts`) or a committed rerun's
    (``results/<profile>/reruns/``). A notebook whose figures need files that are not here draws
    those figures from what is, or says it leaves them out (``Experiment.figure_runs``)."""

    records: int
    with_files: int
    recorded_hours: float           # the missing runs' own training time, as recorded (their hardware)

    @property
    def none_here(self) -> bool:
        return self.records > 0 and self.with_files == 0


def run_folders(profile: str, root: Path | None = None) -> RunFolders:
    root = Path(root) if root else project_root()
    records = sorted((root / "results" / profile / "runs").glob("*.json"))
    have, hours = 0, 0.0
    for path in records:
        rec = json.loads(path.read_text())
        dataset, model, run = path.stem.split("__")
        if any((base / dataset / model / run).is_dir()
               for base in (root / "runs" / profile, root / "results" / profile / "artifacts",
                            root / "results" / profile / "reruns")):
            have += 1
        else:
            # a resumed run's wall time covers only its last process; its training seconds all of them
            hours += max(float(rec.get("wall_seconds") or 0.0), float(rec.get("train_seconds") or 0.0)) / 3600.0
    return RunFolders(len(records), have, hours)


@dataclass
class ReproduceReport:
    profile: str
    results: list[NotebookResult] = field(default_factory=list)

    @property
    def failures(self) -> list[NotebookResult]:
        return [r for r in self.results if not r.ok]

    def summary(self) -> str:
        lines = [f"{'notebook':34} {'status':7} {'seconds':>8}"]
        lines += [f"{r.name:34} {'skipped' if r.skipped else 'ok' if r.ok else 'FAILED':7} {r.seconds:8.1f}"
                  for r in self.results]
        for r in self.failures:
            lines.append(f"\nFAILED {r.name} (executed copy: {r.output}):\n{r.error}")
        return "\n".join(lines)


def _error_of(output: Path, stderr: str) -> str:
    """The notebook's own error (exception name and value) from the executed copy, else stderr's tail."""
    try:
        nb = json.loads(output.read_text())
        for cell in nb.get("cells", []):
            for out in cell.get("outputs", []):
                if out.get("output_type") == "error":
                    return f"{out.get('ename')}: {out.get('evalue')}"
    except (OSError, ValueError):
        pass
    return "\n".join(stderr.strip().splitlines()[-15:])


def run_notebooks(profile: str = "smoke", notebooks: Sequence[str] | None = None,
                  parameters: dict[str, Any] | None = None, kernel: str | None = None,
                  root: Path | None = None, timeout: int | None = None, stream: bool = False) -> ReproduceReport:
    """Execute ``notebooks`` (default: all of :data:`NOTEBOOKS`) with papermill, one subprocess each.

    ``stream=True`` shows what the notebooks print as they run (papermill ``--log-output``) instead
    of capturing it; errors are read from the executed copy either way.
    """
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose from {', '.join(PROFILES)}")
    root = Path(root) if root else project_root()
    # the sources: the root's own notebooks/ when it has them (tests), else the checkout's
    source_dir = root / "notebooks" if (root / "notebooks").is_dir() else checkout() / "notebooks"
    out_dir = root / "runs" / profile / "notebooks"
    out_dir.mkdir(parents=True, exist_ok=True)
    kernel = kernel or kernel_name()
    params = {"profile": profile, **(parameters or {})}
    report = ReproduceReport(profile)
    names = list(notebooks or NOTEBOOKS)
    folders = run_folders(profile, root)
    no_runs = params.get("train_missing") is False and folders.none_here
    for i, name in enumerate(names, 1):
        source, output = source_dir / name, out_dir / name
        if no_runs and name in RUN_NOTEBOOKS:
            why = (f"its {folders.records} committed {profile} runs have records but no run folder, artifacts "
                   "or rerun here; this run trains nothing")
            print(f"[{i}/{len(names)}] {name}: skipped ({why})", flush=True)
            report.results.append(NotebookResult(name, True, 0.0, output, skipped=why))
            continue
        if not source.is_file():
            report.results.append(NotebookResult(name, False, 0.0, output, f"no such notebook: {source}"))
            continue
        cmd = [sys.executable, "-m", "papermill", str(source), str(output), "--kernel", kernel,
               "--language", "python", "--cwd", str(source_dir), "--no-progress-bar"]
        if timeout:
            cmd += ["--execution-timeout", str(timeout)]
        for key, value in params.items():
            cmd += ["-y", json.dumps({key: value})]
        print(f"[{i}/{len(names)}] {name}: {NOTEBOOKS.get(name, '')}", flush=True)
        start = time.perf_counter()
        env = {**os.environ, "PYTHONUNBUFFERED": "1", ROOT_ENV: str(root)}   # the kernel writes under root
        if stream:
            proc = subprocess.run([*cmd, "--log-output"], text=True, env=env, stderr=subprocess.STDOUT)
        else:
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        seconds = time.perf_counter() - start
        ok = proc.returncode == 0
        report.results.append(NotebookResult(name, ok, seconds, output,
                                             "" if ok else _error_of(output, proc.stderr or "")))
        used = _dataset_used(output)
        print(f"    {'ok' if ok else 'FAILED'} in {seconds:.0f} s{f' on {used}' if used else ''} -> {output}",
              flush=True)
    return report


def _dataset_used(executed: Path) -> str:
    """The dataset an executed notebook says it used ("Dataset used: X-SDD" in its outputs), or ""."""
    try:
        text = executed.read_text(encoding="utf-8")
    except OSError:
        return ""
    found = _DATASET_USED.search(text)
    return found.group(1) if found else ""


def run_all(profile: str = "smoke", parameters: dict[str, Any] | None = None, kernel: str | None = None,
            root: Path | None = None) -> ReproduceReport:
    """Every numbered notebook; raises ``RuntimeError`` naming each failed notebook and its error
    after all the others have run."""
    report = run_notebooks(profile, None, parameters, kernel, root)
    print(report.summary())
    if report.failures:
        names = ", ".join(r.name for r in report.failures)
        raise RuntimeError(f"{len(report.failures)} notebook(s) failed: {names}\n" + report.summary())
    return report


def summary_markdown(profile: str, root: Path | None = None) -> str:
    """Every Markdown table in ``results/<profile>/`` (ours beside the paper's), the paper's Tables
    1-3 first in its order, then ours (:data:`SUMMARY_ORDER`), then any other table by name."""
    results = (root or project_root()) / "results" / profile
    def rank(path: Path) -> tuple[int, str]:
        ranks = [i for i, prefix in enumerate(SUMMARY_ORDER) if path.stem.startswith(prefix)]
        return (ranks[0] if ranks else len(SUMMARY_ORDER), path.stem)

    tables = sorted(results.glob("*.md"), key=rank)
    if not tables:
        return f"No tables in {results} yet."
    return "\n\n".join(f"### {t.stem}\n\n{t.read_text().strip()}" for t in tables)


def _run(args: argparse.Namespace) -> int:
    from esg_lib.errors import UserError

    root = project_root()
    params: dict[str, Any] = {}
    if args.device:
        params["device"] = args.device
    if args.dataset:
        if not args.notebooks:   # 00_reproduce_all has no dataset of its own: each notebook picks one
            raise UserError("--dataset needs --notebooks: it replaces each named notebook's dataset "
                            "(e.g. esg reproduce --profile cpu --notebooks 03 05 06 --dataset x-sdd)")
        params["dataset"] = args.dataset
    if args.reuse_only or (args.profile in SLOW_PROFILES and not args.train_missing and not args.check):
        params["train_missing"] = False
        folders = run_folders(args.profile, root)
        if folders.none_here:
            print(f"Training nothing: the {folders.records} committed {args.profile} runs have records but no run "
                  f"folders here, so the tables and record-based figures are rebuilt and the notebooks that need "
                  f"run folders are skipped. Retraining them took {folders.recorded_hours:.1f} h when recorded "
                  f"(mostly 2-core CPU): `make reproduce PROFILE={args.profile} TRAIN=missing` "
                  f"(= `esg reproduce --profile {args.profile} --train-missing`).", flush=True)
    if args.check:   # every numbered notebook itself (00 would drop the cut-down parameters)
        root = root / "runs" / "check"
        params = {**params, **CHECK_RUN}
    if args.notebooks or args.check:
        try:
            notebooks = resolve_notebooks(args.notebooks) if args.notebooks else list(NOTEBOOKS)
        except ValueError as exc:
            raise UserError(str(exc)) from None
        report = run_notebooks(args.profile, notebooks, params, args.kernel, root)
    else:
        # the reviewer's entry point: 00_reproduce_all runs every notebook and prints the summary
        report = run_notebooks(args.profile, ["00_reproduce_all.ipynb"], params, args.kernel, root, stream=True)
    print(report.summary())
    if report.failures:
        print(f"esg reproduce: {len(report.failures)} notebook(s) failed (see above)", file=sys.stderr)
        return 1
    print(f"figures: {root / 'figures' / args.profile}\ntables:  {root / 'results' / args.profile}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "reproduce", help="execute the notebooks with papermill (tables, figures) on a profile",
        description="Execute notebooks/00_reproduce_all.ipynb (which runs every numbered notebook) with "
                    "papermill. Executed copies: runs/<profile>/notebooks/; figures: figures/<profile>/; "
                    "tables: results/<profile>/.")
    p.add_argument("--profile", choices=PROFILES, default="smoke")
    p.add_argument("--notebooks", nargs="+", metavar="NAME", help="run only these notebooks: full names or number prefixes (03 05)")
    p.add_argument("--device", help="auto, cpu, cuda or cuda:N (default: the profile's)")
    p.add_argument("--dataset", metavar="NAME",
                   help="with --notebooks: run them on this dataset (x-sdd, neu-cls-64 or a folder) instead "
                        "of each one's own (03, 05, 06 default to NEU-CLS-64 when its runs are here)")
    p.add_argument("--kernel", help=f"Jupyter kernel (default: {KERNEL} if registered, else python3)")
    p.add_argument("--reuse-only", action="store_true",
                   help="train nothing: tables and figures from the finished runs only (the default for "
                        "the cpu and paper profiles; notebooks that need run folders none of which is "
                        "here are skipped and say so)")
    p.add_argument("--train-missing", action="store_true",
                   help="cpu/paper: train the runs that are missing (hours); smoke always trains")
    p.add_argument("--check", action="store_true",
                   help="the profile's models at its image size through every notebook, cut to 1 seed, "
                        "42 X-SDD images and 1 optimiser step per run (minutes; `make test` runs it on "
                        "paper); outputs under runs/check/")
    p.set_defaults(func=_run)
