"""The ``esg`` command line.

Each area of the project owns its subcommands in its own module, which exposes
``register(subparsers) -> None``; this file only lists those modules. A subcommand
sets ``func`` on its parser; ``func(args) -> int`` is the exit code. Errors meant for
the user are raised as :class:`esg_lib.errors.UserError` (by any area) and only caught here,
printed as one line without a traceback.
"""
from __future__ import annotations

import argparse
import errno
import importlib
import signal
import sys
import threading
from typing import Any, Sequence

from esg_lib.errors import UserError

# module path -> owns these subcommands (imported lazily so `esg --help` stays quick)
SUBCOMMAND_MODULES: tuple[str, ...] = (
    "esg_lib.models.zoo",       # esg zoo
    "esg_lib.data.cli",         # esg data {verify,fetch,audit,...}
    "esg_lib.commands.train",   # esg train/evaluate/predict/runs
    "esg_lib.commands.report",  # esg report
    "esg_lib.commands.plan",    # esg tune/search/fps/queue/verify
    "esg_lib.bench",            # esg benchmark
    "esg_lib.reproduce",        # esg reproduce
    "esg_lib.export",           # esg export --onnx / --fps
)


def build_parser() -> argparse.ArgumentParser:
    from esg_lib import __version__

    parser = argparse.ArgumentParser(
        prog="esg",
        description="ESG-ConvNeXt paper companion: models, data, training, evaluation, figures.",
    )
    parser.add_argument("--version", action="version", version=f"esg_lib {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:  # that area is not built yet
                continue
            raise
        module.register(subparsers)
    return parser


def exit_cleanly_on_sigterm() -> None:
    """Turn SIGTERM (``kill``, ``pkill``, a batch system's time limit) into ``SystemExit(143)``, so
    ``finally`` blocks run: a training run's lock is released (see ``esg_lib.engine.runs.RunLock``)."""
    def _terminated(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _terminated)


def main(argv: Sequence[str] | None = None) -> int:
    exit_cleanly_on_sigterm()
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        print(f"esg {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"esg {args.command}: interrupted", file=sys.stderr)
        return 130
    except OSError as exc:   # a plain write on a full disk (the atomic writers raise a UserError for it)
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
            raise
        where = f" while writing {exc.filename}" if exc.filename else ""
        print(f"esg {args.command}: error: {exc.strerror or 'no space left on device'}{where}; files written "
              "whole before it are unchanged: free some space and run the same command again", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
