"""The notebooks: committed clean, parameterised, and (on the smoke profile) executed end to end through
papermill, producing every expected figure and table."""
from __future__ import annotations

import base64
import copy
import json
import re
import runpy
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import nbformat
import numpy as np
import pandas as pd
import pytest

from conftest import PROJECT_ROOT
from esg_lib.reproduce import CHECK_RUN, NOTEBOOKS, resolve_notebooks, run_notebooks

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


def _as_run_in_the_lab(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """``nb`` as JupyterLab saves it after "Run all": outputs (text, image, progress widget), execution
    counts and timing, the kernel's language_info, the trusted flag and the widget state."""
    nb = copy.deepcopy(nb)
    for count, cell in enumerate((c for c in nb.cells if c.cell_type == "code"), 1):
        cell.execution_count = count
        cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="test: acc 0.5\n"),
                        nbformat.v4.new_output("display_data", data={"image/png": "iVBORw0KGgo=", "text/plain": "<Figure>"}),
                        nbformat.v4.new_output("display_data", data={
                            "application/vnd.jupyter.widget-view+json": {"model_id": "abc", "version_major": 2}})]
        cell.metadata.update(trusted=True, execution={"iopub.execute_input": "2026-11-29T08:00:00Z"})
    nb.metadata.language_info = {"codemirror_mode": {"name": "ipython", "version": 3}, "file_extension": ".py",
                                 "mimetype": "text/x-python", "name": "python", "nbconvert_exporter": "python",
                                 "pygments_lexer": "ipython3", "version": "3.11.9"}
    nb.metadata.widgets = {"application/vnd.jupyter.widget-state+json": {"state": {}, "version_major": 2}}
    return nb


def test_a_notebook_run_in_the_lab_is_saved_and_committed_exactly_as_committed(tmp_path: Path) -> None:
    """Executed outputs never reach git, and ``git status`` stays clean after "Run all": the lab's
    pre-save hook (``.jupyter/``, used by ``make lab``) and the git filter (``.gitattributes``, set
    up by ``make install`` with the Makefile's keys) both give back the committed bytes."""
    config = runpy.run_path(str(PROJECT_ROOT / ".jupyter" / "jupyter_server_config.py"),
                            init_globals={"get_config": lambda: SimpleNamespace(ContentsManager=SimpleNamespace())})
    manager = SimpleNamespace(_get_os_path=lambda path: str(NOTEBOOK_DIR / path))
    makefile = (PROJECT_ROOT / "Makefile").read_text()
    keys = re.search(r"^NB_EXTRA_KEYS := ((?:.*\\\n)*.*)$", makefile, re.M).group(1).replace("\\\n", " ").split()
    assert set(keys) <= set(config["STRIP_KEYS"])   # the same stripping in the lab and in git
    for name in ALL_NOTEBOOKS:
        committed = (NOTEBOOK_DIR / name).read_text()
        executed = _as_run_in_the_lab(nbformat.reads(committed, as_version=4))
        model = {"type": "notebook", "content": json.loads(nbformat.writes(executed))}   # the server's plain dict
        config["strip_tracked_notebook"](model=model, path=name, contents_manager=manager)
        assert nbformat.writes(model["content"]) + "\n" == committed, f"{name}: the lab would save it changed"
        (tmp_path / name).write_text(nbformat.writes(executed))
        cleaned = subprocess.run([sys.executable, "-m", "nbstripout", "--keep-id", "--extra-keys", " ".join(keys),
                                  "-t", str(tmp_path / name)], cwd=tmp_path, capture_output=True, text=True, check=True)
        assert cleaned.stdout == committed, f"{name}: the git filter would commit it changed"
    # a notebook elsewhere (an executed copy under runs/) keeps its outputs
    model = {"type": "notebook", "content": json.loads(nbformat.writes(executed))}
    other = SimpleNamespace(_get_os_path=lambda path: str(PROJECT_ROOT / "runs" / "smoke" / "notebooks" / path))
    config["strip_tracked_notebook"](model=model, path=name, contents_manager=other)
    assert all(c["outputs"] for c in model["content"]["cells"] if c["cell_type"] == "code")
    attributes = (PROJECT_ROOT / ".gitattributes").read_text()
    assert re.search(r"^\*\.ipynb filter=nbstripout diff=ipynb$", attributes, re.M)
    assert "git config filter.nbstripout.clean" in makefile and re.search(r"^install: .*git-filter", makefile, re.M)


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
    figures = ["fig07_activations", "network_stages", "data_samples_x-sdd", "data_counts_x-sdd",
               f"fig10_confusion_{dataset_main}",
               f"fig11_ablation_curves_{dataset_main}", f"fig12_tsne_{dataset_main}",
               f"fig13_gradcam_{dataset_main}", "fig15_val_accuracy_x-sdd", "protocols_x-sdd",
               "accuracy_cost_x-sdd", "paired_differences", "ablation_x-sdd", "per_class_recall_x-sdd"]
    if dataset_main == "neu-cls-64":   # on X-SDD the curves of notebook 03's runs are Fig. 15, not Fig. 9
        figures.append("fig09_val_accuracy_neu-cls-64")
    paper_cols = ["model", "params (M)", "n seeds", "Acc ours", "Acc paper", "F1 ours", "F1 paper"]
    # beside X-SDD runs the NEU-CLS-64 paper columns of Tables 1 and 2 say whose they are
    neu_cols = paper_cols if dataset_main == "neu-cls-64" else [
        c + " (NEU-CLS-64)" if c.endswith(" paper") else c for c in paper_cols]
    tables = {  # name -> (rows, required columns)
        f"table1_{dataset_main}": (9, neu_cols),
        f"table2_{dataset_main}": (5, neu_cols),
        "table3_x-sdd": (9, paper_cols),
        "paired_differences_x-sdd": (8, ["reference", "seeds", "acc difference (points)", "95% interval",
                                         "within noise"]),
        "protocols_x-sdd": (2, ["model", "leak-free", "augment-then-group-split", "augment-then-split",
                                "leak (points)", "augmented test (points)"]),
        "leak_audit_x-sdd": (3, ["protocol", "test_items", "test_leaked"]),
    }
    return figures, tables


