"""``python -m cli`` is the ``unlearn`` command."""

from cli import main

if __name__ == "__main__":
    raise SystemExit(main())
