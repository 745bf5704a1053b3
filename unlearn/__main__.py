"""``python -m unlearn`` is the ``unlearn`` console script."""

from unlearn.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
