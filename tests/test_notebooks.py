"""The notebooks: committed clean, parameterised, and (on the smoke profile) executed end to end through
papermill, producing every expected figure and table."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pandas as pd
import pytest

from conftest import PROJECT_ROOT
from esg_lib.reproduce import NOTEBOOKS, resolve_notebooks, run_notebooks

NOTEBOOK_DIR = PROJECT_ROOT / "notebooks"
ALL_NOTEBOOKS = sorted(p.name for p in NOTEBOOK_DIR.glob("*.ipynb"))


def test_every_numbered_notebook_is_run_by_reproduce_all() -> None:
    assert ALL_NOTEBOOKS == ["00_reproduce_all.ipynb", *sorted(NOTEBOOKS)]


def test_notebooks_are_named_by_full_name_stem_or_number_prefix() -> None:
    assert resolve_notebooks(["03", "05_tsne", "07_xsdd_generalization.ipynb", "00"]) == [
        "03_model_comparison.ipynb", "05_tsne.ipynb", "07_xsdd_generalization.ipynb", "00_reproduce_all.ipynb"]
    with pytest.raises(ValueError, match=r"'0' \(matches 01_data_overview.ipynb.*'99' \(no such notebook\)"):
        resolve_notebooks(["0", "99", "04"])


@pytest.mark.parametrize("name", ALL_NOTEBOOKS)
def test_committed_notebook_has_no_outputs_and_a_parameters_cell(name: str) -> None:
    nb = nbformat.read(NOTEBOOK_DIR / name, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code), f"{name} carries outputs"
    tagged = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1 and code[0] is tagged[0], f"{name}: the first code cell must be the only 'parameters' cell"
    assert 'profile = "smoke"' in tagged[0].source
    assert nb.metadata["kernelspec"]["name"] == "esg-lib"


def test_a_failing_notebook_is_reported_after_the_others_ran(tmp_path: Path) -> None:
    (tmp_path / "notebooks").mkdir()
    for name, source in [("bad.ipynb", "raise ValueError('boom in bad')"), ("good.ipynb", "x = 1")]:
        nb = nbformat.v4.new_notebook()
        nb.cells = [nbformat.v4.new_code_cell('profile = "smoke"', metadata={"tags": ["parameters"]}),
                    nbformat.v4.new_code_cell(source)]
        nbformat.write(nb, tmp_path / "notebooks" / name)
    report = run_notebooks("smoke", ["bad.ipynb", "good.ipynb", "missing.ipynb"], root=tmp_path)
    status = {r.name: r.ok for r in report.results}
    assert status == {"bad.ipynb": False, "good.ipynb": True, "missing.ipynb": False}
    bad = report.failures[0]
    assert bad.error == "ValueError: boom in bad"
    assert (tmp_path / "runs" / "smoke" / "notebooks" / "good.ipynb").is_file()
    assert "FAILED bad.ipynb" in report.summary() and "no such notebook" in report.summary()
    # the sources are never overwritten
    assert not nbformat.read(tmp_path / "notebooks" / "bad.ipynb", as_version=4).cells[1].outputs


def _expected(dataset_main: str) -> tuple[list[str], dict[str, tuple[int, list[str]]]]:
    figures = ["fig07_activations", "data_samples_x-sdd", "data_counts_x-sdd",
               f"fig09_val_accuracy_{dataset_main}", f"fig10_confusion_{dataset_main}",
               f"fig11_ablation_curves_{dataset_main}", f"fig12_tsne_{dataset_main}",
               f"fig13_gradcam_{dataset_main}", "fig15_val_accuracy_x-sdd", "protocols_x-sdd"]
    paper_cols = ["model", "params (M)", "n seeds", "Acc ours", "Acc paper", "F1 ours", "F1 paper"]
    tables = {  # name -> (rows, required columns)
        f"table1_{dataset_main}": (9, paper_cols),
        f"table2_{dataset_main}": (5, paper_cols),
        "table3_x-sdd": (9, paper_cols),
        "paired_differences_x-sdd": (8, ["reference", "seeds", "acc difference (points)", "95% interval",
                                         "within noise"]),
        "protocols_x-sdd": (2, ["model", "leak-free", "augment-then-group-split", "augment-then-split",
                                "leak (points)", "augmented test (points)"]),
        "leak_audit_x-sdd": (3, ["protocol", "test_items", "test_leaked"]),
    }
    return figures, tables


@pytest.mark.notebooks
@pytest.mark.slow
def test_reproduce_all_on_the_smoke_profile_makes_every_figure_and_table() -> None:
    """``esg reproduce`` runs 00_reproduce_all, which runs every notebook; then check the outputs."""
    from esg_lib.experiments import main_dataset

    proc = subprocess.run([sys.executable, "-m", "esg_lib", "reproduce", "--profile", "smoke", "--device", "cpu"],
                          cwd=PROJECT_ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    executed = PROJECT_ROOT / "runs" / "smoke" / "notebooks"
    assert sorted(p.name for p in executed.glob("*.ipynb")) == ALL_NOTEBOOKS

    figures, tables = _expected(main_dataset("neu-cls-64")[0])
    for name in figures:
        for suffix in (".png", ".pdf"):
            path = PROJECT_ROOT / "figures" / "smoke" / f"{name}{suffix}"
            assert path.is_file() and path.stat().st_size > 5000, path
    for name, (rows, columns) in tables.items():
        frame = pd.read_csv(PROJECT_ROOT / "results" / "smoke" / f"{name}.csv")
        assert len(frame) == rows, (name, frame)
        assert set(columns) <= set(frame.columns), (name, list(frame.columns))
        assert (PROJECT_ROOT / "results" / "smoke" / f"{name}.md").read_text().count("\n|") >= rows + 1
    summary = json.loads((executed / "00_reproduce_all.ipynb").read_text())
    text = "".join("".join(o.get("text", "")) + json.dumps(o.get("data", {}))
                   for c in summary["cells"] for o in c.get("outputs", []))
    assert "table3_x-sdd" in text and "paper" in text
