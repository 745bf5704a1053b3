"""unlearn: machine unlearning for large language models.

The library never imports its cluster shells (the command line, the training and serving
applications). Data flows one way through its packages:
``data`` -> ``models`` -> ``methods`` -> ``engine`` -> checkpoint -> ``eval`` -> report,
with ``guard`` filtering what reaches a served model.
"""

__version__ = "0.1.0"
