"""``StreamGuard``: checks a streamed output chunk by chunk and releases only what is safe.

Each chunk is tokenized up to its last complete word (a trailing run of spaced-apart characters is
held too, so "B a s i l" is never cut), fed to one persistent ``Scanner`` (names across chunk
boundaries, content words, n-gram positions: the matcher state is carried, nothing is re-scanned),
and decided with the output thresholds. Text is released only once it is more than
``Guard.holdback_chars`` (the longest name or fact plus a margin) behind the newest consumed text,
so the words that complete a match are still held when it fires; after a hit nothing more is
released. ``close()`` runs what needs the whole text once (encoded segments, the semantic layer)
before releasing the rest.
"""

from __future__ import annotations

from typing import Any

from unlearn.guard.guard import Decision, Guard, conversation_text, error_decision, scan_views
from unlearn.guard.normalize import decoded_segments, fold, has_leet, skeleton, spaced_runs, tokens
from unlearn.guard.scanner import Scanner

_FORCE_FACTOR = 8  # pending text longer than this many holdbacks is cut even inside a spaced run


def _cut_point(text: str) -> int:
    """End of the last complete word of ``text``, before any trailing single-character run."""
    end = len(text)
    while end > 0 and not text[end - 1].isspace():
        end -= 1
    # hold trailing single characters ("... B a s") that may continue a spaced-out word
    while end > 0:
        j = end
        while j > 0 and text[j - 1].isspace():
            j -= 1
        k = j
        while k > 0 and not text[k - 1].isspace():
            k -= 1
        word = "".join(ch for ch in text[k:j] if ch.isalnum())
        if len(word) == 1:
            end = k
        else:
            break
    return end


class StreamGuard:
    """Guard a streamed output: ``out = sg.feed(chunk)`` releases safe text; ``sg.close()`` the rest."""

    def __init__(
        self,
        guard: Guard,
        context: Any = None,
        *,
        session: str | None = None,
        direction: str = "output",
    ):
        self.guard = guard
        self.session = session
        self.direction = direction
        self.decision: Decision | None = None
        self.blocked = False
        self.holdback = guard.holdback_chars
        self._pending = ""  # received, not yet consumed by the scanner
        self._held = ""  # received, not yet released (ends with _pending)
        self._all: list[str] = []
        try:
            entities = set(guard.ledger.entities(session)) if session is not None else set()
            if context is not None:
                ctx = Scanner(guard.index)
                scan_views(ctx, conversation_text(context), guard.config.decode_depth)
                entities |= ctx.active
            self.scanner = Scanner(guard.index, entities)
        except Exception:  # noqa: BLE001 - fail closed
            self._block(error_decision())

    @property
    def released_all(self) -> bool:
        """True once close() released everything (no block)."""
        return self.decision is not None and not self.blocked

    def _block(self, decision: Decision) -> None:
        self.blocked = True
        self.decision = decision
        self._held = self._pending = ""
        if decision.reason == "guard_error":
            self.guard._audit(decision, self.direction, self.session)

    def _consume(self, segment: str) -> None:
        folded = fold(segment)
        self.scanner.feed("base", tokens(folded))
        if has_leet(folded):
            self.scanner.feed_leet(tokens(skeleton(folded)))
        for run in spaced_runs(folded):
            self.scanner.feed_spaced(run)

    def _check(self) -> bool:
        decision = self.guard.decide(self.scanner.evidence(), self.direction, self.session)
        if decision.blocked:
            self.guard._audit(decision, self.direction, self.session)
            self._block(decision)
            return False
        self.decision = decision
        return True

    def feed(self, chunk: str) -> str:
        """Consume one chunk; return the text now safe to release ("" once blocked)."""
        if self.blocked:
            return ""
        try:
            if not isinstance(chunk, str):
                raise TypeError(f"chunks must be text, got {type(chunk).__name__}")
            self._all.append(chunk)
            self._pending += chunk
            self._held += chunk
            cut = _cut_point(self._pending)
            if cut == 0 and len(self._pending) > _FORCE_FACTOR * self.holdback:
                cut = len(self._pending) - self.holdback
            if cut > 0:
                segment, self._pending = self._pending[:cut], self._pending[cut:]
                self._consume(segment)
                if not self._check():
                    return ""
            releasable = len(self._held) - len(self._pending) - self.holdback
            if releasable <= 0:
                return ""
            out, self._held = self._held[:releasable], self._held[releasable:]
            return out
        except Exception:  # noqa: BLE001 - fail closed
            self._block(error_decision())
            return ""

    def close(self) -> str:
        """End of stream: final checks over the whole text, then release what is held."""
        if self.blocked:
            return ""
        try:
            if self._pending:
                self._consume(self._pending)
                self._pending = ""
            text = "".join(self._all)
            for i, seg in enumerate(decoded_segments(text, self.guard.config.decode_depth)):
                folded = fold(seg)
                self.scanner.feed(f"dec{i}", tokens(folded))
                if has_leet(folded):
                    self.scanner.feed_leet(tokens(skeleton(folded)))
            ev = self.scanner.evidence()
            if self.guard.semantic:
                sents = self.guard._sentences([text], ev)
                if sents:
                    self.guard._semantic(self.guard.embedder.encode(sents), ev)
            decision = self.guard.decide(ev, self.direction, self.session)
            if decision.blocked:
                self.guard._audit(decision, self.direction, self.session)
                self._block(decision)
                return ""
            self.decision = decision
            out, self._held = self._held, ""
            return out
        except Exception:  # noqa: BLE001 - fail closed
            self._block(error_decision())
            return ""
