"""The profiles by name: the one list of their names, for the layers that may not import the engine.

A profile's content (defaults, seeds, model table) is the engine's (:data:`esg_lib.engine.config.PROFILES`,
which defines exactly these names, in this order; a test checks it). ``esg reproduce`` only passes a
profile's name on to the notebooks it runs and may not import the engine (docs/architecture.md), so it
takes its choices from here instead of keeping a list of its own that can fall behind the engine's.
"""
from __future__ import annotations

PROFILE_NAMES: tuple[str, ...] = ("smoke", "cpu", "paper", "cpu-gap", "cpu2")
# The profiles whose comparison the notebooks reproduce (`esg reproduce`, `make reproduce`). The
# experiment profiles are read through their own reports (`esg report`): `cpu-gap` trains a few rows per
# arm (docs/gap.md), `cpu2` searches each row's recipe first (docs/search.md).
NOTEBOOK_PROFILES: tuple[str, ...] = PROFILE_NAMES[:3]
