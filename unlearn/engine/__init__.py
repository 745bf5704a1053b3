"""The per-worker training recipe (``loop.train``) and what it runs on: streams, backends, sessions."""
