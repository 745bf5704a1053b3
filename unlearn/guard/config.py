"""Guard configuration: decision thresholds per direction and mode, ledger and runtime limits.

Defaults (development data, labelled as such in docs/benchmarks.md): the lexical thresholds from
``unlearn guard calibrate`` on the synthetic benchmark (``synthesize(200, 12, seed=2)``, forget10,
target FPR 1% inputs / 5% outputs, calibration ties broken towards these judgment values, never
past them); the semantic ones (``sim``, ``sim_alone``: names masked in facts and sentences) from
the score distributions on the hand-written TOFU-shaped world in tests/unlearn/guard/fixtures
(benign maxima 0.33 / 0.66, unblocked paraphrases 0.80 / 0.85-0.93). Calibrate your own index and
pass the result with ``--config``. ``input``/``output`` apply when the embedding layer is on;
``lexical_input``/``lexical_output`` when it is off (not installed or ``embeddings: false``),
where the ``sim*`` thresholds are unused.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from unlearn.config import require

NEVER = 1e9  # a threshold no signal reaches: the rule is off


@dataclass
class Thresholds:
    """When a check blocks: each rule fires when its signal reaches its threshold."""

    # a forget entity is named and this fraction (idf-weighted) of one of its facts' content is present
    cov: float = 0.7
    # a forget entity is named and a word n-gram of this many tokens (holding fact content) is shared
    lsn: float = 5
    # a forget entity is named and a sentence is this similar to one of its facts (and is a statement)
    sim: float = 0.8
    # no entity needed: similarity to a forget fact this high and ``sim_margin`` above any retain fact
    sim_alone: float = 0.92
    # no entity needed: this many facts of one unnamed forget entity are present (more than of any
    # retain entity)
    multi: float = 3
    # no entity needed: an n-gram of this many tokens shared with a forget fact, longer than with any
    # retain fact
    lsn_free: float = 10
    # a forget entity is tied (same sentence, or the sentence is about it) to one of its fact's
    # values this specific (1: no other entity holds it; a value in a question counts half)
    val: float = 0.7
    # ... or to values of one fact whose specificities add up to this
    vsum: float = 1.2
    # no entity needed: values of one forget fact whose specificities add up to this (more than
    # of any retain fact)
    vfree: float = 4.0

    def check(self) -> None:
        """Reject impossible values."""
        for name in ("cov", "sim", "sim_alone", "val"):
            value = getattr(self, name)
            require(0.0 < value <= 1.0 or value >= NEVER, name, f"must be in (0, 1], got {value}")
        for name in ("lsn", "lsn_free"):
            value = getattr(self, name)
            require(value >= 3, name, f"must be at least 3 (the n-gram length), got {value}")
        require(self.multi >= 2, "multi", f"must be at least 2 facts, got {self.multi}")
        require(self.vsum > 0, "vsum", f"must be positive, got {self.vsum}")
        require(self.vfree > 0, "vfree", f"must be positive, got {self.vfree}")


@dataclass
class GuardConfig:
    """Everything a ``Guard`` needs besides its index."""

    # use the embedding layer when sentence-transformers and the model package are installed
    embeddings: bool = True
    # torch intra-op threads set (process-wide) when the embedding model loads; 0 leaves torch's
    embedding_threads: int = 1
    # positional: cov, lsn, sim, sim_alone, multi, lsn_free, val, vsum, vfree
    input: Thresholds = field(
        default_factory=lambda: Thresholds(0.6, 5, 0.75, 0.82, 3, 10, 0.7, 1.2, 4.0)
    )
    # outputs are checked more strictly (calibrated at a 5% FPR target instead of 1%)
    output: Thresholds = field(
        default_factory=lambda: Thresholds(0.5, 4, 0.7, 0.78, 3, 8, 0.6, 1.0, 3.5)
    )
    lexical_input: Thresholds = field(
        default_factory=lambda: Thresholds(0.55, 5, NEVER, NEVER, 3, 10, 0.7, 1.2, 4.0)
    )
    lexical_output: Thresholds = field(
        default_factory=lambda: Thresholds(0.45, 4, NEVER, NEVER, 3, 8, 0.6, 1.0, 3.5)
    )
    # similarity a forget fact must keep over the best retain fact for ``sim_alone``
    sim_margin: float = 0.1
    # coverage (of its payload, or of its values' weight) from which a fact counts as present for
    # the ``multi`` rule and the session ledger
    multi_cov: float = 0.75
    # ... or this summed specificity of its values present anywhere in the text
    multi_val: float = 1.5
    # specificity of a value tied to a named entity from which its fact goes to the session ledger
    ledger_val: float = 0.6
    # what a check does when its audit record cannot be written: "block" (the decision becomes
    # blocked with reason guard_error), "raise" (AuditError), "warn" (log a warning, keep it)
    on_audit_error: str = "block"
    # a sentence is embedded up to this many characters
    max_sentence_chars: int = 400
    # coverage from which a named entity's fact is written to the session ledger
    ledger_cov: float = 0.4
    # facts of one forget entity a session may accumulate before every further check blocks
    mosaic_limit: int = 3
    # sessions kept in the ledger (least recently used dropped first)
    max_sessions: int = 10000
    # long inputs are checked in overlapping chunks of this many characters (never truncated)
    chunk_chars: int = 4000
    chunk_overlap: int = 1000
    # levels of nested base64/hex/URL encodings decoded
    decode_depth: int = 2
    # a check running longer than this blocks with reason guard_error
    timeout_ms: float = 2000.0
    # characters a StreamGuard holds back beyond the longest alias / fact n-gram
    holdback_margin: int = 16

    def check(self) -> None:
        """Reject impossible values."""
        require(
            0.0 < self.sim_margin < 1.0, "sim_margin", f"must be in (0, 1), got {self.sim_margin}"
        )
        require(
            0.0 < self.multi_cov <= 1.0, "multi_cov", f"must be in (0, 1], got {self.multi_cov}"
        )
        require(
            0.0 < self.ledger_cov <= 1.0, "ledger_cov", f"must be in (0, 1], got {self.ledger_cov}"
        )
        require(
            self.mosaic_limit >= 2, "mosaic_limit", f"must be at least 2, got {self.mosaic_limit}"
        )
        require(self.max_sessions >= 1, "max_sessions", "must be at least 1")
        require(
            self.chunk_chars >= 200, "chunk_chars", f"must be at least 200, got {self.chunk_chars}"
        )
        require(
            0 <= self.chunk_overlap < self.chunk_chars // 2,
            "chunk_overlap",
            f"must be in [0, chunk_chars/2), got {self.chunk_overlap}",
        )
        require(
            0 <= self.decode_depth <= 5,
            "decode_depth",
            f"must be in [0, 5], got {self.decode_depth}",
        )
        require(self.timeout_ms > 0, "timeout_ms", f"must be positive, got {self.timeout_ms}")
        require(self.holdback_margin >= 0, "holdback_margin", "must not be negative")
        require(
            0.0 < self.multi_val <= 10.0, "multi_val", f"must be in (0, 10], got {self.multi_val}"
        )
        require(
            0.0 < self.ledger_val <= 1.0, "ledger_val", f"must be in (0, 1], got {self.ledger_val}"
        )
        require(
            self.on_audit_error in ("block", "raise", "warn"),
            "on_audit_error",
            f"must be one of block, raise, warn; got {self.on_audit_error!r}",
        )
        require(self.max_sentence_chars >= 50, "max_sentence_chars", "must be at least 50")
        require(self.embedding_threads >= 0, "embedding_threads", "must not be negative")

    def thresholds(self, direction: str, semantic: bool) -> Thresholds:
        """The threshold set for a direction ("input"/"output") and mode (embeddings on/off)."""
        if direction == "input":
            return self.input if semantic else self.lexical_input
        return self.output if semantic else self.lexical_output
