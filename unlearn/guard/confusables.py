"""Latin look-alikes from Unicode's confusables data (UTS #39, ``confusables.txt``).

``confusables.txt`` maps every character that can be mistaken for another to a *prototype*
(its skeleton). This module keeps the part the guard needs: every non-ASCII character whose
prototype is made of Latin letters and digits (Cyrillic, Greek, Armenian, Cherokee, Coptic, Lisu,
letterlike symbols, ...), mapped to those ASCII characters. The table ships as the resource
``unlearn/resources/confusables_latin.txt`` (one ``XXXX<TAB>target<TAB># name`` line per
character) and is regenerated from a copy of the standard's file with::

    python -m unlearn.guard.confusables PATH/TO/confusables.txt

Three adjustments turn skeletons into readable letters (skeletons are for comparing strings, not
for reading them):

- combining marks in a prototype are dropped (``η`` -> ``n̩`` -> ``n``) and prototypes that are
  themselves non-ASCII Latin letters are read as the letter they are drawn from
  (``LATIN_PROTOTYPES``: ``к`` / ``κ`` -> ``ĸ`` -> ``k``, ``τ`` -> ``ᴛ`` -> ``t``);
- UTS #39 writes capital-I look-alikes as ``l`` (its prototype for ``I``, ``l``, ``1`` and ``|``);
  an upper-case source (Greek ``Ι``, Cyrillic ``І``, ``Ӏ``) reads as ``I`` instead;
- characters the standard maps to no Latin prototype but that stand in for one in practice
  (``EXTRA``: Greek ``χ ω μ ς``, Cyrillic ``л п``, Latin letters that do not decompose such as
  ``ß þ ŀ``) are added; a prototype from the standard always wins over them.

Decimal digits of every script (``unicodedata.decimal``) read as their ASCII digit; that is done
by the normalizer, not stored here. ASCII characters are never mapped (``m`` -> ``rn`` and
``1`` -> ``l`` are for the leetspeak view to decide).
"""

from __future__ import annotations

import sys
import unicodedata
from importlib import resources
from pathlib import Path

RESOURCE = "confusables_latin.txt"

# non-ASCII Latin prototypes read as the ASCII letter(s) they are drawn like
LATIN_PROTOTYPES = {
    "ĸ": "k", "ᴛ": "t", "ʜ": "h", "ʙ": "b", "ʍ": "m", "ᴍ": "m", "ᴎ": "n", "ɴ": "n", "ƅ": "b",
    "ꞓ": "e", "Ꞓ": "E", "ɛ": "e", "Ɛ": "E", "ʀ": "r", "ᴋ": "k", "ᴄ": "c", "ᴅ": "d", "ᴇ": "e",
    "ɢ": "g", "ɪ": "i", "ᴊ": "j", "ʟ": "l", "ᴏ": "o", "ᴘ": "p", "ꜱ": "s", "ᴜ": "u", "ᴠ": "v",
    "ᴡ": "w", "ʏ": "y", "ᴢ": "z", "ᴀ": "a", "ꞯ": "q", "ȷ": "j", "ß": "ss",
}  # fmt: skip
# look-alikes the standard gives no Latin prototype for (used only where it gives none)
EXTRA = {
    "χ": "x", "ω": "w", "μ": "u", "ς": "s", "β": "b", "ε": "e", "ϵ": "e", "θ": "o", "ϑ": "o",
    "л": "n", "п": "n", "и": "u", "ь": "b", "в": "b", "т": "t", "м": "m", "н": "h", "к": "k",
    "ё": "e", "Ё": "E", "ї": "i", "Ї": "I", "Ԁ": "D", "Һ": "H", "Ԛ": "Q", "ᴦ": "r",
    "ø": "o", "Ø": "O", "ł": "l", "Ł": "L", "đ": "d", "Đ": "D", "ħ": "h", "Ħ": "H", "ı": "i",
    "ŀ": "l", "Ŀ": "L", "æ": "ae", "Æ": "AE", "œ": "oe", "Œ": "OE", "þ": "th", "Þ": "TH",
    "ð": "d", "Ð": "D", "ß": "ss", "ẞ": "SS", "ƒ": "f",
}  # fmt: skip


def _marks_dropped(text: str) -> str:
    return "".join(
        ch for ch in unicodedata.normalize("NFD", text) if unicodedata.category(ch)[0] != "M"
    )


def latin_target(source: str, prototype: str) -> str | None:
    """The ASCII letters/digits a character reads as, given its UTS #39 prototype (None: none)."""
    out = []
    for ch in _marks_dropped(prototype):
        ch = LATIN_PROTOTYPES.get(ch, ch)
        if not (ch.isascii() and ch.isalnum()):
            return None
        out.append(ch)
    target = "".join(out)
    if not target:
        return None
    if target == "l" and source.isupper():
        return "I"  # a capital-I look-alike (the standard writes l for I, l, 1 and |)
    return target


def extract(path: str | Path) -> tuple[str, dict[str, tuple[str, str]]]:
    """(version line, {source: (target, name)}) from a ``confusables.txt`` file."""
    version = ""
    table: dict[str, tuple[str, str]] = {}
    with open(path, encoding="utf-8-sig") as fh:
        for line in fh:
            if line.startswith("# Version:"):
                version = line[2:].strip()
            body = line.split("#", 1)[0].strip()
            if not body:
                continue
            fields = [f.strip() for f in body.split(";")]
            if len(fields) < 2:
                continue
            src = "".join(chr(int(c, 16)) for c in fields[0].split())
            if len(src) != 1 or src.isascii():
                continue
            proto = "".join(chr(int(c, 16)) for c in fields[1].split())
            target = latin_target(src, proto)
            if target is not None:
                table[src] = (target, unicodedata.name(src, f"U+{ord(src):04X}"))
    for src, target in EXTRA.items():
        if src not in table:
            table[src] = (target, unicodedata.name(src, f"U+{ord(src):04X}") + " (extra)")
    return version, table


def write_resource(version: str, table: dict[str, tuple[str, str]], out: str | Path) -> None:
    """Write the table as the shipped resource file."""
    lines = [
        "# Latin look-alikes: non-ASCII characters drawn like Latin letters or digits.",
        f"# Derived from Unicode confusables.txt (UTS #39), {version or 'version unknown'},",
        "# by unlearn/guard/confusables.py (prototypes read as letters; '(extra)': not in it).",
        "# Unicode data: Copyright Unicode, Inc.; see https://www.unicode.org/terms_of_use.html",
        "# code point<TAB>ASCII target<TAB># name",
    ]
    for src in sorted(table, key=ord):
        target, name = table[src]
        lines.append(f"{ord(src):04X}\t{target}\t# {name}")
    Path(out).write_text("\n".join(lines) + "\n", encoding="utf-8")


def load() -> dict[str, str]:
    """The shipped table: character -> ASCII letters/digits it reads as."""
    text = resources.files("unlearn.resources").joinpath(RESOURCE).read_text(encoding="utf-8")
    out: dict[str, str] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        code, target = line.split("\t")[:2]
        out[chr(int(code, 16))] = target
    return out


def main(argv: list[str] | None = None) -> int:
    """Regenerate the resource from a ``confusables.txt`` path."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m unlearn.guard.confusables PATH/TO/confusables.txt", file=sys.stderr)
        return 2
    version, table = extract(args[0])
    out = Path(str(resources.files("unlearn.resources").joinpath(RESOURCE)))
    write_resource(version, table, out)
    print(f"wrote {len(table)} characters to {out} ({version})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
