"""Normalization views: every text is matched in several canonical forms so that formatting,
look-alike characters, spacing, leetspeak and encodings do not hide a forgotten fact.

Views (each a function of the text alone, all linear in its length):

- ``fold``: Unicode NFKC, removal of zero-width / format / tag / variation-selector characters,
  homoglyph folding (Cyrillic and Greek look-alikes to Latin), casefold, diacritics stripped.
- ``skeleton`` / ``leet_tokens`` (leetspeak view): ``fold`` after mapping digits, symbols and
  multi-character glyphs (``|-|``, ``/\\``, ``|<``, ``()``, spaced apart or not) to the letters
  they imitate; ambiguous readings are merged into one class on both sides (``l``/``1``/``!``/``|``
  all read as ``i``; ``b``/``g``/``6``/``8``/``9`` as ``g``), and a token of digits only stays a
  number.
- ``joined`` view: punctuation inside words removed ("Al-Kuwaiti" -> "alkuwaiti", "B.a.s.i.l").
- ``spaced_words`` (spaced view): runs of single characters separated by gaps of any width
  ("B a s i l", "B   a   s", "b.a.s.i.l") collapsed; where the gaps have two widths the wider ones
  are word boundaries, so the words come back as tokens.
- ``sentence_spans``: sentence boundaries (a full stop after an initial is not one) and whether a
  sentence is a question.
- ``value_keys``: numbers (digits, number words, ordinals, "nineteen fifty-six"), months and
  month-day dates (numeric in both orders, or "the 8th of September") as canonical keys.
- ``decoded_segments``: base64, hex and URL-encoded segments decoded (bounded depth).
- ``rot13``: the text under ROT13 (then folded).
"""

from __future__ import annotations

import base64
import binascii
import re
import sys
import unicodedata
import urllib.parse
from collections.abc import Sequence

from unlearn.guard import confusables as _confusables

# ---------------------------------------------------------------------------------------------
# Character tables, built once at import.

# Latin look-alikes (UTS #39 confusables with Latin prototypes, ``unlearn/guard/confusables.py``),
# case kept: applied before casefolding, since a capital and its small letter may imitate different
# Latin letters (Greek capital eta reads H, small eta reads n)
LOOKALIKES = _confusables.load()
# look-alikes of i / l / I: which Latin letter they stand for is ambiguous (the leetspeak view,
# which reads i, l, 1 and | as one letter, is consulted whenever one occurs)
_AMBIGUOUS = frozenset(
    ch
    for ch, t in LOOKALIKES.items()
    if t in ("i", "l", "I", "ll", "ii") and unicodedata.category(ch) != "Nd"
)

_LEET = {
    "0": "o", "1": "i", "!": "i", "|": "i", "l": "i", "3": "e", "4": "a", "@": "a", "5": "s",
    "$": "s", "7": "t", "+": "t", "8": "g", "9": "g", "6": "g", "b": "g", "2": "z", "(": "c",
    "€": "e",
    "^": "a", "<": "c", "{": "c", "[": "c", "¢": "c", "#": "h", "£": "i", "¥": "y", "×": "x",
    "µ": "u", "¡": "i", "®": "r", "©": "c", "§": "s",
}  # fmt: skip
# multi-character glyphs, longest first (applied to folded text before the single characters)
_LEET_MULTI = {
    "|\\/|": "m", "/\\/\\": "m", "|\\|": "n", "/\\/": "n", "|-|": "h", "]-[": "h",
    "}-{": "h", ")-(": "h", "\\/\\/": "w", "\\^/": "w", "|_|": "u", "(_)": "u", "\\/": "v",
    "/\\": "a", "|<": "k", "|{": "k", "><": "x", "|)": "d", "|]": "d", "|2": "r", "|_": "i",
    "|3": "g", "|o": "p",
    "()": "o", "[]": "o", "|*": "p", "|>": "p",
}  # fmt: skip


def _build_tables() -> tuple[dict[int, object], dict[int, None]]:
    """(look-alike + format-removal table, combining-mark removal table). Decimal digits of every
    script read as ASCII digits; format characters (zero-width, soft hyphen, bidi, tags) go."""
    pre: dict[int, object] = {ord(k): v for k, v in LOOKALIKES.items()}
    marks: dict[int, None] = {}
    ranges = [(0x80, 0x30000), (0xE0000, 0xE1000)]
    for lo, hi in ranges:
        for cp in range(lo, min(hi, sys.maxunicode + 1)):
            ch = chr(cp)
            cat = unicodedata.category(ch)
            if cat == "Cf":  # zero-width space/joiners, soft hyphen, bidi marks, BOM, tags
                pre[cp] = None
            elif cat == "Mn" or cat == "Me":
                marks[cp] = None
            elif cat == "Nd":
                pre[cp] = str(unicodedata.decimal(ch))
    for cp in list(range(0xFE00, 0xFE10)) + list(range(0xE0100, 0xE01F0)):  # variation selectors
        pre[cp] = None
    pre[0x180E] = None  # Mongolian vowel separator (Cf in older Unicode versions)
    pre[0x034F] = None  # combining grapheme joiner
    return pre, marks


_PRE, _MARKS = _build_tables()
_FOLD = {**_MARKS, **_PRE}
_NON_ASCII = re.compile(r"[^\x00-\x7f]+")
_LEET_TABLE = str.maketrans(_LEET)
_ROT13 = str.maketrans(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
    "nopqrstuvwxyzabcdefghijklmNOPQRSTUVWXYZABCDEFGHIJKLM",
)
_ROT13_BYTES = bytes.maketrans(
    b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
    b"nopqrstuvwxyzabcdefghijklmNOPQRSTUVWXYZABCDEFGHIJKLM",
)
_TOKEN = re.compile(r"[^\W_]+")
_LEET_HINT = re.compile(r"[a-z][0-9@$!|+(€^<{\[#£¥]|[0-9@$!|+(€^<{\[#£¥][a-z]")
_LEET_MULTI_RE = re.compile(
    "|".join(re.escape(k) for k in sorted(_LEET_MULTI, key=len, reverse=True))
)
# a run of >= 4 single characters, each separated by a gap of any width of non-word characters
# (no newline)
_SPACED = re.compile(r"(?<![^\W_])[^\W_](?![^\W_])(?:[^\w\n]+[^\W_](?![^\W_])){3,}")
_SPACED_GAP = re.compile(r"[^\w\n]+")
_INNER_PUNCT = re.compile(r"(?<=[^\W_])(?:[^\w\s'\u2019]|_)+(?=[^\W_])")
_NONWORD = re.compile(r"[\W_]+")
_URL = re.compile(r"%[0-9A-Fa-f]{2}")

