"""The commands that combine areas: ``esg train``, ``esg report``, ``esg queue`` and the rest of what
once was ``engine/cli.py``.

A command module sits at the layer of the highest area it imports. ``data/cli.py`` imports only the data
area, so it stays there; these commands rebuild tables through :mod:`esg_lib.report` after the engine
trains, so they sit above both (docs/architecture.md). Each module exposes ``register(subparsers)`` for
:mod:`esg_lib.cli`, which lists them in the order ``esg --help`` shows their commands.
"""
from __future__ import annotations

import argparse

# every command's help keeps its examples' line breaks
FMT = argparse.RawDescriptionHelpFormatter
