"""Ray entrypoints: thin shells over the ``unlearn`` library (``ray job submit -- python -m jobs.<name>``)."""
