"""The executed `cpu` notebooks, readable on GitHub: docs/notebooks/cpu/ holds one Markdown page per
notebook, written by `esg reproduce --profile cpu` (issue 34 s.6). These tests keep the pages current
(each page's prose and code are its notebook's; each table and figure a notebook writes is on its page,
with the committed values and files) and clean (no absolute path, time, `PosixPath`, embedded image
or git-ignored figure), and check the renderer and where it writes on small made-up notebooks."""
from __future__ import annotations

import argparse
import ast
import inspect
import json
import math
import os
import re
import shutil
import subprocess
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from conftest import PROJECT_ROOT
from esg_lib import reproduce as RP

NOTEBOOK_DIR = PROJECT_ROOT / "notebooks"
PAGE_DIR = PROJECT_ROOT / "docs" / "notebooks" / "cpu"
ALL_NOTEBOOKS = ["00_reproduce_all.ipynb", *RP.NOTEBOOKS]
REBUILD = ("rebuild the pages: ESG_NEU_CLS_64=<your NEU-CLS-64> esg reproduce --profile cpu --reuse-only "
           "(then --notebooks 03 05 06 --dataset x-sdd for the .x-sdd pages); docs/jupyterlab.md")


def _pages_of(name: str) -> list[Path]:
    """A notebook's committed pages: its own and its `--dataset` variants (``03_model_comparison.x-sdd.md``)."""
    stem = Path(name).stem
    return sorted(p for p in PAGE_DIR.glob(f"{stem}*.md") if p.name.split(".")[0] == stem)


def _written(name: str, call: str, position: int) -> list[str]:
    """The file names a notebook's code passes to ``call`` (``save_figure``: 3rd argument,
    ``write_table``: 2nd) as regular expressions, an f-string's fields as ``(?:<dataset>|[a-z0-9-]+)``."""
    nb = nbformat.read(NOTEBOOK_DIR / name, as_version=4)
    out = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        for node in ast.walk(ast.parse(cell.source)):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == call
                    and len(node.args) > position):
                arg = node.args[position]
                parts = [arg] if isinstance(arg, ast.Constant) else arg.values
                out.append("".join(re.escape(p.value) if isinstance(p, ast.Constant) else "(?:<dataset>|[a-z0-9-]+)"
                                   for p in parts))
    return out


def _prose(name: str) -> str:
    return "\n".join(c.source for c in nbformat.read(NOTEBOOK_DIR / name, as_version=4).cells
                     if c.cell_type == "markdown")


def _page_tables(page: str) -> list[list[list[str]]]:
    """The Markdown tables inside a page's outputs, as rows of cells (header first, rule dropped)."""
    tables, rows = [], []
    for line in page.splitlines() + [""]:
        if line.startswith("|"):
            cells = [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line)[1:-1]]
            if not all(re.fullmatch(r"-+:?", c) for c in cells):
                rows.append(cells)
        elif rows:
            tables.append(rows)
            rows = []
    return tables


def _same_cell(shown: str, written: str) -> bool:
    if shown == written or {shown, written} <= {"", "nan", "NaN", "None"}:
        return True
    try:
        a, b = float(shown), float(written)
    except ValueError:
        return False
    return math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-6)


def _shows(table: list[list[str]], frame: pd.DataFrame) -> bool:
    """Whether a page table (pandas' index first) is the committed CSV's frame, cell for cell."""
    header, body = table[0], table[1:]
    if header[1:] != list(frame.columns) or len(body) != len(frame):
        return False
    return all(_same_cell(cell, str(value)) for row, (_, values) in zip(body, frame.iterrows())
               for cell, value in zip(row[1:], values))


# ------------------------------------------------------------------------------ the committed pages
@pytest.mark.parametrize("name", ALL_NOTEBOOKS)
def test_each_page_holds_its_notebooks_current_prose_and_code(name: str) -> None:
    """Edit a notebook without rerunning `esg reproduce --profile cpu` and its page goes stale: this fails."""
    pages = _pages_of(name)
    assert PAGE_DIR / RP.page_name(name) in pages, f"no page for {name}: esg reproduce --profile cpu"
    fresh = RP.page_cells(RP.render_page(NOTEBOOK_DIR / name, "cpu", PROJECT_ROOT, PAGE_DIR))
    for page in pages:
        assert RP.page_cells(page.read_text()) == fresh, (
            f"{page.relative_to(PROJECT_ROOT)} shows other prose or code than notebooks/{name}: {REBUILD}")


