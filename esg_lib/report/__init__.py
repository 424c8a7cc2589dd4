"""The reporting layer, above the engine: committed run records in, tables, statistics and the frames
the figures draw out.

- :mod:`.frames`: records as pandas frames, seeds summarised per model, our numbers beside the
  paper's tables, paired per-seed differences with a t interval, the split-protocol table.
- :mod:`.figure_frames`: a profile's records for its notebooks and the tidy frame each record
  figure draws (accuracy against cost, paired seeds, the ablation per seed, per-class recall).
- :mod:`.notes`: the note at a notebook's top saying what a profile's numbers can tell.
- :mod:`.tables`: ``results/<profile>/<table>.csv|.md`` (``esg report``) and the model table.
- :mod:`.readme`: the README's results block (``esg report --readme``).
- :mod:`.gap` and :mod:`.trained`: the reports of the ``cpu-gap`` and ``cpu2`` profiles.

The figures themselves are drawn by :mod:`esg_lib.figures`, which this layer may import and which
imports nothing of it. The engine never imports this package; the command line (``esg report``,
``esg train``, ``esg queue``) and the notebooks' layer (:mod:`esg_lib.experiments`, the notebooks) do.
"""
from __future__ import annotations

from .figure_frames import ablation_frame, cost_frame, profile_records, recall_frame, seed_differences
from .frames import (ABLATION_MODELS, COMPARISON_MODELS, PAPER_LABELS, PAPER_MODELS, PROTOCOLS, label_paper_columns,
                     paired_difference, paired_differences, paper_table, protocol_table, records_frame,
                     select_records, side_by_side, summarize)
from .notes import PROFILE_NOTES, profile_note
from .readme import README_BEGIN, README_END, readme_results, results_block, update_readme
from .tables import (aggregate_records, build_report, load_records, model_table_markdown, table_markdown,
                     write_tables)

__all__ = ["ABLATION_MODELS", "COMPARISON_MODELS", "PAPER_LABELS", "PAPER_MODELS", "PROTOCOLS",
           "label_paper_columns", "paired_difference", "paired_differences", "paper_table", "protocol_table",
           "records_frame", "select_records", "side_by_side", "summarize", "profile_records", "cost_frame",
           "seed_differences", "ablation_frame", "recall_frame", "PROFILE_NOTES", "profile_note", "README_BEGIN",
           "README_END", "readme_results", "results_block", "update_readme", "aggregate_records", "build_report",
           "load_records", "model_table_markdown", "table_markdown", "write_tables"]
