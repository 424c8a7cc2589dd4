"""Run the numbered notebooks with papermill: ``esg reproduce``, ``make reproduce`` and
``notebooks/00_reproduce_all.ipynb`` all end up here.

Each notebook runs in its own papermill subprocess (papermill inside a running kernel has hit "event
loop is already running"), with the same parameters, the project's kernel and ``notebooks/`` as its
working directory. Executed copies go to ``runs/<profile>/notebooks/`` (never over the sources); on
the ``cpu`` and ``paper`` profiles ``esg reproduce`` also renders them as Markdown pages in
``docs/notebooks/<profile>/`` (:func:`write_pages`), which GitHub shows with their tables and figures. A
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

from esg_lib import store
from esg_lib.profiles import NOTEBOOK_PROFILES

__all__ = ["NOTEBOOKS", "NOTEBOOK_PROFILES", "CHECK_RUN", "NotebookResult", "run_notebooks", "run_all", "project_root",
           "checkout", "kernel_name", "summary_markdown", "resolve_notebooks", "register", "PAGE_PROFILES",
           "render_page", "page_cells", "page_name", "write_pages"]

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
    """How many of the profile's record files have a run's files here (:func:`esg_lib.store.find_run_files`),
    and the recorded hours of those that have none. Only file names and seconds are read: whether a
    record is usable is the report's to say."""
    root = Path(root) if root else project_root()
    records = store.record_files(store.results_root(root), profile)
    have, hours = 0, 0.0
    for path in records:
        name = store.parse_record_name(path)
        if name and store.find_run_files(root, profile, *name):
            have += 1
        else:
            hours += _recorded_hours(path)
    return RunFolders(len(records), have, hours)


def _recorded_hours(path: Path) -> float:
    """A record's training hours; 0 for a record that cannot be read."""
    try:
        rec = json.loads(path.read_text())
        # a resumed run's wall time covers only its last process; its training seconds all of them
        return max(float(rec.get("wall_seconds") or 0.0), float(rec.get("train_seconds") or 0.0)) / 3600.0
    except (OSError, ValueError, TypeError, AttributeError):
        return 0.0


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
    if profile not in NOTEBOOK_PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose from {', '.join(NOTEBOOK_PROFILES)}")
    root = Path(root) if root else project_root()
    # the sources: the root's own notebooks/ when it has them (tests), else the checkout's
    source_dir = root / "notebooks" if (root / "notebooks").is_dir() else checkout() / "notebooks"
    out_dir = store.run_root(store.runs_root(root), profile) / "notebooks"
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
    results = store.profile_dir(store.results_root(root or project_root()), profile)
    def rank(path: Path) -> tuple[int, str]:
        ranks = [i for i, prefix in enumerate(SUMMARY_ORDER) if path.stem.startswith(prefix)]
        return (ranks[0] if ranks else len(SUMMARY_ORDER), path.stem)

    tables = sorted(results.glob("*.md"), key=rank)
    if not tables:
        return f"No tables in {results} yet."
    return "\n\n".join(f"### {t.stem}\n\n{t.read_text().strip()}" for t in tables)


# ------------------------------------------------------------------------------------ rendered pages
# `esg reproduce` on a profile whose outputs are committed also renders each executed notebook as a
# Markdown page, docs/notebooks/<profile>/<notebook>.md (a `--dataset NAME` run: <notebook>.NAME.md),
# so that a reader on GitHub sees its tables and figures without running anything (the committed
# notebooks carry no outputs: nbstripout). A page holds the notebook's prose and code as they ran and
# its outputs, made steady: a figure is a link to figures/<profile>/ (never a copy, and never one that
# git ignores: NEU-CLS-64's pictures have no license), a table is a Markdown table, and no absolute
# path, run time or progress bar is kept, so a rebuild on the same records rewrites the same bytes.
PAGE_PROFILES = frozenset({"cpu", "paper"})
PAGES = Path("docs") / "notebooks"
# A notebook whose dataset is missing falls back and says so in these words (esg_lib.experiments'
# main_dataset, notebook 01): such a run shows other outputs than the committed pages, so its pages
# go to runs/<profile>/pages/ (git-ignored) and a clone without NEU-CLS-64 leaves git clean.
MISSING_DATASET = "is not available here"
HEADER_END = "<!-- notebook -->"          # the generated header ends here, the notebook's cells follow
OUTPUTS_BEGIN, OUTPUTS_END = "<!-- outputs -->", "<!-- /outputs -->"   # around each code cell's outputs
_WIDGET = "application/vnd.jupyter.widget-view+json"
_TIMES = [(re.compile(r"\b(ok|FAILED) in \d+ s\b"), r"\1"),                    # run_notebooks' progress lines
          (re.compile(r"^(notebook +status) +seconds$", re.M), r"\1"),         # ReproduceReport.summary()
          (re.compile(r"^(\S+\.ipynb +(?:ok|skipped|FAILED)) +\d+\.\d+$", re.M), r"\1")]


