"""The results store (issue 36): one torch-free module owns the layout of ``runs/`` and ``results/``,
no other module spells it, and its one record validator (issue 35) lets only records through that
the report, the plan and the figures can read without crashing."""
from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import PROJECT_ROOT
from esg_lib import store

PACKAGE = PROJECT_ROOT / "esg_lib"
STORE = PACKAGE / "store.py"
# the layout's folder names: a module that joins one onto a path spells the layout itself
LAYOUT_PIECES = {store.RESULTS, store.RUNS, store.ARTIFACTS, store.RERUNS, store.TUNING}


def test_the_store_loads_alone_without_torch_or_the_rest_of_the_package():
    """Loaded from its file (not through ``esg_lib``, whose ``__init__`` registers the models in timm),
    the store pulls in neither torch, numpy, pandas nor any other ``esg_lib`` module."""
    code = (
        "import importlib.util, sys\n"
        f"spec = importlib.util.spec_from_file_location('store', {str(STORE)!r})\n"
        "module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module)\n"
        "heavy = [m for m in ('torch', 'numpy', 'pandas', 'esg_lib') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "print(module.record_name('x-sdd', 'ResNet18', 's0-0123456789'))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "x-sdd__resnet18__s0-0123456789.json"


def _layout_spellings(path: Path) -> list[str]:
    """Places in one module that build a results path or record name by hand: a layout folder name
    joined with ``/`` or ``joinpath``, a ``/ profile_name(...)`` join, an f-string joining values
    with ``__``, or ``"__".join`` / ``.split("__")`` (parsing a record's name)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    shown = path.relative_to(PROJECT_ROOT) if path.is_relative_to(PROJECT_ROOT) else path.name
    found: list[tuple[int, str]] = []

    def piece(node: ast.AST) -> bool:
        return isinstance(node, ast.Constant) and node.value in LAYOUT_PIECES

    for node in ast.walk(tree):
        line = getattr(node, "lineno", 0)
        where = f"{shown}:{line}"
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            if piece(node.left) or piece(node.right):
                found.append((line, f"{where}: joins a layout folder onto a path"))
            right = node.right
            if isinstance(right, ast.Call) and getattr(right.func, "id", None) == "profile_name":
                found.append((line, f"{where}: joins a profile name onto a path"))
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            name, args = node.func.attr, node.args
            if name == "joinpath" and any(piece(a) for a in args):
                found.append((line, f"{where}: joins a layout folder onto a path"))
            if name in ("split", "rsplit") and args and isinstance(args[0], ast.Constant) and args[0].value == "__":
                found.append((line, f"{where}: parses a record's file name"))
            if name == "join" and isinstance(node.func.value, ast.Constant) and node.func.value.value == "__":
                found.append((line, f"{where}: joins a record's file name"))
        elif isinstance(node, ast.JoinedStr):
            parts = node.values
            for i, part in enumerate(parts):
                if isinstance(part, ast.Constant) and "__" in str(part.value) and any(
                        isinstance(p, ast.FormattedValue) for p in parts[max(i - 1, 0):i + 2]):
                    found.append((line, f"{where}: builds a '__'-joined file name"))
                    break
    return [text for _, text in sorted(found)]


def test_no_module_outside_the_store_spells_the_results_layout():
    spelled = [hit for path in sorted(PACKAGE.rglob("*.py")) if path != STORE for hit in _layout_spellings(path)]
    assert not spelled, "use esg_lib.store instead:\n" + "\n".join(spelled)


def test_the_layout_check_sees_each_kind_of_hand_spelled_path(tmp_path):
    """The check above is not vacuous: each way the layout used to be spelled is caught."""
    sample = tmp_path / "sample.py"
    sample.write_text(
        'from pathlib import Path\n'
        'a = Path(r) / "runs"\n'
        'b = root / "results" / p\n'
        'c = Path(r).joinpath("reruns")\n'
        'd = f"{ds}__{model}__{run}.json"\n'
        'e = path.stem.split("__")\n'
        'f = Path(r) / profile_name(p)\n'
        'g = "__".join(parts)\n'
        'h = p.add_argument("--out", default="runs")\n'   # a default folder, not a join: allowed
        'i = "runs" if n > 1 else "run"\n')               # prose: allowed
    hits = _layout_spellings(sample)
    assert [h.split(":")[1] for h in hits] == ["2", "3", "4", "5", "6", "7", "8"]


def test_record_names_and_paths_round_trip():
    name = store.record_name("X-SDD", "esg-convnext", "s2-0123456789")
    assert name == "x-sdd__esg-convnext__s2-0123456789.json"
    assert store.parse_record_name(Path("a") / name) == ("x-sdd", "esg-convnext", "s2-0123456789")
    assert store.parse_record_name("odd name.json") is None and store.parse_record_name("a____b.json") is None
    assert store.record_path("res", "cpu", "x-sdd", "vit", "s0-1") == Path("res/cpu/runs/x-sdd__vit__s0-1.json")
    folder = store.run_folder("runs", "cpu", "x-sdd", "vit", store.run_name(1, "abcdef0123456789"))
    assert folder == Path("runs/cpu/x-sdd/vit/s1-abcdef0123")
    assert store.artifact_folder(folder, "results/cpu") == Path("results/cpu/artifacts/x-sdd/vit/s1-abcdef0123")
    assert store.rerun_folder(folder, "results/cpu") == Path("results/cpu/reruns/x-sdd/vit/s1-abcdef0123")
    assert store.table_name("x-sdd") == "x-sdd" and store.table_name("x-sdd", "augment-then-split") == \
        "x-sdd__augment-then-split"


def test_committed_record_names_parse_back_and_rebuild_unchanged():
    """Every committed record's file name is what the store would name it (the run ids are pinned)."""
    paths = sorted((PROJECT_ROOT / "results").glob(f"*/{store.RUNS}/*.json"))
    assert paths
    for path in paths:
        rec = json.loads(path.read_text())
        assert store.record_name(rec["dataset"], rec["model"], rec["run"]) == path.name
        assert store.record_problem(rec) is None, path.name
        assert rec["run"] == store.run_name(rec["seed"], rec["run_id"])


def test_a_run_s_files_are_found_in_run_folder_then_artifacts_then_reruns(tmp_path):
    args = (tmp_path, "cpu", "x-sdd", "vit", "s0-0123456789")
    assert store.find_run_files(*args) is None
    rerun = store.run_in(store.reruns_dir(tmp_path / "results", "cpu"), "x-sdd", "vit", "s0-0123456789")
    rerun.mkdir(parents=True)
    assert store.find_run_files(*args) == rerun
    artifact = store.run_in(store.artifacts_dir(tmp_path / "results", "cpu"), "x-sdd", "vit", "s0-0123456789")
    artifact.mkdir(parents=True)
    assert store.find_run_files(*args) == artifact
    folder = store.run_folder(tmp_path / "runs", "cpu", "x-sdd", "vit", "s0-0123456789")
    folder.mkdir(parents=True)
    assert store.find_run_files(*args) == folder


GOOD = {"run": "s0-0123456789", "dataset": "x-sdd", "model": "resnet18", "seed": 0, "protocol": "leak-free",
        "variant": "abcdef12", "profile_variant": "abcdef12", "label": "ResNet18", "timm_name": "resnet18",
        "hardware": "CPU x86_64, 2 cores, 1 threads", "acc": 0.9, "params": 11_000_000, "steps": 915,
        "gmacs": 0.5, "val": {"val_acc": 0.8}, "per_class_recall": {"a": 0.9}, "curve": {"verdict": "rising"}}


@pytest.mark.parametrize("field, value, why", [
    ("protocol", 3, "'protocol' is not text"),
    ("variant", ["a"], "'variant' is not text"),
    ("label", {"x": 1}, "'label' is not text"),
    ("timm_name", 1.5, "'timm_name' is not text"),
    ("hardware", True, "'hardware' is not text"),
    ("params", True, "'params' is not a number"),
    ("steps", "915", "'steps' is not a number"),
    ("gmacs", float("inf"), "'gmacs' is not a number"),
    ("acc", float("nan"), "'acc' is not a number"),
    ("val", [0.8], "'val' is not an object"),
    ("per_class_recall", {"a": "high"}, "'per_class_recall' holds a value that is not a number"),
    ("curve", "rising", "'curve' is not an object"),
    ("run", 5, "'run' is not text"),
    ("model", "", "'model' is missing or not text"),
    ("seed", False, "'seed' is missing or not an integer"),
])
def test_record_problem_checks_the_type_of_every_field_the_report_reads(field, value, why):
    assert store.record_problem(GOOD) is None
    assert why in store.record_problem({**GOOD, field: value})


def test_optional_fields_may_be_missing_or_null():
    assert store.record_problem({**GOOD, "protocol": None, "val": None, "gmacs": None, "curve": None}) is None
    slim = {k: GOOD[k] for k in ("dataset", "model", "seed")}
    assert store.record_problem(slim) is None


def test_bad_records_are_named_and_counted(tmp_path):
    folder = store.records_dir(tmp_path, "cpu")
    folder.mkdir(parents=True)
    (folder / store.record_name("x-sdd", "resnet18", "s0-good")).write_text(json.dumps(GOOD))
    (folder / "x-sdd__vit__s1-bad.json").write_text(json.dumps({**GOOD, "params": "many"}))
    with pytest.warns(store.RecordWarning, match=r"skipped 1 of 2 .*x-sdd__vit__s1-bad\.json: 'params'"):
        records = store.load_records("cpu", tmp_path)
    assert [r["model"] for r in records] == ["resnet18"]


def test_a_record_is_current_when_its_variant_is_the_one_stamped_for_its_profile():
    assert store.is_current(GOOD)
    assert not store.is_current({**GOOD, "variant": "other"})
    assert not store.is_current({k: v for k, v in GOOD.items() if k != "profile_variant"})   # never stamped
    assert not store.is_current({**GOOD, "profile_variant": None})    # its profile no longer trains that row
    assert store.current_records([GOOD, {**GOOD, "variant": "x"}]) == [GOOD]


def test_the_stamp_is_the_engine_s_expected_variant_and_committed_records_keep_theirs():
    """Each committed record's stamp is what the engine computes now (so the README's currentness is
    unchanged), and stamping them again rewrites nothing."""
    from esg_lib.engine import runs as R

    for profile in ("cpu", "cpu-gap"):
        for rec in store.load_records(profile, PROJECT_ROOT / "results"):
            assert rec["profile_variant"] == R.expected_variant(profile, rec["model"], rec["dataset"],
                                                                 rec.get("protocol") or "leak-free")


def _finished_run(runs: Path, model: str = "resnet18") -> Path:
    """A finished run folder as ``fit`` leaves it (the files a record is built from; GMACs given, so
    no model is built)."""
    from esg_lib.engine.runs import write_json

    folder = store.run_folder(runs, "smoke", "x-sdd", model, "s0-0123456789")
    folder.mkdir(parents=True)
    config = {"model": model, "seed": 0, "profile": "smoke", "dataset": "x-sdd", "epochs": 1,
              "protocol": "leak-free"}
    write_json(folder / "config.json", {"run_id": "0123456789abcdef", "dataset_name": "x-sdd", "config": config,
                                        "model_spec": {"name": "resnet18", "label": "ResNet18"}, "num_classes": 3})
    write_json(folder / "metrics.json", {"status": "done", "test": {"acc": 0.5, "precision": 0.5, "recall": 0.5,
               "f1": 0.5, "loss": 1.0, "n": 10}, "gmacs": 0.1, "steps": 3})
    return folder


def test_building_a_record_writes_nothing_and_writing_it_puts_it_where_the_store_says(tmp_path):
    from esg_lib.engine import runs as R

    folder = _finished_run(tmp_path / "runs")
    before = sorted(tmp_path.rglob("*"))
    rec = R.build_record(folder)
    assert sorted(tmp_path.rglob("*")) == before                     # pure: nothing written
    assert store.record_problem(rec) is None and rec["acc"] == 0.5 and "path" not in rec
    assert rec["profile_variant"] == R.expected_variant("smoke", "resnet18", "x-sdd", "leak-free")
    assert [rec] == R.build_records([folder, _finished_run(tmp_path / "other", "not-a-model").parent])
    [written] = R.export_run_metrics([folder], store.profile_dir(tmp_path / "results", "smoke"))
    assert written == store.record_path(tmp_path / "results", "smoke", "x-sdd", "resnet18", "s0-0123456789")
    assert json.loads(written.read_text()) == json.loads(json.dumps(rec))


def test_stamping_committed_records_again_rewrites_nothing(tmp_path):
    import shutil

    from esg_lib.engine import runs as R

    for profile in ("cpu", "cpu-gap"):
        shutil.copytree(store.records_dir(PROJECT_ROOT / "results", profile), store.records_dir(tmp_path, profile))
        assert R.stamp_records(tmp_path, profile) == []
    # a record whose stamp is stale (its profile's recipe changed since) is restamped, and stops being current
    path = store.record_files(tmp_path, "cpu")[0]
    measured = {k: v for k, v in json.loads(path.read_text()).items() if k != "profile_variant"}
    path.write_text(json.dumps({**measured, "profile_variant": "00000000"}))
    assert R.stamp_records(tmp_path, "cpu") == [path]
    restamped = json.loads(path.read_text())
    assert store.is_current(restamped)
    # the stamp is the only field a restamp touches: what the run measured and its identity never change
    assert {k: v for k, v in restamped.items() if k != "profile_variant"} == measured


def test_a_record_whose_dataset_or_model_is_no_name_is_skipped_not_a_crash():
    """Found by `make fuzz` (2026-12-07): a dataset text too long for a file name reached the table
    writer as a file name and raised `File name too long`; the validator now refuses such names."""
    assert store.record_problem(GOOD) is None
    for key, value in (("dataset", "x" * 150), ("model", "a/b"), ("dataset", "../up"), ("model", " ")):
        assert "not a name" in (store.record_problem({**GOOD, key: value}) or ""), (key, value)