@pytest.mark.parametrize("name", ALL_NOTEBOOKS)
def test_each_table_and_figure_a_notebook_writes_is_on_its_page(name: str) -> None:
    pages = {p: p.read_text() for p in _pages_of(name)}
    text = "\n".join(pages.values())
    figures_dir = PROJECT_ROOT / "figures" / "cpu"
    for pattern in _written(name, "save_figure", 2):
        shown = re.findall(rf"!\[({pattern}\.png)\]\(([^)]+)\)", text)
        named = re.findall(rf"`figures/cpu/({pattern}\.png)` is not shown here: git ignores it", text)
        assert shown or named, f"{name}: no figure {pattern} on its page(s)"
        for figure, link in shown:
            assert link == f"../../../figures/cpu/{figure}" and (figures_dir / figure).is_file(), link
    tables = [t for page in pages.values() for t in _page_tables(page)]
    results = PROJECT_ROOT / "results" / "cpu"
    for pattern in _written(name, "write_table", 1):
        files = [p for p in sorted(results.glob("*.csv")) if re.fullmatch(pattern, p.stem)]
        assert files, f"{name} writes {pattern}, which results/cpu/ lacks"
        frames = [pd.read_csv(p, dtype=str, keep_default_na=False) for p in files]
        assert any(_shows(t, f) for t in tables for f in frames), \
            f"{name}: its page shows none of {[p.name for p in files]} as committed: {REBUILD}"


def test_the_summary_page_shows_every_committed_table() -> None:
    """Notebook 00 ends with every table of results/cpu/ (summary_markdown): its page must show them as committed."""
    page = (PAGE_DIR / "00_reproduce_all.md").read_text()
    assert RP.summary_markdown("cpu", PROJECT_ROOT).strip() in page, f"00_reproduce_all.md: other tables: {REBUILD}"


