"""The guard: a fact-level content filter against in-context re-introduction of forgotten facts.

``Guard.load(INDEX_DIR).check(text_or_messages, direction="input"|"output") -> Decision``;
``StreamGuard`` for streamed outputs; indexes are built with ``unlearn guard build``..
"""

from unlearn.guard.config import GuardConfig, Thresholds
from unlearn.guard.guard import AuditLog, Decision, Guard, SessionLedger
from unlearn.guard.index import GuardIndex, GuardIndexError, build_from_dataset, load_index
from unlearn.guard.stream import StreamGuard

__all__ = [
    "AuditLog",
    "Decision",
    "Guard",
    "GuardConfig",
    "GuardIndex",
    "GuardIndexError",
    "SessionLedger",
    "StreamGuard",
    "Thresholds",
    "build_from_dataset",
    "load_index",
]