STOPWORDS = frozenset(
    """a an the and or but if of to in on at by for with from as is are was were be been being
    am do does did has have had having it its this that these those there here he she they them
    his her their hers theirs him i me my we our you your who whom whose which what when where
    why how not no nor so than then too very can could would should will shall may might must
    s t into about also just only such some any all each both more most other over under up down
    out off again once same own one""".split()
)


def clean(text: str) -> str:
    """NFKC, format/zero-width/tag characters removed, look-alikes read as Latin; case kept."""
    if text.isascii():  # nothing to normalize (fast path for the common case)
        return text
    return unicodedata.normalize("NFKC", text).translate(_PRE)


def _translate_non_ascii(text: str, table: dict[int, object]) -> str:
    """``text.translate(table)`` applied to the non-ASCII runs only (the table maps no ASCII)."""
    return _NON_ASCII.sub(lambda m: m.group(0).translate(table), text)


def _unmarked(text: str) -> str:
    """NFKC then NFD, with format characters and combining marks removed and look-alikes read as
    Latin (case kept): a letter's diacritics never hide the letter (Greek eta with tonos reads n)."""
    out = unicodedata.normalize("NFD", unicodedata.normalize("NFKC", text))
    return _translate_non_ascii(out, _FOLD)


def fold(text: str) -> str:
    """The base matching view: ``clean``, diacritics stripped, casefold."""
    if text.isascii():
        return text.lower()
    # look-alikes are read before casefolding (a capital and its small letter may imitate
    # different Latin letters); what casefolding turns out afterwards is read once more
    out = _unmarked(text)
    if out.isascii():
        return out.lower()
    return _translate_non_ascii(unicodedata.normalize("NFD", out.casefold()), _FOLD)


def ambiguous_glyphs(text: str) -> bool:
    """True when a text holds a look-alike of i / l / I (Greek iota, Cyrillic palochka, ...)."""
    return not text.isascii() and not _AMBIGUOUS.isdisjoint(text)


def tokens(folded: str) -> list[str]:
    """Word tokens of an already folded text (letters and digits; punctuation separates)."""
    return _TOKEN.findall(folded)


def skeleton(folded: str) -> str:
    """The leetspeak view of a folded text: digits/symbols read as letters, ``l`` read as ``i``."""
    if "|" in folded or "/" in folded or "(" in folded or "[" in folded or ">" in folded:
        folded = _LEET_MULTI_RE.sub(lambda m: _LEET_MULTI[m.group(0)], folded)
    return folded.translate(_LEET_TABLE)


_LEET_SPACED_HINT = re.compile(
    r"(?<!\S)[a-z][^\S\n]+[0-9@$!|+(€^<{\[#£¥](?!\S)|(?<!\S)[0-9@$!|+(€^<{\[#£¥][^\S\n]+[a-z](?!\S)"
)


def has_leet(folded: str) -> bool:
    """True when a folded text mixes letters with digits/symbols inside words, or spaced apart
    ("m € a $ 7 u"), or holds multi-character glyphs (leetspeak hint)."""
    return (
        _LEET_HINT.search(folded) is not None
        or _LEET_MULTI_RE.search(folded) is not None
        or _LEET_SPACED_HINT.search(folded) is not None
    )


_LEET_RAW = re.compile(r"[\w@$!|+(<{\[#^€£¥¢©®§¡µ×]+")


# multi-character glyphs spaced apart ("| \\ / |"): the characters of one glyph, single spaces
_LEET_MULTI_SPACED = re.compile(
    "|".join(
        " ?".join(re.escape(ch) for ch in k) for k in sorted(_LEET_MULTI, key=len, reverse=True)
    )
)


def collapse_glyph_gaps(folded: str) -> str:
    """Multi-character glyphs written with spaces between their characters read as their letter
    ("| \\ / |" -> "m"); other characters are left as they are."""
    return _LEET_MULTI_SPACED.sub(lambda m: _LEET_MULTI[m.group(0).replace(" ", "")], folded)


def has_leet_glyphs(folded: str) -> bool:
    """True when a folded text holds multi-character leetspeak glyphs (``|-|``, ``|3``, ``()``)."""
    return _LEET_MULTI_RE.search(folded) is not None


def leet_tokens(folded: str, glyphs: bool = True) -> list[str]:
    """Tokens of the leetspeak view: glyphs read as letters; a token of digits alone stays a number.

    ``glyphs=False`` reads every character on its own (``|3`` as ``ie``, not ``b``): the second
    reading of a text whose multi-character glyphs may be two letters ("c3|3$7!n3" is "celestine").
    """
    if glyphs and (
        "|" in folded or "/" in folded or "(" in folded or "[" in folded or ">" in folded
    ):
        folded = _LEET_MULTI_RE.sub(lambda m: _LEET_MULTI[m.group(0)], folded)
    out: list[str] = []
    for raw in _LEET_RAW.findall(folded):
        if raw.isdigit():
            out.append(raw)
        else:
            out.extend(_TOKEN.findall(raw.translate(_LEET_TABLE)))
    return out


def joined(folded: str) -> str | None:
    """The text with punctuation inside words removed (None when there is none)."""
    out = _INNER_PUNCT.sub("", folded)
    return out if out != folded else None


def rot13(text: str) -> str:
    """ROT13 of the ASCII letters of a text (fold afterwards: accented letters are not rotated)."""
    if text.isascii():
        return text.encode("ascii").translate(_ROT13_BYTES).decode("ascii")
    return text.translate(_ROT13)


