"""``python -m esg_lib`` is the same as the ``esg`` console script."""
from esg_lib.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