@dataclass
class Pages:
    """What :func:`write_pages` did: the folder, the pages it wrote or found unchanged, and why the
    folder is not the committed one (empty when it is)."""
    folder: Path
    pages: list[Path] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)   # executed copies not rendered, with the reason
    not_committed: str = ""


def _gitignore_rules(checkout_dir: Path) -> list[tuple[str, str]]:
    """``(pattern, reason)`` for each pattern of the checkout's ``.gitignore``; the reason is the
    comment block above it."""
    rules: list[tuple[str, str]] = []
    comment: list[str] = []
    try:
        lines = (checkout_dir / ".gitignore").read_text().splitlines()
    except OSError:
        return []
    after_pattern = False
    for line in map(str.strip, lines):
        if line.startswith("#"):
            comment = [] if after_pattern else comment
            comment.append(line.lstrip("# "))
            after_pattern = False
        elif line and not line.startswith("!"):
            rules.append((line, " ".join(comment)))
            after_pattern = True
        else:
            comment, after_pattern = [], False
    return rules


def _ignored_by(rel: str, rules: list[tuple[str, str]]) -> str | None:
    """The reason a path (relative to the checkout, ``/``-separated) is git-ignored, else ``None``
    (``.gitignore``'s plain and anchored globs; this repository uses no negations)."""
    from fnmatch import fnmatchcase

    for pattern, reason in rules:
        bare = pattern.strip("/")
        if "/" in pattern.rstrip("/"):   # anchored at the root
            hit = fnmatchcase(rel, bare) or rel.startswith(bare + "/")
        else:                            # any component
            parts = rel.split("/")
            hit = any(fnmatchcase(p, bare) for p in parts)
        if hit:
            return reason or pattern
    return None


def _params(source: str) -> dict[str, tuple[Any, str]]:
    """``name -> (value, source text)`` of a parameters cell's literal assignments."""
    import ast

    out = {}
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return out
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            try:
                out[node.targets[0].id] = (ast.literal_eval(node.value), ast.get_source_segment(source, node))
            except ValueError:
                pass
    return out


def _source(cell: dict) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def _text(value: Any) -> str:
    return "".join(value) if isinstance(value, list) else str(value)


class _HtmlTables:
    """The tables of an HTML fragment (pandas' ``to_html``) as header and body rows of cell texts;
    ``simple`` is False where a cell spans rows or columns (then the HTML is kept)."""

    def __init__(self, html: str) -> None:
        from html.parser import HTMLParser

        self.tables: list[dict[str, list[list[str]]]] = []
        self.simple = True
        tables, state = self.tables, {"row": None, "cell": None, "part": "body"}
        outer = self

        class Parser(HTMLParser):
            def handle_starttag(self, tag, attrs):
                if tag == "table":
                    tables.append({"head": [], "body": []})
                elif tag in ("thead", "tbody") and tables:
                    state["part"] = "head" if tag == "thead" else "body"
                elif tag == "tr" and tables:
                    state["row"] = []
                elif tag in ("th", "td") and state["row"] is not None:
                    outer.simple &= not any(k in ("colspan", "rowspan") for k, _ in attrs)
                    state["cell"] = []

            def handle_endtag(self, tag):
                if tag in ("th", "td") and state["cell"] is not None:
                    state["row"].append(" ".join("".join(state["cell"]).split()))
                    state["cell"] = None
                elif tag == "tr" and state["row"] is not None:
                    tables[-1][state["part"]].append(state["row"])
                    state["row"] = None
                elif tag in ("thead", "tbody"):
                    state["part"] = "body"

            def handle_data(self, data):
                if state["cell"] is not None:
                    state["cell"].append(data)

        Parser(convert_charrefs=True).feed(html)

    def markdown(self) -> str | None:
        """Every table as a GitHub Markdown table (numeric columns right-aligned), or ``None`` when
        one has no single header row of the body's width."""
        from esg_lib.markdown import markdown_rows

        if not self.tables or not self.simple:
            return None
        out = []
        for table in self.tables:
            head, body = table["head"], table["body"]
            if len(head) != 1 or any(len(row) != len(head[0]) for row in body):
                return None

            def number(cell: str) -> bool:
                try:
                    float(cell)
                    return True
                except ValueError:
                    return False
            align = "".join("r" if body and all(number(row[i]) for row in body) else "l" for i in range(len(head[0])))
            escape = lambda cells: [c.replace("|", "\\|") for c in cells]   # noqa: E731
            out.append(markdown_rows(escape(head[0]), (escape(r) for r in body), align))
        return "\n\n".join(out)


