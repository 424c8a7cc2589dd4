"""The one Markdown table renderer of the package (README blocks, ``results/`` tables, notebooks).

At the base of the package (it imports nothing of ``esg_lib``), so every area can render a table
the same way: ``| a | b |`` rows under a ``|---|---|`` rule, cells written with ``str``.
"""
from __future__ import annotations

from typing import Any, Iterable, Sequence

__all__ = ["markdown_rows", "markdown_table"]


def markdown_rows(header: Sequence[Any], rows: Iterable[Sequence[Any]]) -> str:
    """A GitHub Markdown table from a header and rows of cells (no trailing newline)."""
    lines = ["| " + " | ".join(map(str, header)) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(map(str, row)) + " |" for row in rows]
    return "\n".join(lines)


def markdown_table(frame: Any) -> str:
    """A pandas DataFrame as a GitHub Markdown table: its columns, then each row's cells as
    ``str`` writes them (no index; no ``tabulate`` dependency, unlike ``DataFrame.to_markdown``)."""
    columns = list(frame.columns)
    return markdown_rows(columns, ([row[c] for c in columns] for _, row in frame.iterrows()))
