"""The one Markdown table renderer of the package (README blocks, ``results/`` tables, notebooks).

At the base of the package (it imports nothing of ``esg_lib`` but the errors), so every area can render a table
the same way: ``| a | b |`` rows under a ``|---|---|`` rule, cells written with ``str``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Sequence

from esg_lib.errors import UserError

__all__ = ["markdown_row", "markdown_rows", "markdown_table", "replace_block"]


def markdown_row(cells: Sequence[Any]) -> str:
    """One table line: ``| a | b |``, an empty cell as ``| |`` (also for tables printed a row at a time
    while they are measured)."""
    return "|" + "|".join(f" {c} " if str(c) else " " for c in cells) + "|"


def markdown_rows(header: Sequence[Any], rows: Iterable[Sequence[Any]], align: str = "") -> str:
    """A GitHub Markdown table from a header and rows of cells (no trailing newline). ``align`` has one
    letter per column, ``l`` or ``r`` (numbers); columns beyond it, or all without it, are left-aligned."""
    rule = "|" + "".join("---:|" if align[i:i + 1] == "r" else "---|" for i in range(len(header)))
    return "\n".join([markdown_row(header), rule, *(markdown_row(row) for row in rows)])


def markdown_table(frame: Any) -> str:
    """A pandas DataFrame as a GitHub Markdown table: its columns, then each row's cells as
    ``str`` writes them (no index; no ``tabulate`` dependency, unlike ``DataFrame.to_markdown``)."""
    columns = list(frame.columns)
    return markdown_rows(columns, ([row[c] for c in columns] for _, row in frame.iterrows()))


def replace_block(page: str | Path, begin: str, end: str, body: str) -> bool:
    """Rewrite what stands between the ``begin`` and ``end`` marker lines of a page (a generated
    block kept equal to its command by a test); returns whether the page changed."""
    path = Path(page)
    text = path.read_text()
    if begin not in text or end not in text:
        raise UserError(f"{path} has no generated block {begin} ... {end}")
    head, rest = text.split(begin, 1)
    _, tail = rest.split(end, 1)
    new = f"{head}{begin}\n{body}\n{end}{tail}"
    if new != text:
        path.write_text(new)
    return new != text
