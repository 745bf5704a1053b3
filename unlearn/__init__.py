"""unlearn: machine unlearning for large language models.

The library is importable without Ray. Data flows one way through its packages:
``data`` -> ``models`` -> ``methods`` -> ``engine`` -> checkpoint -> ``eval`` -> report,
with ``guard`` filtering what reaches a served model.
"""

__version__ = "0.1.0"
