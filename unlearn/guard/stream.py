"""``StreamGuard``: checks a streamed output chunk by chunk and releases only what is safe.

Each chunk is tokenized up to its last complete word (a trailing run of spaced-apart characters is
held too, so "B a s i l" is never cut) and fed, in every view, to one persistent ``Scanner``
(names across chunk boundaries, sentences, values, n-gram positions: the matcher state is
carried, nothing is re-scanned). Text is released only once it is more than
``Guard.holdback_chars`` (the longest name or fact plus a margin) behind the newest consumed text,
and only after a decision on everything consumed so far: the lexical layers, the encoded segments
(base64 / hex / URL-encoding) decoded from the consumed text, and the semantic layer on the
finished sentences about a forget entity (and on the unfinished one when the release reaches
into it). The derived views (encoded segments decoded in place, separated characters collapsed,
ROT13 words) are read window by window, each window ending at a gap that no segment or separated
run crosses; the unfinished window at the end of the consumed text holds the release before its
start. After a hit nothing more is released. ``close()`` decides once more on the whole text.
"""

from __future__ import annotations

from typing import Any

from unlearn.guard.guard import (
    Decision,
    Guard,
    conversation_text,
    decide,
    derived_views,
    error_decision,
    features,
    feed_text,
    feed_views,
    scan_views,
)
from unlearn.guard.normalize import fold, split_sentences, view_cut
from unlearn.guard.scanner import Evidence, Scanner

_FORCE_FACTOR = 8  # pending text longer than this many holdbacks is cut even inside a spaced run
RELEASE_STEP = 32  # characters released at least per decision (fewer decisions on tiny chunks)


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
        self._consumed = 0  # characters consumed so far
        self._released = 0  # characters released so far
        self._open_start = 0  # where the scanner's open sentence starts
        self._dec_text = ""  # consumed text not yet read for derived views
        self._decoded: list[tuple[str, str]] = []  # derived views of finished windows
        try:
            entities = set(guard.ledger.entities(session)) if session is not None else set()
            if context is not None:
                ctx = Scanner(guard.index)
                scan_views(ctx, conversation_text(context), guard.config.decode_depth)
                ev = ctx.evidence()
                entities |= ev.forget_mentioned | ev.retain_mentioned
            self.entities = entities
            self.scanner = Scanner(guard.index, entities)
        except Exception:  # noqa: BLE001 - fail closed
            self._block(error_decision())

    @property
    def released_all(self) -> bool:
        """True once close() released everything (no block)."""
        return self.decision is not None and not self.blocked

    def _audited(self, decision: Decision) -> Decision:
        """The decision after its audit record (a failed record may turn it into guard_error)."""
        out = self.guard._audit(decision, self.direction, self.session)
        return out if isinstance(out, Decision) else decision  # duck-typed guards return None

    def _block(self, decision: Decision, audited: bool = False) -> None:
        self.blocked = True
        self._held = self._pending = ""
        if not audited:
            decision = self._audited(decision)
        self.decision = decision

    def _consume(self, segment: str) -> None:
        feed_text(self.scanner, segment, "base")
        pieces = split_sentences(fold(segment))
        closed = [b for _a, b, _q, c in pieces if c]
        if closed:
            self._open_start = self._consumed + closed[-1]
        self._consumed += len(segment)
        self._dec_text += segment

    def _decode_new(self, final: bool) -> None:
        """Read the derived views of the consumed text up to the last gap that no encoded segment
        or separated run crosses (all of it at the end of the stream); what follows may still be
        growing and is read later."""
        text = self._dec_text
        cut = len(text) if final else view_cut(text)
        if cut <= 0:
            return
        window, self._dec_text = text[:cut], text[cut:]
        self._decoded.extend(
            derived_views(window, self.guard.config.decode_depth, self.guard.index)
        )

    def _evidence(self) -> Evidence:
        ev = self.scanner.evidence()
        if self._decoded:
            named = ev.forget_mentioned | ev.retain_mentioned | self.entities
            dec = Scanner(self.guard.index, named)
            for i, (tag, text) in enumerate(self._decoded):
                feed_views(dec, text, f"{tag}{i}")
            dec.close()
            ev.merge(dec.evidence())
        return ev

    def _decide(self, include_open: bool, final: bool) -> bool:
        """Decide on everything consumed; False (and blocked) on a hit."""
        g = self.guard
        self._decode_new(final)
        ev = self._evidence()
        if g.semantic:
            first = decide(
                features(ev, g.index, g.config), g.config.thresholds(self.direction, True), g.index
            )
            if not first.blocked:
                g.add_semantic([ev], include_open=include_open)
        decision = g.decide(ev, self.direction, self.session)
        if decision.blocked:
            self._block(self._audited(decision), audited=True)
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
            # never release an encoded segment or separated run that may still be growing
            tail = len(self._dec_text) - view_cut(self._dec_text) + 1
            releasable = len(self._held) - len(self._pending) - self.holdback - max(0, tail - 1)
            if releasable < RELEASE_STEP:
                return ""
            reaches_open = self._released + releasable > self._open_start
            if not self._decide(include_open=reaches_open, final=False):
                return ""
            out, self._held = self._held[:releasable], self._held[releasable:]
            self._released += len(out)
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
            self.scanner.close()
            if not self._decide(include_open=True, final=True):
                return ""
            out, self._held = self._held, ""
            self._released += len(out)
            return out
        except Exception:  # noqa: BLE001 - fail closed
            self._block(error_decision())
            return ""