def test_pages_hold_nothing_of_the_machine_the_clock_or_neu_cls_64s_pictures() -> None:
    pages = sorted(PAGE_DIR.glob("*.md"))
    assert len(pages) >= len(ALL_NOTEBOOKS) + 1
    ignored = ["figures/cpu/data_samples_neu-cls-64.png", "figures/cpu/fig13_gradcam_neu-cls-64.png"]
    for page in pages:
        text = page.read_text()
        for bad in ("/work/", "/tmp/", "/home/", "/root/", "/Users/", str(PROJECT_ROOT), "PosixPath(", "data:image",
                    "widget-view", "<style"):
            assert bad not in text, f"{page.name} holds {bad!r}"
        assert not re.search(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d", text), f"{page.name} holds a timestamp"
        assert not re.search(r"\b(ok|FAILED) in \d+ s\b|\b\d+(\.\d+)? ?s/it\b|\d+it/s", text), \
            f"{page.name}: a run time"
        for link in re.findall(r"\]\(([^)#]+)\)", text):
            if not re.match(r"[a-z]+:", link):
                target = (page.parent / link).resolve()
                assert target.exists(), f"{page.name}: broken link {link}"
                rel = target.relative_to(PROJECT_ROOT).as_posix()
                assert RP._ignored_by(rel, RP._gitignore_rules(PROJECT_ROOT)) is None, f"{page.name} links {rel}"
        for rel in ignored:
            assert f"]({os.path.relpath(PROJECT_ROOT / rel, PAGE_DIR)})" not in text
    index = (PAGE_DIR / "README.md").read_text()
    assert all(f"]({p.name})" in index for p in pages if p.name != "README.md")


def test_gitignore_rules_match_git_for_the_figures() -> None:
    """The renderer reads .gitignore itself (a check run's root is no git checkout): it must agree with git."""
    if not shutil.which("git") or not (PROJECT_ROOT / ".git").exists():
        pytest.skip("no git checkout")
    paths = sorted({f"figures/cpu/{p.name}" for p in (PROJECT_ROOT / "figures" / "cpu").glob("*.png")}
                   | {"figures/cpu/data_samples_neu-cls-64.png", "figures/paper/fig13_gradcam_neu-cls-64.pdf",
                      "figures/smoke/fig07_activations.png", "runs/cpu/pages/02_activation_functions.md",
                      "docs/notebooks/cpu/02_activation_functions.md"})
    proc = subprocess.run(["git", "check-ignore", "--no-index", "--stdin"], cwd=PROJECT_ROOT, input="\n".join(paths),
                          capture_output=True, text=True)
    by_git = set(proc.stdout.split())
    rules = RP._gitignore_rules(PROJECT_ROOT)
    assert {p for p in paths if RP._ignored_by(p, rules)} == by_git
    assert "figures/cpu/data_samples_neu-cls-64.png" in by_git and "runs/cpu/pages/02_activation_functions.md" in by_git


@pytest.mark.parametrize("name", ALL_NOTEBOOKS)
def test_prose_names_the_files_the_notebook_writes(name: str) -> None:
    prose = _prose(name)
    for call, position in (("save_figure", 2), ("write_table", 1)):
        for pattern in _written(name, call, position):
            assert re.search(pattern, prose), f"{name}: its prose does not name {pattern}"
    if name != "00_reproduce_all.ipynb":
        assert f"docs/notebooks/cpu/{RP.page_name(name)}" in prose, f"{name}: its prose does not link its page"


@pytest.mark.parametrize("name", ALL_NOTEBOOKS)
def test_no_cell_echoes_a_return_value(name: str) -> None:
    """A cell's last line that is a call (save_figure returns its paths) would show the value under the
    cell: end it with ';' or assign it. display() and print() return None."""
    for cell in nbformat.read(NOTEBOOK_DIR / name, as_version=4).cells:
        if cell.cell_type != "code" or not cell.source.strip():
            continue
        last = ast.parse(cell.source).body[-1]
        if isinstance(last, ast.Expr) and isinstance(last.value, ast.Call) and not cell.source.rstrip().endswith(";"):
            func = last.value.func
            assert getattr(func, "id", getattr(func, "attr", "")) in ("display", "print"), \
                f"{name}: a cell ends with {ast.unparse(last)[:60]}, whose value it would show"


def test_the_fallback_note_is_what_write_pages_looks_for() -> None:
    """A run without NEU-CLS-64 must not overwrite the committed pages: write_pages recognises it by
    the words the notebooks use when a dataset is missing."""
    from esg_lib.experiments import main_dataset

    assert RP.MISSING_DATASET in inspect.getsource(main_dataset)
    assert RP.MISSING_DATASET in "".join(c.source for c in nbformat.read(NOTEBOOK_DIR / "01_data_overview.ipynb",
                                                                           as_version=4).cells)


# --------------------------------------------------------------------------------- the renderer
INJECTED = 'profile = "cpu"\ntrain_missing = False\ndevice = "auto"\n'
PROSE = "# Title\n\nSee [the gap](../docs/gap.md) and [paper](https://doi.org/x)."


def _executed(root: Path, outputs: list[dict], *, injected: str = INJECTED, prose: str = PROSE) -> dict:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell(prose),
                nbformat.v4.new_code_cell('profile = "smoke"\ntrain_missing = True\ndevice = "auto"',
                                          metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell(injected, metadata={"tags": ["injected-parameters"]}),
                nbformat.v4.new_code_cell("figures.save_figure(fig, d, 'x');\ntable")]
    nb.cells[3].outputs = [nbformat.from_dict(o) for o in outputs]
    return json.loads(nbformat.writes(nb))


def _outputs(root: Path) -> list[dict]:
    frame = pd.DataFrame({"model": ["ESG|ConvNeXt", "ResNet18"], "acc": [0.5, 0.25], "note": ["a < b", "—"]})
    return [
        {"output_type": "stream", "name": "stdout",
         "text": f"reusing finished run {root}/runs/cpu/x-sdd/resnet18/s0-1\n"
                 f"    ok in 21 s on X-SDD -> {root}/runs/cpu/notebooks/a.ipynb\n"},
        {"output_type": "stream", "name": "stdout", "text": "notebook                           status   seconds\n"
                                                              "01_data_overview.ipynb             ok          12.3\n"},
        {"output_type": "display_data", "metadata": {},
         "data": {"application/vnd.jupyter.widget-view+json": {"model_id": "ab", "version_major": 2},
                  "text/plain": "100%|##| 5/5 [00:03<00:00, 1.52it/s]"}},
        {"output_type": "display_data", "metadata": {"esg_lib": {"figure": "fig07_activations.png"}},
         "data": {"image/png": "iVBORw0KGgo=", "text/plain": "<IPython.core.display.Image object>"}},
        {"output_type": "display_data", "metadata": {"esg_lib": {"figure": "data_samples_neu-cls-64.png"}},
         "data": {"image/png": "iVBORw0KGgo=", "text/plain": "<IPython.core.display.Image object>"}},
        {"output_type": "display_data", "metadata": {}, "data": {"text/markdown": "**Dataset used: X-SDD**",
                                                                 "text/plain": "<Markdown>"}},
        {"output_type": "execute_result", "execution_count": 3, "metadata": {},
         "data": {"text/html": frame.to_html(), "text/plain": repr(frame)}},
    ]


def test_a_page_shows_outputs_steadily_and_its_cells_as_the_notebook(tmp_path: Path) -> None:
    folder = tmp_path / "docs" / "notebooks" / "cpu"
    nb = _executed(tmp_path, _outputs(tmp_path))
    page = RP.render_page(nb, "cpu", tmp_path, folder, "02_activation_functions.ipynb")
    assert str(tmp_path) not in page and "runs/cpu/x-sdd/resnet18/s0-1" in page
    assert "    ok on X-SDD -> runs/cpu/notebooks/a.ipynb" in page and " 21 s" not in page
    assert "01_data_overview.ipynb             ok\n" in page and "12.3" not in page and "seconds" not in page
    assert "it/s" not in page and "widget" not in page                       # the progress bar is left out
    assert "![fig07_activations.png](../../../figures/cpu/fig07_activations.png)" in page
    assert ("`figures/cpu/data_samples_neu-cls-64.png` is not shown here: git ignores it (NEU-CLS-64 has no license"
            in page)
    assert "](../../../figures/cpu/data_samples_neu-cls-64.png)" not in page and "iVBOR" not in page
    assert "**Dataset used: X-SDD**" in page
    assert "| | model | acc | note |\n|---:|---|---:|---|\n| 0 | ESG\\|ConvNeXt | 0.50 | a < b |" in page
    assert "[the gap](../../gap.md)" in page and "[paper](https://doi.org/x)" in page   # links from notebooks/ re-aimed
    # the parameters papermill changed, in the header; the defaults it repeated (device) left out
    header = page.split(RP.HEADER_END)[0]
    assert 'run with `profile = "cpu"`, `train_missing = False`.' in header and "device" not in header
    assert page.count(RP.OUTPUTS_BEGIN) == page.count(RP.OUTPUTS_END) == 1
    # its prose and code are those of the notebook without outputs (what the committed pages are checked by)
    source = json.loads(json.dumps(nb))
    source["cells"] = [c for c in source["cells"] if "injected-parameters" not in c["metadata"].get("tags", [])]
    for cell in source["cells"]:
        if cell["cell_type"] == "code":
            cell["outputs"] = []
    assert RP.page_cells(page) == RP.page_cells(RP.render_page(source, "cpu", tmp_path, folder, "x.ipynb"))
    assert RP.render_page(nb, "cpu", tmp_path, folder, "02_activation_functions.ipynb") == page   # same bytes again


def _copy(root: Path, name: str, outputs: list[dict]) -> Path:
    path = root / "runs" / "cpu" / "notebooks" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_executed(root, outputs)))
    return path


