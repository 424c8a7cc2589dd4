"""The package's import rules (docs/architecture.md): each area imports only the areas below it, and
no import cycle exists anywhere in ``esg_lib``.

The import graph comes from a walk over every module's syntax tree, so imports written inside
functions (which hide a dependency from a reader and from ``python -c "import ..."``) count exactly
like those at the top of a file. A dependency is recorded on the most specific module an import
names (``from esg_lib.engine import runs`` depends on ``esg_lib.engine.runs``), as grimp does.
"""
from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

from conftest import PROJECT_ROOT

PACKAGE = "esg_lib"

# Each module belongs to the first area whose prefix it matches (most specific first).
AREAS: tuple[tuple[str, str], ...] = (
    ("esg_lib.commands", "commands"),       # esg train/report/queue/...: engine and report together
    ("esg_lib.models", "models"),
    ("esg_lib.data", "data"),
    ("esg_lib.engine", "engine"),
    ("esg_lib.bench", "bench"),
    ("esg_lib.report", "report"),
    ("esg_lib.experiments", "notebooks"),
    ("esg_lib.figures", "plotting"),       # every figure (figures/: style, saving, one module per family)
    ("esg_lib.reproduce", "reproduce"),
    ("esg_lib.cli", "cli"),
    ("esg_lib.__main__", "cli"),
    ("esg_lib.errors", "base"),
    ("esg_lib.store", "base"),              # the results layout and the record validator: stdlib only
    ("esg_lib.metrics", "base"),
    ("esg_lib.markdown", "base"),
    ("esg_lib.profiles", "base"),
    ("esg_lib", "package"),                 # the package itself: __version__, registers the models
)
EXACT = {"esg_lib"}                         # areas that are one module, not a prefix

# area -> the areas it may import besides itself (everything else is forbidden). In words: models,
# data and plotting sit on the base; the engine on models and data; bench beside the engine; the
# report above the engine; the notebooks' layer, the commands and the command line on top. An area's
# own command module (data/cli.py, models/zoo.py) belongs to its area and follows its rules. Nothing
# below the command line imports it; the engine imports neither report nor notebooks.
BELOW_THE_COMMAND_LINE = ("base", "plotting", "package", "models", "data", "engine", "bench", "report",
                          "notebooks", "reproduce")
ALLOWED: dict[str, tuple[str, ...]] = {
    "base": (),
    "plotting": ("base",),
    "package": ("base", "models"),
    "models": ("base", "package"),           # models/zoo.py reads esg_lib.__version__
    "data": ("base",),
    "engine": ("base", "package", "models", "data"),
    "bench": ("base", "package", "models", "engine"),
    "report": ("base", "plotting", "package", "models", "data", "engine"),
    "notebooks": BELOW_THE_COMMAND_LINE + ("top",),
    "reproduce": ("base", "package"),
    "commands": ("base", "package", "models", "data", "engine", "report"),
}
FORBIDDEN: dict[str, tuple[str, ...]] = {
    area: tuple(a for a in (*BELOW_THE_COMMAND_LINE, "commands", "top", "cli")
                if a != area and a not in allowed)
    for area, allowed in ALLOWED.items()}

# Rules still broken, with the imports that break them: each is an expected failure (strict, so it
# turns into an error the moment the violation is gone and the entry must be deleted).
KNOWN_VIOLATIONS: dict[str, str] = {}


def area_of(module: str) -> str:
    """A module's area; a top-level module not listed (``esg_lib.export``) is a command or notebook
    helper at the top of the stack: it may import anything, and nothing below it may import it."""
    for prefix, area in AREAS:
        if module == prefix or (prefix not in EXACT and module.startswith(prefix + ".")):
            return area
    return "top"