def spaced_words(folded: str) -> list[tuple[int, list[str], str]]:
    """Each run of spaced-apart single characters: (start offset, its words, the run collapsed).

    Gaps may have any width and hold punctuation ("B a s i l", "B   a   s", "b.a.s.i.l",
    "A l - K u w a i t i"). Where a run's gaps have more than one width, the gaps wider than the
    narrowest are word boundaries; a run with one gap width is one word (the collapsed string).
    """
    out = []
    for m in _SPACED.finditer(folded):
        run = m.group(0)
        chars = _NONWORD.split(run)
        gaps = _SPACED_GAP.findall(run)
        widths = [len(g) for g in gaps]
        words, cur = [], chars[0] if chars else ""
        last = len(widths) - 1
        for k, (ch, w) in enumerate(zip(chars[1:], widths)):
            # a word boundary is a gap wider than one of its neighbours
            left = widths[k - 1] if k > 0 else w
            right = widths[k + 1] if k < last else w
            if w > min(left, right):
                words.append(cur)
                cur = ch
            else:
                cur += ch
        words.append(cur)
        out.append((m.start(), [w for w in words if w], "".join(chars)))
    return out


def spaced_runs(folded: str) -> list[str]:
    """The spaceless view: each run of spaced-apart characters, collapsed."""
    return [blob for _, _, blob in spaced_words(folded)]


def spaceless(folded: str) -> str:
    """A folded text with everything but letters and digits removed."""
    return _NONWORD.sub("", folded)


_STEMS: dict[str, str] = {}


def stem(token: str) -> str:
    """A light suffix stripper (plural / past / gerund) so that 'works' and 'worked' meet."""
    s = _STEMS.get(token)
    if s is None:
        if len(_STEMS) > 200_000:
            _STEMS.clear()
        s = _STEMS[token] = _stem(token)
    return s


def _stem(token: str) -> str:
    n = len(token)
    if n > 4 and token.endswith("ies"):
        return token[:-3] + "y"
    if n > 4 and token.endswith("ied"):
        return token[:-3] + "y"
    if n > 5 and token.endswith("ing"):
        return _undouble(token[:-3])
    if n > 4 and token.endswith("ed") and not token.endswith("eed"):
        return _undouble(token[:-2])
    if n > 4 and token.endswith("es") and (token[-3] in "sxz" or token[-4:-2] in ("ch", "sh")):
        return token[:-2]
    if n > 3 and token.endswith("s") and not token.endswith(("ss", "us", "is")):
        token = token[:-1]
    if len(token) > 3 and token.endswith("e") and not token.endswith("ee"):
        return token[:-1]  # 'write' / 'writing' / 'writes' meet at 'writ'
    return token


def _undouble(base: str) -> str:
    """'travell' -> 'travel', 'stopp' -> 'stop' (a doubled final consonant of -ed / -ing)."""
    if len(base) > 3 and base[-1] == base[-2] and base[-1] not in "aeiouslz":
        return base[:-1]
    return base


def _printable(text: str) -> bool:
    if not text:
        return False
    good = sum(1 for ch in text if ch.isprintable() or ch in "\n\t\r")
    return good / len(text) >= 0.9 and any(ch.isalnum() for ch in text)


def _wordlike(text: str) -> bool:
    """A short decoded text that reads as words or a number: every character printable, at least
    two letters or digits, and four in five of them letters, digits or spaces (random bytes that
    happen to be printable are mostly punctuation)."""
    if not text.isprintable():
        return False
    alnum = sum(1 for ch in text if ch.isalnum())
    spaces = text.count(" ")
    return alnum >= 2 and (alnum + spaces) >= 0.8 * len(text)


def _decode_bytes(raw: bytes, short: bool = False) -> str | None:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if short:
        return text if _wordlike(text) else None
    return text if _printable(text) else None


SHORT_SEGMENT = 16  # encoded segments shorter than this must look encoded and decode to words


def _b64_shaped(segment: str) -> bool:
    """Whether a run of base64 characters looks encoded rather than like a word: long, padded,
    letters mixed with digits, or a capital after the first character ("dGFtZSByYXZlbg"); plain
    words ("test", "Ares", "Paris") are not decoded."""
    body = segment.rstrip("=")
    if len(body) < 4 or len(body) % 4 == 1:
        return False
    if len(segment) >= SHORT_SEGMENT or segment.endswith("="):
        return True
    has_digit = any(ch.isdigit() for ch in body)
    has_alpha = any(ch.isalpha() for ch in body)
    inner_cap = any(ch.isupper() for ch in body[1:]) and any(ch.islower() for ch in body)
    return (has_digit and has_alpha) or inner_cap


def _try_base64(segment: str) -> str | None:
    seg = segment.rstrip("=")
    pad = "=" * (-len(seg) % 4)
    short = len(segment) < SHORT_SEGMENT
    for alt in (False, True):
        try:
            if alt:
                raw = base64.urlsafe_b64decode(seg + pad)
            else:
                raw = base64.b64decode(seg + pad, validate=True)
        except (binascii.Error, ValueError):
            continue
        text = _decode_bytes(raw, short)
        if text is not None:
            return text
    return None


def _try_hex(segment: str) -> str | None:
    digits = re.sub(r"[ :]", "", segment)
    if len(digits) % 2:
        if len(digits) < SHORT_SEGMENT:
            return None
        digits = digits[:-1]
    try:
        return _decode_bytes(bytes.fromhex(digits), len(digits) < SHORT_SEGMENT)
    except ValueError:
        return None


def _url_decoded(text: str) -> str | None:
    """The whole text URL-decoded, when it holds at least two %XX escapes."""
    if len(_URL.findall(text)) < 2:
        return None
    try:
        decoded = urllib.parse.unquote_plus(text, errors="strict")
    except UnicodeDecodeError:
        return None
    return decoded if decoded != text and _printable(decoded) else None


