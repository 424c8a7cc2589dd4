"""Each concept the package names in many places is defined once (issue 36, item 4): the model sets,
the split protocols, the profiles' names, and the datasets' titles and paper tables. Everything else
imports them, so that a new row, protocol, profile or dataset is added in one place.

The check reads every module's syntax tree for literal collections of names: a tuple, list or set
that holds most of a set's members, or a dict keyed by every known dataset, is a second copy of that
set unless it sits in the set's home module.
"""
from __future__ import annotations

import ast

from conftest import PROJECT_ROOT

from esg_lib import profiles, reproduce
from esg_lib.data.registry import KNOWN, comparison_table, dataset_title
from esg_lib.data.split import PROTOCOLS
from esg_lib.engine import config as C
from esg_lib.report import frames as F

# concept -> (its home module, its members, how many of them make a literal a copy of the set)
CONCEPTS: dict[str, tuple[str, frozenset[str], int]] = {
    "model sets": ("esg_lib/engine/config.py", frozenset(C.COMPARISON), 5),
    "ablation rows": ("esg_lib/engine/config.py", frozenset(C.ABLATION), 3),
    "protocols": ("esg_lib/data/split.py", frozenset(PROTOCOLS), len(PROTOCOLS)),
    "profiles": ("esg_lib/profiles.py", frozenset(profiles.PROFILE_NAMES), 3),
}


def _names(node: ast.AST) -> list[str]:
    return [e.value for e in getattr(node, "elts", []) if isinstance(e, ast.Constant) and isinstance(e.value, str)]


def copies_of_concepts(root=PROJECT_ROOT) -> list[str]:
    """``path:line: concept`` for each literal outside a concept's home that copies its members."""
    found = []
    for path in sorted((root / "esg_lib").rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        for node in ast.walk(ast.parse(path.read_text(), rel)):
            if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
                names = set(_names(node))
                for concept, (home, members, enough) in CONCEPTS.items():
                    if rel != home and len(names & members) >= enough:
                        found.append(f"{rel}:{node.lineno}: {concept}")
            elif isinstance(node, ast.Dict) and rel != "esg_lib/data/registry.py":
                keys = {k.value for k in node.keys if isinstance(k, ast.Constant)}
                if set(KNOWN) <= keys:
                    found.append(f"{rel}:{node.lineno}: datasets")
    return found


def test_no_module_spells_a_model_set_protocol_list_profile_list_or_dataset_table_again() -> None:
    assert copies_of_concepts() == []


def test_the_check_finds_a_copy(tmp_path) -> None:
    pkg = tmp_path / "esg_lib"
    pkg.mkdir()
    (pkg / "helpers.py").write_text('ORDER = ("leak-free", "augment-then-group-split", "augment-then-split")\n'
                                  'TITLES = {"x-sdd": "X-SDD", "neu-cls-64": "NEU-CLS-64"}\n'
                                  'ONE = ("cpu",)\n')
    assert copies_of_concepts(tmp_path) == ["esg_lib/helpers.py:1: protocols", "esg_lib/helpers.py:2: datasets"]


def test_the_profiles_named_below_the_engine_are_the_engines() -> None:
    """``esg_lib.profiles`` names the profiles for the layers that may not import the engine: the
    engine's registry defines exactly those, and ``esg reproduce`` offers a subset of them."""
    assert tuple(C.PROFILES) == profiles.PROFILE_NAMES
    assert set(profiles.NOTEBOOK_PROFILES) <= set(profiles.PROFILE_NAMES)
    assert reproduce.SLOW_PROFILES <= set(profiles.NOTEBOOK_PROFILES)
    assert reproduce.PAGE_PROFILES <= set(profiles.NOTEBOOK_PROFILES)


def test_the_reports_orders_are_derived_from_the_model_sets() -> None:
    """The report shows the paper's order (ESG-ConvNeXt after the paper's baselines, then our
    references) and Table 2 with ESG-ConvNeXt as row 5: the same members as the engine's sets."""
    assert set(F.COMPARISON_MODELS) == set(C.COMPARISON)
    assert F.COMPARISON_MODELS[:len(C.PAPER_MODELS)] == C.PAPER_MODELS and F.PAPER_MODELS[-1] == C.ESG_CONVNEXT
    assert F.ABLATION_MODELS == (*C.ABLATION[:4], C.ESG_CONVNEXT)
    assert F.PROTOCOLS is PROTOCOLS


def test_datasets_titles_and_paper_tables_come_from_the_registry() -> None:
    assert [dataset_title(d) for d in ("x-sdd", "neu-cls-64", "my_folder")] == ["X-SDD", "NEU-CLS-64", "my_folder"]
    assert [comparison_table(d) for d in ("x-sdd", "neu-cls-64", "my_folder")] == [3, 1, 1]