class _PageRenderer:
    """One executed notebook as a Markdown page in ``folder`` (see :func:`render_page`)."""

    def __init__(self, profile: str, root: Path, folder: Path) -> None:
        self.profile, self.root, self.folder = profile, Path(root), Path(folder)
        self.rules = _gitignore_rules(checkout())
        self.prefixes = sorted({str(p) for base in (self.root, checkout()) for p in (base, base.resolve())},
                               key=len, reverse=True)

    def link(self, rel: str) -> str:
        """A root-relative path as seen from the page's folder."""
        return Path(os.path.relpath(self.root / rel, self.folder)).as_posix()

    def steady(self, text: str) -> str:
        """``text`` without this machine's absolute paths (the root's become relative, the home
        folder ``~``) and without run times."""
        for prefix in self.prefixes:
            text = re.sub(re.escape(prefix) + r"(?![\w.-])", ".", text.replace(prefix + os.sep, ""))
        home = str(Path.home())
        if len(home) > 1:
            text = text.replace(home + os.sep, "~/")
        for pattern, repl in _TIMES:
            text = pattern.sub(repl, text)
        return text

    def prose(self, source: str) -> str:
        """A Markdown cell, its relative links (written from ``notebooks/``) pointing from the page."""
        def relink(m: re.Match) -> str:
            target = m.group(2)
            if re.match(r"^([a-z][a-z0-9+.-]*:|#|/)", target):
                return m.group(0)
            moved = os.path.relpath(os.path.normpath(self.root / "notebooks" / target), self.folder)
            return f"{m.group(1)}({Path(moved).as_posix()})"
        return re.sub(r"(\]\s?)\(([^)\s]+)\)", relink, source)

    @staticmethod
    def fence(text: str, lang: str = "text") -> str:
        ticks = "```"
        while ticks in text:
            ticks += "`"
        return f"{ticks}{lang}\n{text.rstrip()}\n{ticks}"

    def figure(self, name: str) -> str:
        rel = f"figures/{self.profile}/{name}"
        why = _ignored_by(rel, self.rules)
        if why:
            return f"*`{rel}` is not shown here: git ignores it ({why.rstrip('.')}).*"
        return f"![{name}]({self.link(rel)})"

    def outputs(self, cell: dict) -> list[str]:
        parts: list[str] = []
        stream: list[str] = []

        def flush() -> None:
            text = self.steady("".join(stream)).strip("\n")
            if text.strip():
                parts.append(self.fence(text))
            stream.clear()

        for out in cell.get("outputs", []):
            kind = out.get("output_type")
            if kind == "stream":
                stream.append(_text(out.get("text", "")))
                continue
            flush()
            if kind == "error":
                parts.append(self.fence(self.steady(f"{out.get('ename')}: {out.get('evalue')}")))
                continue
            data, meta = out.get("data", {}), out.get("metadata", {})
            if _WIDGET in data:          # a progress bar: its text form holds times
                continue
            if any(k.startswith("image/") for k in data):
                name = meta.get("esg_lib", {}).get("figure")
                parts.append(self.figure(name) if name else
                             "*An image that is no saved figure: not shown here (save it with "
                             "`esg_lib.figures.save_figure`).*")
            elif "text/markdown" in data:
                parts.append(self.steady(_text(data["text/markdown"])).strip())
            elif "text/html" in data:
                html = self.steady(_text(data["text/html"]))
                table = _HtmlTables(html).markdown()
                parts.append(table if table is not None else
                             re.sub(r"<style[^>]*>.*?</style>\s*", "", html, flags=re.S).strip())
            elif "text/plain" in data:
                parts.append(self.fence(self.steady(_text(data["text/plain"]))))
        flush()
        return [p for p in parts if p]

    def render(self, nb: dict, name: str, command: str) -> str:
        cells = nb.get("cells", [])
        tags = lambda c: c.get("metadata", {}).get("tags", [])   # noqa: E731
        defaults = next((_params(_source(c)) for c in cells if "parameters" in tags(c)), {})
        given = next((_params(_source(c)) for c in cells if "injected-parameters" in tags(c)), {})
        changed = [text for key, (value, text) in given.items()
                   if key not in defaults or defaults[key][0] != value]
        source = f"notebooks/{name}"
        header = [f"<!-- Generated by `{command}` from {source}: edit the notebook, not this page. -->",
                  f"> **Executed copy** of [`{source}`]({self.link(source)})"
                  + (f", run with {', '.join(f'`{t}`' for t in changed)}" if changed else "")
                  + f". Its figures are in [`figures/{self.profile}/`]({self.link(f'figures/{self.profile}')}), "
                  f"its tables in [`results/{self.profile}/`]({self.link(f'results/{self.profile}')}); "
                  f"all pages: [README.md](README.md). To run it yourself: `{command}`, or `make lab`.",
                  HEADER_END]
        body = []
        for cell in cells:
            if "injected-parameters" in tags(cell):
                continue
            if cell.get("cell_type") == "markdown":
                body.append(self.prose(_source(cell)).strip())
            elif cell.get("cell_type") == "code":
                body.append(self.fence(_source(cell), "python"))
                outputs = self.outputs(cell)
                if outputs:
                    body.append("\n\n".join([OUTPUTS_BEGIN, *outputs, OUTPUTS_END]))
        return "\n".join(header) + "\n\n" + "\n\n".join(b for b in body if b) + "\n"


