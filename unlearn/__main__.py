"""``python -m unlearn`` runs the ``unlearn`` console script.

The command line is a shell over this library, outside it; it is found through the installed
package's entry point, so the library never imports its shells.
"""

from importlib.metadata import entry_points

if __name__ == "__main__":
    (script,) = entry_points(group="console_scripts", name="unlearn")
    raise SystemExit(script.load()())
