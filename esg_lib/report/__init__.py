"""The reporting layer, above the engine: committed run records in, tables and statistics out.

- :mod:`.frames`: records as pandas frames, seeds summarised per model, our numbers beside the
  paper's tables, paired per-seed differences with a t interval, the split-protocol table.
- :mod:`.tables`: ``results/<profile>/<table>.csv|.md`` (``esg report``) and the model table.
- :mod:`.readme`: the README's results block (``esg report --readme``).

The engine never imports this package; the command line (``esg report``, ``esg train``, ``esg
queue``) and the notebooks' layer (:mod:`esg_lib.experiments`) do.
"""
from __future__ import annotations

from .frames import (ABLATION_MODELS, COMPARISON_MODELS, PAPER_LABELS, PAPER_MODELS, PROTOCOLS, paired_difference,
                     paired_differences, paper_table, protocol_table, records_frame, side_by_side, summarize)
from .readme import README_BEGIN, README_END, readme_results, results_block, update_readme
from .tables import (aggregate_records, build_report, load_records, model_table_markdown, table_markdown,
                     write_tables)

__all__ = ["ABLATION_MODELS", "COMPARISON_MODELS", "PAPER_LABELS", "PAPER_MODELS", "PROTOCOLS",
           "paired_difference", "paired_differences", "paper_table", "protocol_table", "records_frame",
           "side_by_side", "summarize", "README_BEGIN", "README_END", "readme_results", "results_block",
           "update_readme", "aggregate_records", "build_report", "load_records", "model_table_markdown",
           "table_markdown", "write_tables"]