def render_page(notebook: Path | dict, profile: str, root: Path | None = None, folder: Path | None = None,
                name: str | None = None, command: str | None = None) -> str:
    """The Markdown page of an executed notebook (a path or its JSON): its prose and code, and each
    code cell's outputs between :data:`OUTPUTS_BEGIN` and :data:`OUTPUTS_END`, made steady (figures
    linked from ``figures/<profile>/`` as seen from ``folder``, tables in Markdown, no absolute
    paths, run times or progress bars). A notebook without outputs gives the page's prose and code
    only (:func:`page_cells` of the two must agree)."""
    root = Path(root) if root else project_root()
    nb = json.loads(Path(notebook).read_text(encoding="utf-8")) if isinstance(notebook, (str, Path)) else notebook
    name = name or (Path(notebook).name if isinstance(notebook, (str, Path)) else "notebook.ipynb")
    folder = Path(folder) if folder else root / PAGES / profile
    return _PageRenderer(profile, root, folder).render(nb, name, command or f"esg reproduce --profile {profile}")


def page_cells(page: str) -> str:
    """A page's prose and code: without its generated header and its cells' outputs."""
    body = page.split(HEADER_END, 1)[-1]
    return re.sub(rf"\n*{re.escape(OUTPUTS_BEGIN)}\n.*?{re.escape(OUTPUTS_END)}", "", body, flags=re.S).strip() + "\n"


def page_name(notebook: str, dataset: str | None = None) -> str:
    """``03_model_comparison.md``, or ``03_model_comparison.x-sdd.md`` for a ``--dataset x-sdd`` run."""
    return Path(notebook).stem + (f".{Path(dataset).name}" if dataset else "") + ".md"


def _index(folder: Path, profile: str) -> str:
    rows = []
    for page in sorted(p for p in folder.glob("*.md") if p.name != "README.md"):
        stem = page.name.split(".")[0]
        what = NOTEBOOKS.get(f"{stem}.ipynb", "runs every notebook, then shows every table beside the paper's")
        used = _DATASET_USED.search(page.read_text(encoding="utf-8"))
        rows.append(f"| [`{page.name}`]({page.name}) | {used.group(1) if used else ''} | {what} |")
    return (f"# The notebooks, executed on the `{profile}` profile\n\n"
            f"Each page is one notebook of [`notebooks/`](../../../notebooks) as `esg reproduce --profile {profile}` "
            f"(= `make reproduce PROFILE={profile}`) executed it: its prose, its code and its outputs, with the "
            f"tables written out and the figures shown from [`figures/{profile}/`](../../../figures/{profile}). The "
            "pages are rewritten by that command (only where every dataset the notebooks ask for is present; "
            "a run without NEU-CLS-64 writes its pages to `runs/" + profile + "/pages/`, which git ignores) and "
            "checked against the notebooks by `tests/test_notebook_pages.py`. A figure that shows NEU-CLS-64's "
            "pictures is git-ignored (the dataset has no license) and is named, not shown. Pages named "
            "`<notebook>.x-sdd.md` come from `esg reproduce --profile " + profile + " --notebooks 03 05 06 "
            "--dataset x-sdd`.\n\n"
            "| page | dataset used (where the notebook chooses) | what the notebook shows |\n|---|---|---|\n"
            + "\n".join(rows) + "\n")