def module_names(root: Path) -> dict[str, Path]:
    """``{dotted module name: file}`` for every ``.py`` file of the package under ``root``."""
    out = {}
    for path in sorted((root / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def import_graph(root: Path) -> dict[str, dict[str, list[int]]]:
    """``{module: {imported package module: [line numbers]}}``: every import of the package's own
    modules, wherever it is written (top level, function body, ``try`` block)."""
    modules = module_names(root)
    graph: dict[str, dict[str, list[int]]] = {}
    for module, path in modules.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        found: dict[str, list[int]] = defaultdict(list)
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    source = ".".join(base + ([node.module] if node.module else []))
                else:
                    source = node.module or ""
                # ``from pkg import name``: the submodule ``pkg.name`` if there is one, else ``pkg``
                targets = [f"{source}.{a.name}" if f"{source}.{a.name}" in modules else source
                           for a in node.names]
            for target in targets:
                while target and target not in modules and "." in target:
                    target = target.rpartition(".")[0]   # ``import esg_lib.x.y as z`` of a name
                if target in modules and target != module:
                    found[target].append(node.lineno)
        graph[module] = dict(found)
    return graph


def violations(graph: dict[str, dict[str, list[int]]], area: str) -> list[str]:
    forbidden = FORBIDDEN[area]
    return [f"{src} -> {dst} (line {', '.join(map(str, lines))})"
            for src, targets in sorted(graph.items()) if area_of(src) == area
            for dst, lines in sorted(targets.items()) if area_of(dst) in forbidden]


def cycles(graph: dict[str, dict[str, list[int]]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:   # recursion depth is bounded by the package's ~60 modules
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


@pytest.fixture(scope="module")
def graph() -> dict[str, dict[str, list[int]]]:
    return import_graph(PROJECT_ROOT)


@pytest.mark.parametrize("area", [
    pytest.param(a, marks=pytest.mark.xfail(strict=True, reason=KNOWN_VIOLATIONS[a]))
    if a in KNOWN_VIOLATIONS else a for a in FORBIDDEN])
def test_area_imports_only_what_is_below_it(graph, area: str) -> None:
    bad = violations(graph, area)
    assert not bad, f"{area} imports {', '.join(FORBIDDEN[area])}? forbidden:\n" + "\n".join(bad)


def test_no_area_below_the_command_line_imports_it(graph) -> None:
    """Errors live in esg_lib.errors: only esg_lib.cli catches and prints them."""
    users = sorted(src for src, targets in graph.items() if "esg_lib.cli" in targets and src != "esg_lib.__main__")
    assert users == []


@pytest.mark.xfail(strict=True, reason=KNOWN_VIOLATIONS.get("cycles", "no cycle left"),
                   condition="cycles" in KNOWN_VIOLATIONS)
def test_no_import_cycle(graph) -> None:
    assert cycles(graph) == []


def test_the_walk_sees_imports_inside_functions_and_relative_imports(tmp_path) -> None:
    """The checker itself: a two-module cycle hidden in a function, written relatively, is found,
    and a forbidden import of a model module from data is reported with its line."""
    pkg = tmp_path / PACKAGE
    (pkg / "models").mkdir(parents=True)
    (pkg / "data").mkdir()
    for init in (pkg, pkg / "models", pkg / "data"):
        (init / "__init__.py").write_text("")
    (pkg / "data" / "a.py").write_text("import os\n\ndef f():\n    from . import b\n    return b\n")
    (pkg / "data" / "b.py").write_text("from esg_lib.data.a import f\nfrom ..models import net\n")
    (pkg / "models" / "net.py").write_text("X = 1\n")
    g = import_graph(tmp_path)
    assert g["esg_lib.data.a"] == {"esg_lib.data.b": [4]}
    assert cycles(g) == [["esg_lib.data.a", "esg_lib.data.b"]]
    assert violations(g, "data") == ["esg_lib.data.b -> esg_lib.models.net (line 2)"]


# Functions longer than this need a reason written beside them: a comment ``# long: <why>`` on the
# line above the ``def`` (or above its decorators).
MAX_FUNCTION_LINES = 80


def long_functions(root: Path) -> list[str]:
    """``module:function (N lines)`` for every function or method over :data:`MAX_FUNCTION_LINES`
    lines without a ``# long:`` reason right above it."""
    found = []
    for name, path in sorted(module_names(root).items()):
        lines = path.read_text().splitlines()
        for node in ast.walk(ast.parse("\n".join(lines))):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            length = node.end_lineno - node.lineno + 1
            first = min([node.lineno] + [d.lineno for d in node.decorator_list])
            reason = first >= 2 and lines[first - 2].strip().startswith("# long:")
            if length > MAX_FUNCTION_LINES and not reason:
                found.append(f"{name}:{node.name} ({length} lines)")
    return found


def test_no_function_is_longer_than_80_lines_without_a_reason() -> None:
    assert long_functions(PROJECT_ROOT) == []


def test_the_length_check_sees_methods_and_honours_a_written_reason(tmp_path) -> None:
    pkg = tmp_path / PACKAGE
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    statements = [f"x{i} = {i}" for i in range(MAX_FUNCTION_LINES)]
    method = "class C:\n    def m(self):\n" + "".join(f"        {st}\n" for st in statements)
    reasoned = "# long: a table of constants\ndef f():\n" + "".join(f"    {st}\n" for st in statements)
    short = "def g():\n" + "".join(f"    {st}\n" for st in statements[:-1])
    (pkg / "a.py").write_text(method + "\n\n" + reasoned + "\n\n" + short)
    assert long_functions(tmp_path) == [f"esg_lib.a:m ({MAX_FUNCTION_LINES + 1} lines)"]