def test_write_pages_writes_the_committed_pages_only_where_no_dataset_was_missing(tmp_path: Path) -> None:
    ok = [{"output_type": "display_data", "metadata": {}, "data": {"text/markdown": "**Dataset used: NEU-CLS-64**"}}]
    _copy(tmp_path, "02_activation_functions.ipynb", ok)
    _copy(tmp_path, "07_xsdd_generalization.ipynb", [{"output_type": "error", "ename": "ValueError", "evalue": "x",
                                                      "traceback": []}])
    old = _copy(tmp_path, "08_split_protocols.ipynb", ok)
    os.utime(old, (1_000_000, 1_000_000))      # an executed copy of an earlier run: not rendered again
    done = RP.write_pages("cpu", tmp_path, since=2_000_000)
    pages = tmp_path / "docs" / "notebooks" / "cpu"
    assert done.folder == pages and not done.not_committed
    assert [p.name for p in done.pages] == ["02_activation_functions.md"]
    assert done.skipped == ["07_xsdd_generalization.ipynb (it failed)"]
    assert "[`02_activation_functions.md`](02_activation_functions.md)" in (pages / "README.md").read_text()
    before = (pages / "02_activation_functions.md").stat().st_mtime_ns
    RP.write_pages("cpu", tmp_path, since=2_000_000)
    assert (pages / "02_activation_functions.md").stat().st_mtime_ns == before   # unchanged text: not rewritten
    # a run whose notebook fell back for want of a dataset: its pages are not the committed ones
    _copy(tmp_path, "03_model_comparison.ipynb", [{"output_type": "display_data", "metadata": {}, "data": {
        "text/markdown": f"**Dataset used: X-SDD** (neu-cls-64 {RP.MISSING_DATASET}: ...)"}}])
    done = RP.write_pages("cpu", tmp_path, since=2_000_000)
    assert done.folder == tmp_path / "runs" / "cpu" / "pages" and "03_model_comparison.ipynb" in done.not_committed
    assert (done.folder / "03_model_comparison.md").is_file() and not (pages / "03_model_comparison.md").exists()
    # --dataset: the page names the dataset; a folder is not a committed page
    done = RP.write_pages("cpu", tmp_path, notebooks=["02_activation_functions.ipynb"], dataset="x-sdd")
    assert [p.name for p in done.pages] == ["02_activation_functions.x-sdd.md"] and done.folder == pages
    assert "--notebooks 02 --dataset x-sdd" in done.pages[0].read_text()
    done = RP.write_pages("cpu", tmp_path, notebooks=["02_activation_functions.ipynb"], dataset="/data/mine")
    assert done.folder == tmp_path / "runs" / "cpu" / "pages"
    assert RP.write_pages("cpu", tmp_path / "empty").pages == []             # nothing executed: nothing written
    assert not (tmp_path / "empty" / "docs").exists()


def test_esg_reproduce_renders_the_pages_of_what_it_ran(tmp_path: Path, monkeypatch) -> None:
    def run(profile, names, params, *a, **k):
        for name in names:
            _copy(tmp_path, name, [{"output_type": "display_data", "metadata": {}, "data": {"text/markdown": "hi"}}])
        return RP.ReproduceReport(profile)

    monkeypatch.setattr(RP, "project_root", lambda: tmp_path)
    monkeypatch.setattr(RP, "run_notebooks", run)
    parser = argparse.ArgumentParser()
    RP.register(parser.add_subparsers())
    for argv, page in ((["--notebooks", "03", "--dataset", "x-sdd"], "03_model_comparison.x-sdd.md"),
                       (["--notebooks", "07"], "07_xsdd_generalization.md")):
        args = parser.parse_args(["reproduce", "--profile", "cpu", *argv])
        assert args.func(args) == 0
        assert (tmp_path / "docs" / "notebooks" / "cpu" / page).is_file()
    args = parser.parse_args(["reproduce", "--profile", "smoke", "--notebooks", "02"])   # smoke: no pages
    assert args.func(args) == 0 and not (tmp_path / "docs" / "notebooks" / "smoke").exists()
