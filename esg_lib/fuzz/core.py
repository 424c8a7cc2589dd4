"""Running one harness: every input in a fresh target folder of a sandbox, with a time limit, its
outcome classified, and the outcomes counted.

An input passes when it ends in exactly one of two ways:

* **success**: the harness's call returned;
* **UserError**: one :class:`esg_lib.errors.UserError` whose message is a single line that names the
  input (the file, or for ``--set`` the key), as the ``esg`` command line would print it.

Anything else is a **crash**: another exception (a traceback for the user), a UserError of several
lines or that does not name the input, an input that took longer than the time limit (the alarm
interrupts Python code; C code that ignores it is still measured), a file written, changed or left
outside the target folder (the sandbox around it holds the temporary, cache and data folders and
every path an archive entry may name), or a harness's own check that failed (e.g. a run record
skipped without being named).
"""
from __future__ import annotations

import contextlib
import io
import os
import shutil
import signal
import tempfile
import time
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from esg_lib.errors import UserError

SUCCESS, USER_ERROR, CRASH = "success", "UserError", "crash"
DEFAULT_TIME_LIMIT = 10.0   # seconds per input


class InputTimeout(BaseException):
    """The per-input alarm (a BaseException, so that ``except Exception`` in the code under test cannot
    swallow it)."""


class HarnessCheckFailed(Exception):
    """A harness's own check of a finished input failed (it is counted as a crash)."""


@dataclass
class Crash:
    kind: str       # exception | multi-line error | error not naming the input | timeout | wrote outside | check
    detail: str
    example: str    # the input, shortened

    def line(self) -> str:
        return f"{self.kind}: {self.detail} [input: {self.example}]"


@dataclass
class Tally:
    harness: str
    inputs: int = 0
    success: int = 0
    user_error: int = 0
    crashes: list[Crash] = field(default_factory=list)
    slowest: float = 0.0
    seconds: float = 0.0

    def crash_kinds(self) -> dict[str, int]:
        kinds: dict[str, int] = {}
        for c in self.crashes:
            kinds[c.kind] = kinds.get(c.kind, 0) + 1
        return kinds


@dataclass
class Context:
    """What one input may use: ``target`` (its own empty folder, the cwd while it runs), ``sandbox``
    (the folder around it; nothing may be written there), ``seeds`` (the harness's prepared files,
    read-only), ``names`` (texts of which a UserError must contain one; the harness adds to it) and
    ``warnings`` (those the input raised)."""

    sandbox: Path
    target: Path
    seeds: Path
    names: list[str] = field(default_factory=list)
    warnings: list[warnings.WarningMessage] = field(default_factory=list)


def shorten(value: Any, limit: int = 300) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 20] + f"... ({len(text)} chars)"


def _snapshot(sandbox: Path, target: Path) -> dict[str, tuple[int, int]]:
    """Every path under ``sandbox`` outside ``target`` -> (size, mtime_ns); links are not followed."""
    seen: dict[str, tuple[int, int]] = {}
    for dirpath, dirnames, filenames in os.walk(sandbox):
        here = Path(dirpath)
        if here == target:
            dirnames[:] = []
            continue
        dirnames[:] = [d for d in dirnames if here / d != target]
        for name in dirnames + filenames:
            p = here / name
            try:
                st = p.lstat()
            except OSError:
                continue
            seen[str(p)] = (st.st_size, st.st_mtime_ns) if not p.is_dir() or p.is_symlink() else (0, 0)
    return seen


@contextlib.contextmanager
def _alarm(seconds: float) -> Iterator[None]:
    def ring(signum, frame):
        raise InputTimeout(f"over {seconds:g} s")

    usable = hasattr(signal, "setitimer") and os.name == "posix"
    if usable:
        old = signal.signal(signal.SIGALRM, ring)
        signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        if usable:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, old)


@contextlib.contextmanager
def sandbox_env(sandbox: Path) -> Iterator[None]:
    """Temporary, data and cache folders inside the sandbox (outside every target), restored after."""
    keys = ("ESG_DATA_DIR", "ESG_CACHE_DIR", "TMPDIR", "XDG_CACHE_HOME")
    old = {k: os.environ.get(k) for k in keys}
    old_tempdir, old_cwd = tempfile.tempdir, os.getcwd()
    for k, sub in zip(keys, ("data", "cache", "tmp", "xdg-cache")):
        (sandbox / sub).mkdir(exist_ok=True)
        os.environ[k] = str(sandbox / sub)
    tempfile.tempdir = str(sandbox / "tmp")
    try:
        yield
    finally:
        os.chdir(old_cwd)
        tempfile.tempdir = old_tempdir
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _rmtree(path: Path) -> None:
    """Remove a target folder even when an input left read-only folders in it."""
    def unlock(func, p, _):
        with contextlib.suppress(OSError):
            os.chmod(p, 0o700)
            os.chmod(os.path.dirname(p), 0o700)
            func(p)
    shutil.rmtree(path, onerror=unlock)