def write_pages(profile: str, root: Path | None = None, since: float | None = None,
                dataset: str | None = None, notebooks: Sequence[str] | None = None) -> Pages:
    """Render the executed copies in ``runs/<profile>/notebooks/`` (those written at or after
    ``since``, a ``time.time()``; of ``notebooks`` when given) as pages in ``docs/notebooks/<profile>/``
    with an index ``README.md``. A copy with an error is not rendered (its page stays as it was). When
    a copy says a dataset was missing, or ``dataset`` is a folder, the pages go to
    ``runs/<profile>/pages/`` instead: they are not the committed ones."""
    root = Path(root) if root else project_root()
    executed = store.run_root(store.runs_root(root), profile) / "notebooks"
    names = list(notebooks) if notebooks else ["00_reproduce_all.ipynb", *NOTEBOOKS]
    copies = {}
    for name in names:
        path = executed / name
        if path.is_file() and (since is None or path.stat().st_mtime >= since - 1.0):
            copies[name] = json.loads(path.read_text(encoding="utf-8"))
    folder = root / PAGES / profile
    result = Pages(folder)
    if not copies:
        return result
    outputs = {n: json.dumps([c.get("outputs", []) for c in nb.get("cells", [])], ensure_ascii=False)
               for n, nb in copies.items()}
    missing = [n for n, text in outputs.items() if MISSING_DATASET in text]
    if missing:
        result.not_committed = (f"{', '.join(missing)} ran without a dataset the committed pages show "
                                f"('{MISSING_DATASET}')")
    elif dataset and not re.fullmatch(r"[a-z0-9][a-z0-9-]*", dataset):
        result.not_committed = f"--dataset {dataset} is a folder, not a known dataset"
    if result.not_committed:
        folder = result.folder = store.run_root(store.runs_root(root), profile) / "pages"
    folder.mkdir(parents=True, exist_ok=True)
    renderer = _PageRenderer(profile, root, folder)
    for name, nb in copies.items():
        if any(o.get("output_type") == "error" for c in nb.get("cells", []) for o in c.get("outputs", [])):
            result.skipped.append(f"{name} (it failed)")
            continue
        command = f"esg reproduce --profile {profile}"
        if dataset:
            command += f" --notebooks {name[:2]} --dataset {dataset}"
        page = folder / page_name(name, dataset)
        _write_if_changed(page, renderer.render(nb, name, command))
        result.pages.append(page)
    _write_if_changed(folder / "README.md", _index(folder, profile))
    return result


def _write_if_changed(path: Path, text: str) -> None:
    """Write ``text`` unless the file already holds it (through a temporary file, then a rename)."""
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        return
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


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
        root = store.runs_root(root) / "check"
        params = {**params, **CHECK_RUN}
    start = time.time()
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
    pages = None
    if args.profile in PAGE_PROFILES and not args.check:   # the executed copies as pages a reader sees on GitHub
        pages = write_pages(args.profile, root, since=start, dataset=args.dataset)
        for why in pages.skipped:
            print(f"no page for {why}", flush=True)
        if pages.not_committed:
            print(f"pages written to {pages.folder}, not docs/notebooks/{args.profile}/: {pages.not_committed} "
                  f"(`esg data fetch neu-cls-64`, then rerun, rebuilds the committed pages)", flush=True)
    if report.failures:
        print(f"esg reproduce: {len(report.failures)} notebook(s) failed (see above)", file=sys.stderr)
        return 1
    print(f"figures: {root / 'figures' / args.profile}\ntables:  {store.profile_dir(store.results_root(root), args.profile)}")
    if pages and pages.pages:
        print(f"pages:   {pages.folder} ({len(pages.pages)} executed notebooks)")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "reproduce", help="execute the notebooks with papermill (tables, figures) on a profile",
        description="Execute notebooks/00_reproduce_all.ipynb (which runs every numbered notebook) with "
                    "papermill. Executed copies: runs/<profile>/notebooks/; figures: figures/<profile>/; "
                    "tables: results/<profile>/; for cpu and paper, the executed copies rendered as Markdown "
                    "pages: docs/notebooks/<profile>/ (runs/<profile>/pages/ where a dataset was missing).")
    p.add_argument("--profile", choices=NOTEBOOK_PROFILES, default="smoke")
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
