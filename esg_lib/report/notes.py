"""What a profile's numbers can tell: the note each notebook shows at its top.

The same numbers mean different things on each profile (``smoke`` tests the code, ``cpu`` is real
training at a fraction of the paper's budget, ``paper`` is the paper's budget), so every notebook says
which it is before its first table.
"""
from __future__ import annotations

from esg_lib.engine.config import ProfileRef, profile_name

__all__ = ["PROFILE_NOTES", "profile_note"]

PROFILE_NOTES = {
    "smoke": ("**Profile `smoke`: these numbers test the code, not the paper.** A few steps on a handful "
              "of images (minutes on a CPU); accuracy near chance is expected. Read the `cpu` or "
              "`paper` profile's outputs for results."),
    "cpu": ("**Profile `cpu`:** 64 px images, a few epochs on a 2-core CPU, 3 seeds. Real training on "
            "the real data, at a fraction of the paper's budget (224 px, 100 epochs, RTX 4090): compare "
            "the ranking and the gaps, not the levels. Columns and markers labelled *paper* are the "
            "paper's published numbers, not ours."),
    "paper": ("**Profile `paper`:** the paper's budget (224 px, 100 epochs) on a GPU, on our leak-free "
              "split. Columns labelled *paper* are the paper's published numbers."),
}


def profile_note(profile: ProfileRef) -> str:
    """The Markdown line each notebook shows at its top: what this profile's numbers can tell."""
    name = profile_name(profile)
    return PROFILE_NOTES.get(name, f"Profile `{name}`.")