def run_input(harness, value: Any, sandbox: Path, seeds: Path, time_limit: float) -> tuple[str, Crash | None, float]:
    """Run one input; ``(outcome, crash or None, seconds)``."""
    target = sandbox / "target"
    if target.exists():
        _rmtree(target)
    target.mkdir()
    before = _snapshot(sandbox, target)
    ctx = Context(sandbox, target, seeds)
    outcome, crash = SUCCESS, None
    sink = io.StringIO()
    t0 = time.perf_counter()
    try:
        os.chdir(target)
        with warnings.catch_warnings(record=True) as caught, contextlib.redirect_stdout(sink), \
                contextlib.redirect_stderr(sink):
            warnings.simplefilter("always")
            try:
                with _alarm(time_limit):
                    harness.run(value, ctx)
            finally:
                ctx.warnings = list(caught)
        harness.check(value, ctx)
    except UserError as exc:
        outcome = USER_ERROR
        message = str(exc)
        if "\n" in message or "\r" in message:
            crash = Crash("multi-line error", f"{type(exc).__name__}: {message[:300]!r}", shorten(value))
        elif not any(n and n in message for n in ctx.names):
            crash = Crash("error not naming the input", f"{type(exc).__name__}: {message[:300]}", shorten(value))
    except InputTimeout as exc:
        crash = Crash("timeout", str(exc), shorten(value))
    except HarnessCheckFailed as exc:
        crash = Crash("check", str(exc)[:400], shorten(value))
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # noqa: BLE001 - anything else is what the harness looks for
        tb = traceback.extract_tb(exc.__traceback__)
        where = next((f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in reversed(tb)
                      if "esg_lib" in f.filename and "/fuzz/" not in f.filename), "")
        first = (str(exc).splitlines() or [""])[0][:200]
        crash = Crash("exception", f"{type(exc).__name__}: {first} (at {where or tb[-1].name})", shorten(value))
    finally:
        os.chdir(sandbox)
    seconds = time.perf_counter() - t0
    if crash is None and seconds > time_limit:
        crash = Crash("timeout", f"took {seconds:.1f} s (limit {time_limit:g} s)", shorten(value))
    after = _snapshot(sandbox, target)
    outside = sorted(p for p in after if after[p] != before.get(p))
    if crash is None and outside:
        crash = Crash("wrote outside", ", ".join(outside[:5]), shorten(value))
    for p in outside:                       # leave the sandbox as it was for the next input
        q = Path(p)
        if p not in before:
            if q.is_dir() and not q.is_symlink():
                _rmtree(q)
            else:
                with contextlib.suppress(OSError):
                    q.unlink()
    return (CRASH if crash else outcome), crash, seconds


def run_harness(harness, inputs: int, *, seed: int | None = 0, derandomize: bool = False,
                time_limit: float = DEFAULT_TIME_LIMIT, raise_on_crash: bool = False,
                progress: Callable[[Tally], None] | None = None) -> Tally:
    """Feed ``inputs`` Hypothesis-generated inputs to ``harness`` and count the outcomes.

    ``raise_on_crash`` (the short version in the test suite) fails at the first crash and lets
    Hypothesis shrink it to a small example; otherwise every crash is recorded and the run goes on.
    """
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as hypothesis_seed

    tally = Tally(harness.name)
    root = Path(tempfile.mkdtemp(prefix=f"esg-fuzz-{harness.name}-")).resolve()
    sandbox = root / "sandbox"
    seeds = sandbox / "seeds"
    seeds.mkdir(parents=True)
    t_start = time.perf_counter()
    try:
        with sandbox_env(sandbox):
            harness.prepare(seeds, sandbox)
            os.chdir(sandbox)
            strategy = harness.strategy(sandbox)

            def body(value: Any) -> None:
                outcome, crash, seconds = run_input(harness, value, sandbox, seeds, time_limit)
                tally.inputs += 1
                tally.slowest = max(tally.slowest, seconds)
                if outcome == SUCCESS:
                    tally.success += 1
                elif outcome == USER_ERROR:
                    tally.user_error += 1
                else:
                    tally.crashes.append(crash)
                    if raise_on_crash:
                        raise AssertionError(f"{harness.name}: {crash.line()}")
                if progress is not None:
                    progress(tally)

            phases = [Phase.generate, Phase.shrink] if raise_on_crash else [Phase.generate]
            test = settings(max_examples=inputs, database=None, deadline=None, derandomize=derandomize,
                            phases=phases, suppress_health_check=list(HealthCheck), print_blob=False,
                            report_multiple_bugs=False)(given(strategy)(body))
            if seed is not None and not derandomize:
                test = hypothesis_seed(seed)(test)
            test()
    finally:
        tally.seconds = time.perf_counter() - t_start
        if hasattr(harness, "close"):
            harness.close()
        _rmtree(root)
    return tally


def table(tallies: list[Tally], time_limit: float) -> str:
    """The Markdown table ``make fuzz`` prints and writes."""
    head = ("| Harness | Inputs | Success | UserError | Crashes | Slowest input (s) | Run (s) |\n"
            "|---|---:|---:|---:|---:|---:|---:|\n")
    rows = "".join(f"| {t.harness} | {t.inputs} | {t.success} | {t.user_error} | {len(t.crashes)} | "
                   f"{t.slowest:.2f} | {t.seconds:.0f} |\n" for t in tallies)
    total = sum(t.inputs for t in tallies)
    crashes = sum(len(t.crashes) for t in tallies)
    return head + rows + (f"\n{total} inputs in all, {crashes} crash(es); time limit {time_limit:g} s per input.\n")