# encoded segments of any length: hex (3 bytes or more written together, 8 or more with spaces or
# colons between the bytes) and base64 / base64url (4 characters or more); the surrounding
# characters must not continue the segment
_B64_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/_-")
_HEX_WORD = re.compile(r"(?:[0-9A-Fa-f]{2}){3,}")
_HEX_SPACED = re.compile(r"(?<![0-9A-Za-z])(?:[0-9A-Fa-f]{2}[ :]){7,}[0-9A-Fa-f]{2}(?![0-9A-Za-z])")
# where an encoded segment may be: a digit, + / =, a capital inside a word, 16 base64 characters
# in a row (ordinary words have none of these, so most text is never looked at further)
_ENC_HINT = re.compile(r"[0-9+/=]|[a-z][A-Z]|[A-Z]{2}[a-z]|[A-Za-z0-9+/_\-]{16}")


def _candidate_runs(raw: str) -> list[tuple[int, int]]:
    """(start, end) of each run of base64 characters (with its = padding) that holds a hint."""
    out: list[tuple[int, int]] = []
    last, n, chars = -1, len(raw), _B64_CHARS
    for m in _ENC_HINT.finditer(raw):
        p = m.start()
        if p < last:
            continue
        a = p
        while a > 0 and raw[a - 1] in chars:
            a -= 1
        b = p
        while b < n and raw[b] in chars:
            b += 1
        pad = b
        while pad < n and pad - b < 2 and raw[pad] == "=":
            pad += 1
        last = max(pad, p + 1)
        if pad < n and raw[pad] == "=":
            continue  # three = or more: not base64 padding
        # a run after "=" is a segment of its own ("key=<base64>", a segment's padding followed
        # by another segment): an attacker must not hide a segment behind an assignment
        if b > a:
            out.append((a, pad))
    return out


def encoded_spans(raw: str) -> list[tuple[int, int, str]]:
    """(start, end, decoded text) of each hex / base64 segment of ``raw`` that decodes to text,
    left to right, not overlapping. A segment shorter than ``SHORT_SEGMENT`` must look encoded
    (``_b64_shaped``; hex: digits) and decode to word-like text, so ordinary words and numbers
    stay as they are."""
    out: list[tuple[int, int, str]] = []
    runs = _candidate_runs(raw)
    if not runs:
        return out
    taken: list[tuple[int, int]] = []
    if len(runs) >= 8:  # hex bytes written apart ("6a 65 77 ..."): eight runs at least
        for m in _HEX_SPACED.finditer(raw):
            decoded = _try_hex(m.group(0))
            if decoded is not None:
                out.append((m.start(), m.end(), decoded))
                taken.append((m.start(), m.end()))
    for a, b in runs:
        if taken and any(a < e and s < b for s, e in taken):
            continue
        seg = raw[a:b]
        if _HEX_WORD.fullmatch(seg) and not seg.isalpha():  # "deadbeef" is a word, not hex
            decoded = _try_hex(seg)
            if decoded is not None:
                out.append((a, b, decoded))
                continue
        if not _b64_shaped(seg):
            continue
        if len(seg) < SHORT_SEGMENT and seg.isdigit():
            continue  # a plain number is not base64
        decoded = _try_base64(seg)
        if decoded is not None:
            out.append((a, b, decoded))
    out.sort()
    return out


def decode_spliced(text: str, depth: int = 2) -> str | None:
    """The text with every encoded segment (URL-encoding, hex, base64) replaced in place by what it
    decodes to, so that a name in clear text and a decoded value meet in one sentence; repeated
    on the result up to ``depth`` levels (nested encodings). None when nothing decodes."""
    if depth <= 0:
        return None
    cur = clean(text)
    changed = False
    for _ in range(depth):
        nxt = _url_decoded(cur)
        if nxt is None:
            spans = encoded_spans(cur)
            if not spans:
                break
            parts, pos = [], 0
            for a, b, decoded in spans:
                parts.append(cur[pos:a])
                parts.append(decoded)
                pos = b
            parts.append(cur[pos:])
            nxt = "".join(parts)
        cur, changed = nxt, True
    return cur if changed else None


def decoded_segments(text: str, depth: int = 2) -> list[str]:
    """Texts hidden in ``text`` as base64, hex or URL-encoding, decoded up to ``depth`` levels.

    Works on the raw text (base64 is case-sensitive). Every decodable segment is returned, none is
    dropped; a decoded text is itself searched for further encodings while ``depth`` allows.
    """
    if depth <= 0:
        return []
    raw = clean(text)
    out: list[str] = []
    seen: set[str] = set()
    url = _url_decoded(raw)
    if url is not None:
        seen.add(url)
        out.append(url)
        out.extend(decoded_segments(url, depth - 1))
    for _a, _b, decoded in encoded_spans(raw):
        if decoded in seen:
            continue
        seen.add(decoded)
        out.append(decoded)
        out.extend(decoded_segments(decoded, depth - 1))
    return out


_ROT_WORD = re.compile(r"[A-Za-z]{3,}")


def rot13_words(text: str, known: frozenset[str] | set[str]) -> str | None:
    """The text with each word that is unknown but whose ROT13 is known rotated in place ("plays
    the onffbba" -> "plays the bassoon"): ROT13 applied to a word or a phrase, not the whole text.
    ``known``: folded words of the index vocabulary. None when no content word turns known."""
    src = text if text.isascii() else clean(text)
    low = src.lower()
    hits = known.intersection(_ROT_WORD.findall(rot13(low)))  # rotated words that are known
    if not hits:
        return None
    rotate = {rot13(r) for r in hits} - known  # ... and whose written form is not
    if not rotate or all(rot13(w) in STOPWORDS for w in rotate):
        return None
    return _ROT_WORD.sub(
        lambda m: rot13(m.group(0)) if m.group(0).lower() in rotate else m.group(0), src
    )


# ---------------------------------------------------------------------------------------------
# Separated characters: "S_7_3_n_d", "M.@.!.5", "T·h·o·r", "7. h. 3   0. c. c" collapsed.