@pytest.fixture(scope="module")
def smoke_reproduced() -> Path:
    """``esg reproduce --profile smoke`` (00_reproduce_all, which runs every notebook), once for the
    tests below: the folder of papermill's executed copies."""
    proc = subprocess.run([sys.executable, "-m", "esg_lib", "reproduce", "--profile", "smoke", "--device", "cpu"],
                          cwd=PROJECT_ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return PROJECT_ROOT / "runs" / "smoke" / "notebooks"


@pytest.mark.notebooks
@pytest.mark.slow
def test_reproduce_all_on_the_smoke_profile_makes_every_figure_and_table(smoke_reproduced: Path) -> None:
    from esg_lib.experiments import main_dataset

    executed = smoke_reproduced
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


def _outputs(cell: dict) -> list[dict]:
    return cell.get("outputs", [])


@pytest.mark.notebooks
@pytest.mark.slow
def test_executed_smoke_notebooks_show_every_saved_figure_and_one_bar_per_run(smoke_reproduced: Path) -> None:
    """What a reader of the executed copies (and of JupyterLab) sees: every figure a cell saves is also
    an image in that cell, pixel for pixel the PNG in figures/; training shows one widget bar per
    run and one summary line, no line per epoch; tqdm finds ipywidgets (no TqdmWarning)."""
    shown: dict[str, bytes] = {}
    bars = summaries = reused = 0
    for path in sorted(smoke_reproduced.glob("*.ipynb")):
        for cell in json.loads(path.read_text())["cells"]:
            if cell["cell_type"] != "code":
                continue
            images = [o for o in _outputs(cell) if "image/png" in o.get("data", {})]
            # (a cell may save conditionally, e.g. notebook 03 draws no Fig. 9 on X-SDD: what counts
            # is that every figure the run saved is shown, checked against _expected below)
            for out in images:
                name = out.get("metadata", {}).get("esg_lib", {}).get("figure")
                assert name, f"{path.name}: an image that is no saved figure"
                shown[name] = base64.b64decode(out["data"]["image/png"])
            text = "".join("".join(o.get("text", "")) for o in _outputs(cell) if o["output_type"] == "stream")
            assert "TqdmWarning" not in text and "IProgress not found" not in text, path.name
            assert not re.search(r"^epoch \d+:", text, re.M), f"{path.name}: a line per epoch in a notebook"
            echoed = "".join("".join(o.get("data", {}).get("text/plain", "")) for o in _outputs(cell)
                             if o["output_type"] == "execute_result")
            assert "PosixPath(" not in echoed, f"{path.name}: a cell shows the paths a call returned"
            bars += sum("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in _outputs(cell))
            summaries += len(re.findall(r"^test: acc ", text, re.M))
            reused += len(re.findall(r"^reusing finished run ", text, re.M))
    # each trained run: its bar and its one summary line (a rerun reuses runs: one line each)
    assert bars == summaries and bars + reused > 0, (bars, summaries, reused)
    from esg_lib.experiments import main_dataset

    assert {f"{name}.png" for name in _expected(main_dataset("neu-cls-64")[0])[0]} <= set(shown)
    figures_dir = PROJECT_ROOT / "figures" / "smoke"
    for name, png in shown.items():
        assert png == (figures_dir / name).read_bytes(), f"{name}: the cell shows another image than the file"


# Every notebook 00_reproduce_all runs, on the paper profile's own choices (all 9 models trained at
# 224 px with ViT-B/16 and Swin-T window 7; t-SNE of their features; Grad-CAM at 224 px; the ablation
# rows and split protocols at 224 px; the records overview of what they wrote), cut down by
# CHECK_RUN. The same list as `esg reproduce --profile paper --check`.
PAPER_CHECK_NOTEBOOKS = list(NOTEBOOKS)


@pytest.mark.notebooks
@pytest.mark.slow
def test_the_paper_profile_goes_through_the_notebooks_at_224_px(tmp_path: Path) -> None:
    """The reduced `paper` run (:data:`CHECK_RUN`: 1 seed, 42 X-SDD images, 1 step per run): the
    paper's architectures at 224 px through training, tables, t-SNE and Grad-CAM, written under
    ``tmp_path`` (never over the committed ``figures/paper`` and ``results/paper``)."""
    from esg_lib.engine.config import COMPARISON
    from esg_lib.experiments import ABLATION_MODELS

    report = run_notebooks("paper", PAPER_CHECK_NOTEBOOKS, {**CHECK_RUN, "device": "cpu"}, root=tmp_path)
    assert not report.failures, report.summary()
    folders = {p.parent: json.loads(p.read_text()) for p in (tmp_path / "runs" / "paper" / "x-sdd").rglob("config.json")}
    configs_all = list(folders.values())
    runs = {c["config"]["model"]: folder for folder, c in folders.items()
            if c["config"]["protocol"] == "leak-free" and c["config"]["model"] in COMPARISON}
    assert set(runs) == set(COMPARISON)
    # notebook 04: the ablation rows (row 5 is the full network); notebook 08: the other two split
    # protocols, all at 224 px
    assert {c["config"]["model"] for c in configs_all} >= set(ABLATION_MODELS)
    assert {c["config"]["protocol"] for c in configs_all} == {"leak-free", "augment-then-split",
                                                              "augment-then-group-split"}
    configs = {key: json.loads((folder / "config.json").read_text()) for key, folder in runs.items()}
    assert {c["config"]["img_size"] for c in configs.values()} == {224}
    assert configs["vit"]["model_spec"]["name"] == "vit_base_patch16_224"
    # Swin-T at 224 px is timm's own window-7 model (no size overrides, unlike the 64-px profiles)
    assert configs["swin-t"]["model_spec"]["name"] == "swin_tiny_patch4_window7_224"
    assert not configs["swin-t"]["model_spec"]["kwargs"]
    assert np.load(runs["vit"] / "test_features.npz")["features"].shape[1] == 768   # ViT-B's width
    for folder in runs.values():   # keep_last=False: the resume state is gone, the weights stay
        assert (folder / "best.pt").is_file() and not (folder / "last.pt").exists()
    for name in ("fig10_confusion_x-sdd", "fig12_tsne_x-sdd", "fig13_gradcam_x-sdd", "fig15_val_accuracy_x-sdd",
                 "fig07_activations", "fig11_ablation_curves_x-sdd", "protocols_x-sdd", "paired_differences"):
        assert (tmp_path / "figures" / "paper" / f"{name}.png").stat().st_size > 5000, name
    assert (tmp_path / "results" / "paper" / "table3_x-sdd.md").is_file()


def test_the_lab_asks_no_news_question_and_checks_for_no_updates(monkeypatch) -> None:
    """``make lab`` points ``JUPYTER_CONFIG_PATH`` at ``.jupyter/``, whose ``labconfig`` turns off the
    news feed and the update check (JupyterLab's Notification settings) by default, so the lab does not
    open with "Would you like to get notified about official Jupyter news?" (it asks while
    ``fetchNews`` is ``"none"``). The names and values are those of the installed JupyterLab's schema."""
    import jupyterlab
    from jupyterlab_server.settings_utils import _get_overrides

    plugin = "@jupyterlab/apputils-extension:notification"
    wanted = {"checkForUpdates": False, "fetchNews": "false"}
    settings = json.loads((PROJECT_ROOT / ".jupyter" / "labconfig" / "default_setting_overrides.json").read_text())
    assert settings == {plugin: wanted}
    schema = json.loads((Path(jupyterlab.__file__).parent / "schemas" / "@jupyterlab" / "apputils-extension"
                         / "notification.json").read_text())["properties"]
    assert schema["checkForUpdates"]["type"] == "boolean"
    assert "false" in [choice["const"] for choice in schema["fetchNews"]["oneOf"]]
    # what the lab's server reads as its defaults with the Makefile's JUPYTER_CONFIG_PATH
    monkeypatch.setenv("JUPYTER_CONFIG_PATH", str(PROJECT_ROOT / ".jupyter"))
    assert _get_overrides(str(PROJECT_ROOT / "no-such-app-settings"))[0].get(plugin) == wanted
    assert 'JUPYTER_CONFIG_PATH="$(CURDIR)/.jupyter' in (PROJECT_ROOT / "Makefile").read_text()
