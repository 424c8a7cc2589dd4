"""Fuzz harnesses for issue 35 (``make fuzz``; a short run of each is in tests/test_reliability.py).

Five harnesses (:mod:`.harnesses`) feed Hypothesis-generated inputs to the project's entry points for
untrusted input: image decoding, archive extraction for ``esg data fetch``, run records and the
report, checkpoint loading for ``esg predict``, and ``--set`` values. Every input must end in a
success or in one :class:`~esg_lib.errors.UserError` line naming the input, within a time limit,
writing nothing outside its target folder (:mod:`.core` says exactly what counts as a crash).

Hypothesis is a test dependency (``pip install -e .[test]``), not one of the library's: only this
package and the tests import it. The inputs are generated, not coverage-guided; atheris (libFuzzer)
would be the coverage-guided alternative (docs/reliability.md says why it is not used).

Run: ``python -m esg_lib.fuzz --inputs 10000`` (``make fuzz``) or ``--harness NAME --inputs N``.
"""
from __future__ import annotations

__all__ = ["HARNESSES", "run_harness", "table"]


def __getattr__(name: str):
    if name == "HARNESSES":
        from .harnesses import HARNESSES
        return HARNESSES
    if name in ("run_harness", "table"):
        from . import core
        return getattr(core, name)
    raise AttributeError(name)