_INVISIBLE = {
    cp: None for cp, v in _FOLD.items() if v is None
}  # format characters and combining marks
# a separator between single characters ("_7_", ".@."), or four single-character chunks in a row
_SEP_GATE = re.compile(r"([^\w\s]|_)\S\1")
_RUN_GATE = re.compile(r"\s\S[^\w\s]?[^\S\n]+\S[^\w\s]?[^\S\n]+\S[^\w\s]?[^\S\n]+\S(?!\S)")
_GAP_SPLIT = re.compile(r"([^\S\n]+)")
_CLAUSE_PUNCT = ".,;:!?"
MIN_SEPARATED = 4  # glyphs of one separated word, or of a run of single-glyph chunks


_OPEN = "([{\"'\u201c\u2018\u00ab"
_CLOSE = ")]}\"'\u201d\u2019\u00bb" + _CLAUSE_PUNCT


def _internal(chunk: str) -> tuple[str, int, str] | None:
    """A chunk written with one separator between its characters ("S_7_3_n_d", "M.@.!.5"):
    (collapsed, glyphs, separator). Clause punctuation or a bracket written against the first or
    last character stays outside ("(p_3_t)." -> "(p3t)."); a trailing separator that is clause
    punctuation is kept."""
    if len(chunk) < 3:
        return None
    variants = [("", chunk, "")]
    lead = chunk[0] if chunk[0] in _OPEN else ""
    k = len(chunk)
    while k > 1 and chunk[k - 1] in _CLOSE and chunk[k - 2] != chunk[k - 1]:
        k -= 1
    if lead or k < len(chunk):
        variants.append((lead, chunk[len(lead) : k], chunk[k:]))
    for lead, core, trail in variants:
        got = _separated(core)
        if got is not None:
            return lead + got[0] + trail, got[1], got[2]
    return None


def _separated(chunk: str) -> tuple[str, int, str] | None:
    if len(chunk) < 3:
        return None
    counts: dict[str, int] = {}
    for ch in chunk:
        if not ch.isalnum() and ch not in "'\u2019":
            counts[ch] = counts.get(ch, 0) + 1
    if not counts:
        return None
    # the character between the first two glyphs, else the most frequent one ("(.@": ".")
    seps = [chunk[1]] if chunk[1] in counts else []
    seps += [c for c in sorted(counts, key=counts.get, reverse=True) if c not in seps][:2]
    for sep in seps:
        glyphs = [p for p in re.split(re.escape(sep) + "+", chunk) if p]
        if len(glyphs) < 2 or any(len(p) > 1 for p in glyphs):
            continue
        out = "".join(glyphs)
        if chunk.endswith(sep) and sep in _CLAUSE_PUNCT:
            out += sep
        return out, len(glyphs), sep
    return None


def _single(chunk: str) -> tuple[str, str] | None:
    """A chunk of one glyph, optionally followed by one separator ("7.", "h", "$"): (glyph, sep)."""
    if len(chunk) == 1:
        return chunk, ""
    if len(chunk) == 2 and not chunk[1].isalnum():
        return chunk[0], chunk[1]
    return None


def _collapse_line(line: str) -> str | None:
    parts = _GAP_SPLIT.split(line)
    chunks, gaps = parts[0::2], parts[1::2]  # gaps[i] lies between chunks[i] and chunks[i + 1]
    n = len(chunks)
    out: list[str | None] = [None] * n  # replacement per chunk ("" to drop it)
    join_left = [False] * n  # chunk i joins chunk i - 1 without the gap (inside a word)
    internal = [_internal(c) for c in chunks]
    # a separator that writes one word of MIN_SEPARATED characters or more makes its shorter
    # words count too ("a_s", "0.f"); abbreviations alone ("U.S.A.", "e.g.") are left as written
    words = {r[2] for r in internal if r is not None and r[1] >= MIN_SEPARATED}
    for i, r in enumerate(internal):
        if r is not None and r[2] in words:
            out[i] = r[0]
    # runs of single-glyph chunks; gaps wider than the run's narrowest are word boundaries
    singles = [_single(c) if out[i] is None else None for i, c in enumerate(chunks)]
    i = 0
    while i < n:
        if singles[i] is None:
            i += 1
            continue
        j = i
        while j + 1 < n and singles[j + 1] is not None:
            j += 1
        if j - i + 1 >= MIN_SEPARATED:
            widths = [len(gaps[k]) for k in range(i, j)]
            narrow = min(widths)
            seps = [singles[k][1] for k in range(i, j + 1) if singles[k][1]]
            run_sep = max(set(seps), key=seps.count) if seps else ""
            for k in range(i, j + 1):
                glyph, sep = singles[k]
                if k > i and widths[k - i - 1] == narrow:
                    join_left[k] = True
                last = k == j or widths[k - i] > narrow
                if glyph == run_sep and not sep and k != j:
                    out[k] = ""  # a separator left alone (its character was a combining mark)
                else:
                    out[k] = glyph + (sep if last and sep in _CLAUSE_PUNCT else "")
        i = j + 1
    if all(o is None for o in out):
        return None
    pieces = [out[0] if out[0] is not None else chunks[0]]
    for k in range(1, n):
        if not join_left[k]:
            pieces.append(" ")  # the line's gaps were word separators of the disguise
        pieces.append(out[k] if out[k] is not None else chunks[k])
    return "".join(pieces)


def collapse_separated(text: str) -> str | None:
    """The text with every word written as separated characters collapsed back into a word:
    one separator between the characters ("S_7_3_n_d", "M.@.!.5", "T·h·o·r", "L-o-u"), or one
    character per chunk with gaps of any width ("7. h. 3   0. c. c. u. p"; wider gaps between
    words), whatever the characters are (letters, leetspeak symbols, look-alikes); zero-width and
    combining characters are removed first. The other views then read the words (leetspeak,
    look-alikes). None when nothing is separated."""
    if not text.isascii():
        text = unicodedata.normalize("NFD", unicodedata.normalize("NFKC", text))
        text = _translate_non_ascii(text, _INVISIBLE)
    if _SEP_GATE.search(text) is None and _RUN_GATE.search(" " + text) is None:
        return None
    lines = text.split("\n")
    changed = False
    for i, line in enumerate(lines):
        gate = _SEP_GATE.search(line) or _RUN_GATE.search(" " + line)
        got = _collapse_line(line) if gate else None
        if got is not None and got != line:
            lines[i] = got
            changed = True
    return "\n".join(lines) if changed else None


