"""``python -m esg_lib.bench ...`` = ``esg benchmark ...`` without loading the other areas' commands
(handy on a machine that has torch and timm but not every dependency of the project)."""
from __future__ import annotations

import argparse
import sys

from esg_lib.bench import register


def main(argv: list[str] | None = None) -> int:
    from esg_lib.errors import UserError

    parser = argparse.ArgumentParser(prog="python -m esg_lib.bench")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["benchmark", *(sys.argv[1:] if argv is None else argv)])
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        print(f"esg benchmark: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
