"""Normalization views: every text is matched in several canonical forms so that formatting,
look-alike characters, spacing, leetspeak and encodings do not hide a forgotten fact.

Views (each a function of the text alone, all linear in its length):

- ``fold``: Unicode NFKC, removal of zero-width / format / tag / variation-selector characters,
  homoglyph folding (Cyrillic and Greek look-alikes to Latin), casefold, diacritics stripped.
- ``skeleton`` (leetspeak view, lexical layers only): ``fold`` after mapping digits and symbols to
  the letters they imitate, with ``l``/``1``/``!``/``|`` all read as ``i``.
- ``spaced_runs`` (spaceless view): runs of single characters separated by spaces or punctuation
  ("B a s i l", "b.a.s.i.l") collapsed into one string.
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

# ---------------------------------------------------------------------------------------------
# Character tables, built once at import.

_HOMOGLYPHS = {
    # Cyrillic lower case
    "а": "a", "в": "b", "е": "e", "ё": "e", "к": "k", "м": "m", "н": "h", "о": "o", "р": "p",
    "с": "c", "т": "t", "у": "y", "х": "x", "ѕ": "s", "і": "i", "ї": "i", "ј": "j", "ԁ": "d",
    "һ": "h", "ԛ": "q", "ԝ": "w", "ҽ": "e", "ӏ": "l", "ɡ": "g", "ь": "b", "г": "r", "п": "n",
    "и": "u", "л": "n", "ᴦ": "r",
    # Cyrillic upper case (also folded before casefold so that mixed-case text maps uniformly)
    "А": "A", "В": "B", "Е": "E", "Ё": "E", "К": "K", "М": "M", "Н": "H", "О": "O", "Р": "P",
    "С": "C", "Т": "T", "У": "Y", "Х": "X", "Ѕ": "S", "І": "I", "Ї": "I", "Ј": "J", "Ԁ": "D",
    "Һ": "H", "Ԛ": "Q", "Ԝ": "W", "Ӏ": "I",
    # Greek
    "α": "a", "β": "b", "γ": "y", "ε": "e", "η": "n", "ι": "i", "κ": "k", "ν": "v", "ο": "o",
    "ρ": "p", "τ": "t", "υ": "u", "χ": "x", "ω": "w", "ς": "s", "μ": "u", "ϲ": "c", "ϳ": "j",
    "Α": "A", "Β": "B", "Ε": "E", "Ζ": "Z", "Η": "H", "Ι": "I", "Κ": "K", "Μ": "M", "Ν": "N",
    "Ο": "O", "Ρ": "P", "Τ": "T", "Υ": "Y", "Χ": "X", "Ϲ": "C",
    # Latin letters that do not decompose under NFD
    "ø": "o", "Ø": "O", "ł": "l", "Ł": "L", "đ": "d", "Đ": "D", "ħ": "h", "ı": "i", "ŀ": "l",
    "æ": "ae", "Æ": "AE", "œ": "oe", "Œ": "OE", "þ": "th", "Þ": "TH", "ð": "d", "Ð": "D",
    "ß": "ss", "ƒ": "f",
}  # fmt: skip

_LEET = {
    "0": "o", "1": "i", "!": "i", "|": "i", "l": "i", "3": "e", "4": "a", "@": "a", "5": "s",
    "$": "s", "7": "t", "+": "t", "8": "b", "9": "g", "6": "g", "2": "z", "(": "c", "€": "e",
}  # fmt: skip


def _build_tables() -> tuple[dict[int, object], dict[int, None]]:
    """(homoglyph + format-removal table applied after NFKC, combining-mark removal table)."""
    pre: dict[int, object] = {ord(k): v for k, v in _HOMOGLYPHS.items()}
    marks: dict[int, None] = {}
    ranges = [(0, 0x30000), (0xE0000, 0xE1000)]
    for lo, hi in ranges:
        for cp in range(lo, min(hi, sys.maxunicode + 1)):
            cat = unicodedata.category(chr(cp))
            if cat == "Cf":  # zero-width space/joiners, soft hyphen, bidi marks, BOM, tags
                pre[cp] = None
            elif cat == "Mn" or cat == "Me":
                marks[cp] = None
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
_LEET_HINT = re.compile(r"[a-z][0-9@$!|+(€]|[0-9@$!|+(€][a-z]")
# a run of >= 4 single characters, each separated by 1-3 non-word characters (no newline)
_SPACED = re.compile(r"(?<!\w)\w(?!\w)(?:[^\w\n]{1,3}\w(?!\w)){3,}")
_NONWORD = re.compile(r"[\W_]+")
_B64 = re.compile(r"[A-Za-z0-9+/\-_]{16,}={0,2}")
_HEX = re.compile(r"(?:[0-9A-Fa-f]{2}[ :]?){8,}")
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
    """NFKC, format/zero-width/tag characters removed, homoglyphs folded; case kept."""
    if text.isascii():  # nothing to normalize (fast path for the common case)
        return text
    return unicodedata.normalize("NFKC", text).translate(_PRE)


def _translate_non_ascii(text: str, table: dict[int, object]) -> str:
    """``text.translate(table)`` applied to the non-ASCII runs only (the table maps no ASCII)."""
    return _NON_ASCII.sub(lambda m: m.group(0).translate(table), text)


def fold(text: str) -> str:
    """The base matching view: ``clean``, casefold, diacritics stripped."""
    if text.isascii():
        return text.lower()
    # one pass after NFD removes format characters and combining marks and folds homoglyphs
    # (lower case entries suffice: casefold ran first)
    out = unicodedata.normalize("NFD", unicodedata.normalize("NFKC", text).casefold())
    return _translate_non_ascii(out, _FOLD)


def tokens(folded: str) -> list[str]:
    """Word tokens of an already folded text (letters and digits; punctuation separates)."""
    return _TOKEN.findall(folded)


def skeleton(folded: str) -> str:
    """The leetspeak view of a folded text: digits/symbols read as letters, ``l`` read as ``i``."""
    return folded.translate(_LEET_TABLE)


def has_leet(folded: str) -> bool:
    """True when a folded text mixes letters with digits/symbols inside words (leetspeak hint)."""
    return _LEET_HINT.search(folded) is not None


def rot13(text: str) -> str:
    """ROT13 of the ASCII letters of a text (fold afterwards: accented letters are not rotated)."""
    if text.isascii():
        return text.encode("ascii").translate(_ROT13_BYTES).decode("ascii")
    return text.translate(_ROT13)


def spaced_runs(folded: str) -> list[str]:
    """The spaceless view: each run of spaced-apart single characters, collapsed."""
    return [_NONWORD.sub("", m.group(0)) for m in _SPACED.finditer(folded)]


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
    if len(token) > 6 and token.endswith("ing"):
        return token[:-3]
    if len(token) > 5 and token.endswith("ed"):
        return token[:-2]
    if len(token) > 4 and token.endswith("es") and token[-3] in "sxz":
        return token[:-2]
    if len(token) > 3 and token.endswith("s") and not token.endswith("ss"):
        return token[:-1]
    return token


def _printable(text: str) -> bool:
    if not text:
        return False
    good = sum(1 for ch in text if ch.isprintable() or ch in "\n\t\r")
    return good / len(text) >= 0.9 and any(ch.isalpha() for ch in text)


def _decode_bytes(raw: bytes) -> str | None:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return text if _printable(text) else None


def _try_base64(segment: str) -> str | None:
    seg = segment.rstrip("=")
    pad = "=" * (-len(seg) % 4)
    for alt in (False, True):
        try:
            if alt:
                raw = base64.urlsafe_b64decode(seg + pad)
            else:
                raw = base64.b64decode(seg + pad, validate=True)
        except (binascii.Error, ValueError):
            continue
        text = _decode_bytes(raw)
        if text is not None:
            return text
    return None


def _try_hex(segment: str) -> str | None:
    digits = re.sub(r"[ :]", "", segment)
    if len(digits) % 2:
        digits = digits[:-1]
    try:
        return _decode_bytes(bytes.fromhex(digits))
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
    for pattern, decoder in ((_B64, _try_base64), (_HEX, _try_hex)):
        tried: set[str] = set()
        for m in pattern.finditer(raw):
            seg = m.group(0).strip()
            if seg in tried:
                continue
            tried.add(seg)
            decoded = decoder(seg)
            if decoded is None or decoded in seen:
                continue
            seen.add(decoded)
            out.append(decoded)
            out.extend(decoded_segments(decoded, depth - 1))
    return out