def view_cut(text: str) -> int:
    """End of the longest prefix of a streamed text that the derived views can read on their own:
    just after the last gap (or newline) whose preceding chunk no separated run continues, so no
    encoded segment, separated word or run of single characters is cut (0: no such gap)."""
    end = len(text)
    while end > 0:
        k = max(text.rfind(" ", 0, end), text.rfind("\n", 0, end), text.rfind("\t", 0, end))
        if k < 0:
            return 0
        if text[k] == "\n":
            return k + 1
        i = k
        while i > 0 and text[i - 1].isspace() and text[i - 1] != "\n":
            i -= 1
        j = i
        while j > 0 and not text[j - 1].isspace():
            j -= 1
        if j == i:  # the gap starts the text or a line
            return k + 1
        if _single(text[j:i]) is None:
            return k + 1
        end = j  # one character (and a separator): a spaced run may go on through this gap
    return 0


# ---------------------------------------------------------------------------------------------
# Sentences.

_BOUNDARY = re.compile(r"[.!?\u3002]+[\"'\u201d\u2019)\]]*(?=\s|$)|\n")


def split_sentences(folded: str) -> list[tuple[int, int, bool, bool]]:
    """(start, end, is_question, closed) of each sentence piece; the last piece is open (closed
    False) when the text does not end at a boundary. A full stop after a single letter (an
    initial, a spaced-out word) does not end a sentence."""
    out: list[tuple[int, int, bool, bool]] = []
    start = 0
    for m in _BOUNDARY.finditer(folded):
        end = m.end()
        mark = m.group(0)
        if mark[0] == ".":
            j = m.start()
            k = j
            while k > 0 and folded[k - 1].isalnum():
                k -= 1
            if j - k == 1 and folded[k].isalpha():  # "J. K. Rowling", "B. a. s. i. l."
                continue
        if folded[start:end].strip():
            out.append((start, end, "?" in mark, True))
        start = end
    if folded[start:].strip():
        out.append((start, len(folded), False, False))
    return out


def sentence_spans(folded: str) -> list[tuple[int, int, bool]]:
    """(start, end, is_question) of each sentence of a folded text."""
    return [(a, b, q) for a, b, q, _ in split_sentences(folded)] or [(0, len(folded), False)]


def fold_cased(text: str) -> str:
    """``fold`` without the casefold (for telling capitalized words apart)."""
    if text.isascii():
        return text
    return _unmarked(text)


def capitalized(cased: str) -> list[bool]:
    """Per token of ``cased`` (same tokenization as ``tokens``): written like a name (a capital
    letter, then not all capitals: "Layla" yes, "FYI" no)."""
    return [t[:1].isupper() and not t.isupper() for t in _TOKEN.findall(cased)]


# ---------------------------------------------------------------------------------------------
# Values: numbers, months and dates as canonical keys ("#1956", "mon:9", "md:9-8").

_UNITS = {
    w: i
    for i, w in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
        "fifteen sixteen seventeen eighteen nineteen".split()
    )
}
_TENS = {
    w: 10 * (i + 2)
    for i, w in enumerate("twenty thirty forty fifty sixty seventy eighty ninety".split())
}
_ORD_UNITS = {
    w: i + 1
    for i, w in enumerate(
        "first second third fourth fifth sixth seventh eighth ninth tenth eleventh twelfth thirteenth "
        "fourteenth fifteenth sixteenth seventeenth eighteenth nineteenth".split()
    )
}
_ORD_TENS = {
    w: 10 * (i + 2)
    for i, w in enumerate(
        "twentieth thirtieth fortieth fiftieth sixtieth seventieth eightieth ninetieth".split()
    )
}
_SCALES = {"hundred": 100, "thousand": 1000, "million": 1_000_000}
_ORD_SCALES = {"hundredth": 100, "thousandth": 1000}
NUMBER_WORDS = (
    frozenset(_UNITS)
    | frozenset(_TENS)
    | frozenset(_ORD_UNITS)
    | frozenset(_ORD_TENS)
    | frozenset(_SCALES)
    | frozenset(_ORD_SCALES)
)
MONTHS = {
    "january": 1, "jan": 1, "february": 2, "feb": 2, "march": 3, "mar": 3, "april": 4, "apr": 4,
    "may": 5, "june": 6, "jun": 6, "july": 7, "jul": 7, "august": 8, "aug": 8, "september": 9,
    "sep": 9, "sept": 9, "october": 10, "oct": 10, "november": 11, "nov": 11, "december": 12,
    "dec": 12,
}  # fmt: skip
_ORDINAL_DIGITS = re.compile(r"^(\d{1,4})(?:st|nd|rd|th)$")
_NUMERIC_DATE = re.compile(r"(?<!\d)(\d{1,4})[/.\-](\d{1,2})[/.\-](\d{1,4})(?!\d)")
_THOUSANDS = re.compile(r"(?<!\d)\d{1,3}(?:,\d{3})+(?!\d)")


def _word_value(t: str) -> tuple[int, str] | None:
    """(value, kind) of one number word: kind "u" unit/teen, "t" tens, "s" scale."""
    if t in _UNITS:
        return _UNITS[t], "u"
    if t in _ORD_UNITS:
        return _ORD_UNITS[t], "u"
    if t in _TENS:
        return _TENS[t], "t"
    if t in _ORD_TENS:
        return _ORD_TENS[t], "t"
    if t in _SCALES:
        return _SCALES[t], "s"
    if t in _ORD_SCALES:
        return _ORD_SCALES[t], "s"
    return None


def _parse_words(run: list[tuple[int, str]]) -> set[int]:
    """Values of a run of number words: the cardinal reading and the year reading
    ("nineteen fifty six" -> 1956, "twenty twenty one" -> 2021)."""
    out: set[int] = set()
    total, current = 0, 0
    for v, kind in run:
        if kind == "s":
            if v == 100:
                current = max(current, 1) * 100
            else:
                total += max(current, 1) * v
                current = 0
        else:
            current += v
    out.add(total + current)
    # year reading: two groups of < 100 each
    groups: list[int] = []
    for v, kind in run:
        if kind == "s":
            return out
        if kind == "t" or not groups or groups[-1] % 10 != 0 or groups[-1] < 20 or v >= 10:
            groups.append(v)
        else:
            groups[-1] += v
    if len(groups) == 2 and 10 <= groups[0] <= 29:
        second = groups[1]
        out.add(groups[0] * 100 + second)
    if len(groups) == 3 and groups[1] == 0:  # "nineteen oh five" is not parsed; "zero" is rare
        pass
    return out


