"""Shared test fixtures, and how the suite runs in two processes. Area-specific fixtures live in the
area's own test files.

``make test`` runs the suite in pytest-xdist workers (``-n 2 --dist loadgroup``; docs/development.md):

- each worker is pinned to cores of its own where there are enough (:func:`_pin_worker`); the
  notebooks and ``esg`` processes it starts inherit that, and every torch thread count follows it
  (``esg_lib.engine.runtime.available_cores``), so two workers never compete for one core;
- a test module is one unit of work, run by one worker, so a module-scoped fixture (a training, the
  smoke reproduce) still runs once; the few expensive tests in :data:`SEPARATE` are units of their own,
  so that they run beside the rest of their module (:func:`pytest_xdist_make_scheduler`);
- the most expensive units (:data:`FIRST`) are handed out first, so that no worker is left with a
  long one at the end.

``pytest`` alone (or ``make test PYTEST_WORKERS=0``) runs as before: none of this applies.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED = PROJECT_ROOT.parent / "shared"
SHARED_DATASETS = SHARED / "datasets"

WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")               # "gw0", "gw1", ... under pytest -n N
WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))

# Expensive tests that are units of work of their own under xdist (their module's other tests, and the
# module's fixtures, go to whichever worker takes the module): test id without parameters -> unit.
SEPARATE = {
    "tests/test_notebooks.py::test_the_paper_profile_goes_through_the_notebooks_at_224_px": "paper_check",
    "tests/test_bench.py::test_compiled_model_equals_eager_within_float_tolerance": "compile_check",
}
# Units handed out first, most expensive first; the rest follow in collection order.
FIRST = ("tests/test_notebooks.py",    # smoke_reproduced: `esg reproduce --profile smoke`, every notebook
         "paper_check",                # the `paper` profile through every notebook at 224 px
         "tests/test_engine_plan.py",  # pipeline: smoke tuning, then the smoke plan through the queue
         "tests/test_faults.py",       # esg train processes killed and resumed
         "compile_check")              # torch.compile (inductor) builds C++ for forward and backward


def _unit(nodeid: str) -> str:
    """The unit of work of a test id: its entry in :data:`SEPARATE`, else its module's file."""
    test = nodeid.split("@", 1)[0].split("[", 1)[0]
    return SEPARATE.get(test) or test.split("::", 1)[0]


def _cores() -> list[int]:
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return list(range(os.cpu_count() or 1))


def _pin_worker() -> None:
    """Pin this xdist worker (every thread it has so far, and so whatever it starts) to its share of the
    cores it may run on: gw0 the first, gw1 the second, ... Left alone where there are fewer cores than
    workers (a machine already pinned to one core: the workers then share it, one thread each)."""
    cores = _cores()
    if not WORKER.startswith("gw") or WORKERS < 2 or len(cores) < WORKERS or not hasattr(os, "sched_setaffinity"):
        return
    mine = set(cores[int(WORKER[2:]) % WORKERS::WORKERS])
    for task in os.listdir("/proc/self/task"):
        try:
            os.sched_setaffinity(int(task), mine)
        except OSError:
            pass


_pin_worker()
# Two cores: keep each test process from oversubscribing them (one thread per core it may run on).
torch.set_num_threads(int(os.environ.get("ESG_TEST_THREADS") or min(2, len(_cores()))))


@pytest.hookimpl(optionalhook=True)   # an xdist hook: pytest alone never calls it
def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """``--dist loadgroup`` for this suite: units of work as :func:`_unit` says, in the order the
    workers collected them (:func:`pytest_collection_modifyitems`). xdist's own loadgroup reads groups
    from test ids that pytest 9.2 no longer lets it change (pytest-xdist issue 1386), and reorders
    units by their number of tests; this scheduler needs neither."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class SuiteScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return _unit(nodeid)

    config.option.loadscopereorder = False
    return SuiteScheduling(config, log)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under xdist: the units of :data:`FIRST` at the front. Whole units move (a module's tests stay
    together, in their order), so the tests that share a module's fixture still run one after another."""
    if WORKER:
        rank = {unit: i for i, unit in enumerate(FIRST)}
        items.sort(key=lambda item: rank.get(_unit(item.nodeid), len(FIRST)))   # stable


@pytest.fixture(scope="session")
def shared_datasets() -> Path:
    """``../shared/datasets`` or a skip with the reason (a user's fresh clone has no shared/)."""
    if not SHARED_DATASETS.is_dir():
        pytest.skip(f"{SHARED_DATASETS} is absent (only CI and developer machines have it)")
    return SHARED_DATASETS