_NUMERIC_WORDS = NUMBER_WORDS | frozenset(MONTHS)
_HAS_DIGIT = re.compile(r"\d")


# cardinals only: an ordinal would swallow the next word ("nineteen|thirty" not "nineteenth|irty")
_CARDINALS = sorted({*_UNITS, *_TENS, *_SCALES, "and"}, key=len, reverse=True)
_NUMBER_WORD_RUN = re.compile("(?:(?:" + "|".join(_CARDINALS) + "))+")
_NUMBER_WORD = re.compile("|".join(_CARDINALS))


def blob_numbers(blob: str) -> set[str]:
    """``#N`` keys of number words run together in a spaceless string ("nineteenfortysix")."""
    out: set[str] = set()
    for m in _NUMBER_WORD_RUN.finditer(blob):
        words = _NUMBER_WORD.findall(m.group(0))
        if any(w != "and" for w in words) and len(m.group(0)) >= 5:
            out |= value_keys(words)
    return out


def value_keys(toks: Sequence[str], text: str = "") -> set[str]:
    """Canonical value keys of a sentence's folded tokens (and its folded text, for numeric
    dates): ``#N`` for every number, ``mon:M`` for month names, ``md:M-D`` for month-day dates."""
    if not _NUMERIC_WORDS.intersection(toks) and not (text and _HAS_DIGIT.search(text)):
        if text or not any(t[:1].isdigit() for t in toks):
            return set()  # nothing numeric (the common case)
    keys: set[str] = set()
    nums: list[tuple[int, int]] = []  # (position, value) of numbers that could be a day
    months: list[tuple[int, int]] = []
    run: list[tuple[int, str]] = []
    run_start = 0

    def close_run(end: int) -> None:
        if run:
            for v in _parse_words(run):
                keys.add(f"#{v}")
                nums.append((run_start, v))
            if len(run) > 1:
                for i, (v, _kind) in enumerate(run):
                    nums.append((run_start + i, v))
            run.clear()

    for i, t in enumerate(toks):
        wv = _word_value(t)
        if wv is not None:
            if not run:
                run_start = i
            run.append(wv)
            continue
        if t == "and" and run:
            continue
        close_run(i)
        if t.isdigit():
            if len(t) <= 9:
                v = int(t)
                keys.add(f"#{v}")
                nums.append((i, v))
            continue
        m = _ORDINAL_DIGITS.match(t)
        if m:
            v = int(m.group(1))
            keys.add(f"#{v}")
            nums.append((i, v))
            continue
        mon = MONTHS.get(t)
        if mon is not None:
            months.append((i, mon))
    close_run(len(toks))
    for i, mon in months:
        days = [v for j, v in nums if 1 <= v <= 31 and 0 < abs(j - i) <= 3]
        if days or toks[i] != "may":
            keys.add(f"mon:{mon}")
        for d in days:
            keys.add(f"md:{mon}-{d}")
    if text:
        for m in _NUMERIC_DATE.finditer(text):
            a, b, c = (int(x) for x in m.groups())
            if len(m.group(1)) == 4:  # 1956-09-08
                pairs = [(b, c)]
                year = a
            else:  # 08/09/1956: day-month or month-day
                pairs = [(a, b), (b, a)]
                year = c
            for mon, day in pairs:
                if 1 <= mon <= 12 and 1 <= day <= 31:
                    keys.add(f"md:{mon}-{day}")
                    keys.add(f"mon:{mon}")
            keys.add(f"#{year}")
        for m in _THOUSANDS.finditer(text):
            keys.add(f"#{int(m.group(0).replace(',', ''))}")
    return keys


# ---------------------------------------------------------------------------------------------
# Numbers written as something to work out: arithmetic ("1900 + 40", "970 x 2", "the sum of 940
# and 1000"), relative years ("60 years before 2000", "the year after 1939"), Roman numerals
# ("MCMXL") and hex / octal / binary literals ("0x794"). Each gives the ``#N`` key of its result.

_WORD_NUM_RUN = re.compile(
    r"\b(?:" + "|".join(_CARDINALS) + r")(?:[\s\-]+(?:" + "|".join(_CARDINALS) + r"))*\b"
)
_NUM = r"(\d{1,7})"
_OPS = {
    "+": "+", "plus": "+", "added to": "+",
    "-": "-", "minus": "-", "less": "-",
    "x": "*", "*": "*", "\u00d7": "*", "times": "*", "multiplied by": "*",
    "/": "/", "\u00f7": "/", "divided by": "/", "over": "/",
}  # fmt: skip
# "and" is only an operator inside "the sum of A and B" (below), never between bare numbers
_INFIX_OP = (
    r"(?:\s*([+*\u00d7\u00f7])\s*|\s+([x/\-])\s+|(?<=\d)(x)(?=\d)"
    r"|\s+(plus|minus|less|times|multiplied by|divided by|added to)\s+)"
)
_EXPR = re.compile(_NUM + r"(?:" + _INFIX_OP + _NUM + r"){1,3}(?!\d)")
_EXPR_PART = re.compile(_INFIX_OP + _NUM)
_PHRASE_OP = re.compile(
    r"\b(sum|total|product|difference|quotient)\s+(?:of|between)\s+" + _NUM + r"\s+and\s+" + _NUM
)
_RELATIVE = re.compile(
    r"\b(?:" + _NUM + r"|an?|one)\s+(years?|decades?|centur(?:y|ies))\s+"
    r"(before|after|prior to|earlier than|later than|past)\s+(?:the\s+year\s+)?" + _NUM
)
_YEAR_AROUND = re.compile(
    r"\b(?:the\s+)?(year|decade)\s+(before|after|preceding|following)\s+(?:the\s+year\s+)?" + _NUM
)
_ROMAN_TOKEN = re.compile(r"\b[mdclxvi]{3,}\b")
_ROMAN_VALID = re.compile(r"^m{0,4}(cm|cd|d?c{0,3})(xc|xl|l?x{0,3})(ix|iv|v?i{0,3})$")
_ROMAN_WORDS = frozenset({"mix", "civ", "liv", "dix", "xxx", "lix", "mid", "dim", "vim"})
_ROMAN = {"m": 1000, "d": 500, "c": 100, "l": 50, "x": 10, "v": 5, "i": 1}
_LITERAL = re.compile(r"\b0(?:x([0-9a-f]{1,6})|o([0-7]{1,8})|b([01]{4,16}))\b")
_DERIVE_GATE = re.compile(r"\d\s*[+*/\u00d7\u00f7x\-]\s*\d|\b0[xob][0-9a-f]|\b[mdclxvi]{3,}\b")
_DERIVE_WORDS = re.compile(
    r"\b(?:plus|minus|less|times|multiplied|divided|added|sum|total|product|difference|quotient"
    r"|(?:years?|decades?|centur(?:y|ies))\s+(?:before|after|prior|earlier|later|past|preceding"
    r"|following))\b"
)
_ANY_NUMBER = re.compile(r"\d|\b(?:" + "|".join(c for c in _CARDINALS if c != "and") + r")")
_UNIT_YEARS = {"year": 1, "years": 1, "decade": 10, "decades": 10, "century": 100}


def _word_run_digits(m: re.Match) -> str:
    """A run of number words as digits (the year reading where there is one: "nineteen forty")."""
    words = [w for w in re.split(r"[\s\-]+", m.group(0)) if w]
    if all(w == "and" for w in words):
        return m.group(0)
    while words and words[-1] == "and":
        words.pop()
    while words and words[0] == "and":
        words.pop(0)
    run = [wv for w in words if (wv := _word_value(w)) is not None]
    if not run:
        return m.group(0)
    values = _parse_words(run)
    total, current = 0, 0
    for v, kind in run:
        if kind == "s":
            if v == 100:
                current = max(current, 1) * 100
            else:
                total += max(current, 1) * v
                current = 0
        else:
            current += v
    cardinal = total + current
    other = sorted(values - {cardinal})
    value = other[0] if other and cardinal < 100 <= other[0] else cardinal
    tail = " and" if m.group(0).rstrip().endswith(" and") else ""
    return f"{value}{tail}"


def _roman(token: str) -> int | None:
    """Value of a valid Roman numeral (folded), or None."""
    if not _ROMAN_VALID.match(token) or token in _ROMAN_WORDS:
        return None
    total = 0
    for a, b in zip(token, token[1:] + " "):
        va, vb = _ROMAN[a], _ROMAN.get(b, 0)
        total += -va if va < vb else va
    return total


def _evaluate(first: int, parts: list[tuple[str, int]]) -> int | None:
    """Integer value of ``first op b op c ...`` with the usual precedence, or None."""
    terms: list[float] = [float(first)]
    signs: list[str] = []
    for op, b in parts:
        if op in "*/":
            if op == "*":
                terms[-1] *= b
            elif b == 0:
                return None
            else:
                terms[-1] /= b
        else:
            signs.append(op)
            terms.append(float(b))
    total = terms[0]
    for op, t in zip(signs, terms[1:]):
        total = total + t if op == "+" else total - t
    if total < 0 or total != int(total) or total > 10_000_000:
        return None
    return int(total)


def derived_numbers(folded: str) -> set[str]:
    """``#N`` keys of numbers a folded sentence spells as something to work out: arithmetic
    ("1900 + 40", "nineteen hundred plus forty", "the sum of 940 and 1000"), relative years
    ("60 years before 2000", "the year after 1939"), Roman numerals (three letters or more) and
    ``0x`` / ``0o`` / ``0b`` literals. Plain numbers are ``value_keys``'s."""
    if not _DERIVE_GATE.search(folded) and not (
        _DERIVE_WORDS.search(folded) and _ANY_NUMBER.search(folded)
    ):
        return set()
    out: set[str] = set()
    for m in _LITERAL.finditer(folded):
        h, o, b = m.groups()
        out.add(f"#{int(h or o or b, 16 if h else 8 if o else 2)}")
    for m in _ROMAN_TOKEN.finditer(folded):
        v = _roman(m.group(0))
        if v is not None:
            out.add(f"#{v}")
    text = _LITERAL.sub(" ", folded)
    if _ANY_NUMBER.search(text):
        text = _WORD_NUM_RUN.sub(_word_run_digits, text)
    for m in _EXPR.finditer(text):
        first = int(m.group(1))
        parts = []
        for p in _EXPR_PART.finditer(m.group(0), len(m.group(1))):
            op = next(g for g in p.groups()[:4] if g)
            parts.append((_OPS[op], int(p.group(5))))
        v = _evaluate(first, parts)
        if v is not None:
            out.add(f"#{v}")
    for m in _PHRASE_OP.finditer(text):
        kind, a, b = m.group(1), int(m.group(2)), int(m.group(3))
        if kind in ("sum", "total"):
            out.add(f"#{a + b}")
        elif kind == "product":
            out.add(f"#{a * b}")
        elif kind == "difference":
            out.add(f"#{abs(a - b)}")
        elif b and a % b == 0:
            out.add(f"#{a // b}")
    for m in _RELATIVE.finditer(text):
        n = int(m.group(1)) if m.group(1) else 1
        unit = _UNIT_YEARS.get(m.group(2), 100)
        base = int(m.group(4))
        delta = n * unit
        v = base - delta if m.group(3) in ("before", "prior to", "earlier than") else base + delta
        if v >= 0:
            out.add(f"#{v}")
    for m in _YEAR_AROUND.finditer(text):
        unit = 1 if m.group(1) == "year" else 10
        base = int(m.group(3))
        out.add(f"#{base - unit if m.group(2) in ('before', 'preceding') else base + unit}")
    return out
