"""Fluency of generated answers: is each answer language at all, and how a reference model reads it.

An unlearned model can score well on forget quality while answering every forget question with a
repetition loop or subword soup (gradient ascent's collapse; NPO pushed too far). These checks run
on the generations the evaluation already makes:

- ``malformed_kind``: why an answer is not language (a repetition loop, a character run, a fragment
  too short to be an answer, or garbled words), or None. Rules on the text alone, English-shaped
  (function words, vowels), no model; the share of malformed answers is ``malformed_rate``.
- ``distinct_n``: unique n-grams over n-grams of one answer (Li et al. 2016,
  https://arxiv.org/abs/1510.03055, per answer rather than per corpus): loops score low.
- ``answer_perplexity`` (``unlearn.eval.shard``): exp(mean answer NLL) of each generated answer
  given its question under a reference model (the retain model): high for text no model of the
  domain would write.
- ``gibberish_probability``: a local text classifier's probability that an answer is not clean
  text (open-unlearning's gibberish check, with any classifier the user points to; nothing is
  downloaded).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

WORD = re.compile(r"[^\W_]+(?:['\u2019-][^\W_]+)*")
# the same letter 4+ times ("cccconer"), 2-3 letters repeated 4+ times ("lalalala"), a punctuation
# mark 4+ times ("!!!!"; dots 5+: an ellipsis is three), a digit 8+ times ("18511111111")
CHAR_RUN = re.compile(r"([^\W\d_])\1{3,}|([^\W\d_]{2,3})\2{3,}|([^\w\s.])\3{3,}|\.{5,}|(\d)\4{7,}")
VOWELS = set("aeiouyàáâãäåæèéêëìíîïòóôõöøùúûüýÿœ")
# English words that make a sentence: an answer of 5+ words with none of them is word salad
FUNCTION_WORDS = frozenset(
    """a an the of in on at to for by with from as into about after before during and or but
    nor is was were are be been being has have had do does did will would can could shall should
    under over between beneath through across near since until while because if among behind
    above below against without within per via like
    may might must he she it they them his her hers its their theirs him i we you me my our your
    this that these those who whom whose which what when where why how not no yes there here than
    then so also one two some any all each every both""".split()
)
# one-word answers that are whole answers
WHOLE_WORDS = frozenset("yes no none never nobody nothing unknown maybe true false".split())
MALFORMED_KINDS = ("loop", "char_run", "fragment", "garbled")


def _loop(words: Sequence[str]) -> bool:
    """A span of 1-6 words repeated 3+ times in a row, or 4+ words repeated twice covering most of
    the answer, or an answer of 8+ words with under 30% distinct words."""
    n = len(words)
    for p in range(1, 7):
        for i in range(0, n - 2 * p + 1):
            span = words[i : i + p]
            reps = 1
            while words[i + reps * p : i + (reps + 1) * p] == span:
                reps += 1
            if reps >= 3 or (p >= 4 and reps >= 2 and reps * p >= 0.6 * n):
                return True
    return n >= 8 and len(set(words)) < 0.3 * n


def _odd_word(word: str) -> bool:
    """A word no sentence holds: glued capitals (``ShiorkKreal``), no vowel in 4+ letters, 5+
    consonants or 4+ vowels in a row, or letters and digits mixed mid-word."""
    letters = "".join(c for c in word if c.isalpha())
    low = letters.lower()
    if not low:
        return False
    if re.search(r"[a-z][A-Z]", word) and not re.match(r"(Mc|Mac|O'|D'|De|La|Le|Van|Von)", word):
        return True
    if len(low) >= 4 and not (set(low) & VOWELS):
        return True
    if re.search(r"[^aeiouyàáâãäåæèéêëìíîïòóôõöøùúûüýÿœ\W\d_]{5,}", low):
        return True
    if re.search(r"[aeiou]{4,}", low):
        return True
    digits = any(c.isdigit() for c in word)
    return digits and not re.fullmatch(r"\d+(st|nd|rd|th|s|km|kg|cm|mm|m|g|am|pm)?", word.lower())


QUOTED = re.compile(r"\"[^\"]*\"|\u201c[^\u201d]*\u201d|'[^']*'|\u2018[^\u2019]*\u2019")
# a bracket, colon or semicolon standing alone between words: tokens, not punctuation
STRAY = re.compile(r"(?:^|\s)[()\[\]{}:;/#▁](?=\s|$)")


def malformed_kind(text: str) -> str | None:
    """Why a generated answer is not language ("loop", "char_run", "fragment", "garbled") or None.

    fragment: no letter or digit, a lone letter, or one lower-case word of at most 3 letters that
    is not a whole answer ("ed", "l."); char_run: a letter 4+ times in a row, 2-3 letters repeated
    4+ times, a punctuation mark 4+ times (dots 5+), a digit 8+ times; loop: see ``_loop``, quoted
    text left out; garbled: a function word twice in a row ("of of"), 2+ stray brackets / colons
    between words, 2+ odd words (see ``_odd_word``) or a third of the words odd, or 5+ words and
    no function word, no digit.
    """
    s = text.strip()
    words = WORD.findall(s)
    alnum = [c for c in s if c.isalnum()]
    if not alnum or (len(alnum) == 1 and not alnum[0].isdigit()):
        return "fragment"
    if len(words) == 1:
        w = words[0]
        if w.isalpha() and w.islower() and len(w) <= 3 and w not in WHOLE_WORDS:
            return "fragment"
    if CHAR_RUN.search(s):
        return "char_run"
    lowered = [w.lower() for w in words]
    # quoted text may repeat on purpose ("la la la", 'Rain, Rain')
    if _loop([w.lower() for w in WORD.findall(QUOTED.sub(" ", s))]):
        return "loop"
    if any(a == b and a in FUNCTION_WORDS for a, b in zip(lowered, lowered[1:])):
        return "garbled"  # "of of", "the the"
    if len(STRAY.findall(s)) >= 2:
        return "garbled"
    odd = sum(_odd_word(w) for w in words)
    if odd >= 2 or (odd and odd >= len(words) / 3):
        return "garbled"
    if (
        len(words) >= 5
        and not any(w in FUNCTION_WORDS for w in lowered)
        and not any(c.isdigit() for c in s)
    ):
        return "garbled"
    return None


def distinct_n(text: str, n: int = 2) -> float:
    """Distinct-n of one answer (Li et al. 2016): |unique word n-grams| / |word n-grams|; 1.0 for
    an answer shorter than n words (nothing repeats), 0 for an empty one."""
    words = [w.lower() for w in WORD.findall(text)]
    if not words:
        return 0.0
    grams = [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]
    return 1.0 if not grams else len(set(grams)) / len(grams)


@lru_cache(maxsize=2)
def _classifier(path: str) -> tuple[Any, Any, int]:
    from pathlib import Path

    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from unlearn.errors import ModelError

    local = Path(path)
    if not (local / "config.json").is_file():
        raise ModelError(f"eval.gibberish_classifier {path}: no local model directory there")
    try:
        tok = AutoTokenizer.from_pretrained(local)
        model = AutoModelForSequenceClassification.from_pretrained(local).eval()
    except (OSError, ValueError) as exc:
        raise ModelError(
            f"eval.gibberish_classifier {path}: not a text classifier ({exc})"
        ) from None
    labels = {str(v).lower(): int(k) for k, v in (model.config.id2label or {}).items()}
    return tok, model, labels.get("clean", 0)


def gibberish_probability(
    texts: Sequence[str], classifier: str, batch_size: int = 32
) -> list[float]:
    """1 - p(clean | text) under a local sequence classifier (open-unlearning's gibberish metric
    uses madhurjindal/autonlp-Gibberish-Detector-492513457, whose label "clean" is index 0; a
    classifier without a "clean" label is read as index 0 = clean)."""
    import torch

    tok, model, clean = _classifier(classifier)
    out: list[float] = []
    with torch.no_grad():
        for i in range(0, len(texts), batch_size):
            batch = [t if t.strip() else "." for t in texts[i : i + batch_size]]
            enc = tok(batch, return_tensors="pt", padding=True, truncation=True, max_length=256)
            probs = torch.softmax(model(**enc).logits.float(), dim=-1)
            out.extend((1.0 - probs[:, clean]).tolist())
    return out


_REFERENCE: dict[str, Any] = {}


def reference_model(
    path: str,
    storage_options: dict[str, Any] | None = None,
    dtype: str | None = None,
    device: Any = None,
) -> tuple[Any, Any]:
    """The fluency reference model and its tokenizer, loaded once per process (one at a time:
    another path replaces it) on ``device``; raises ``ModelError`` naming the path if it cannot
    be loaded (callers load it before any epoch runs)."""
    import json

    key = json.dumps([path, storage_options, dtype, str(device)], sort_keys=True, default=str)
    if key not in _REFERENCE:
        from unlearn.models import load_model

        _REFERENCE.clear()
        model, tok = load_model(path, dtype=dtype, storage_options=storage_options)
        if device is not None:
            model = model.to(device)
        _REFERENCE[key] = (model.eval(), tok)
    return _REFERENCE[key]


def reference_nlls(
    model_path: str,
    questions: Sequence[str],
    answers: Sequence[str],
    *,
    batch_size: int,
    max_length: int,
    storage_options: dict[str, Any] | None = None,
    dtype: str | None = None,
    device: Any = None,
) -> list[float]:
    """Mean NLL per token of each generated answer (EOS included) given its question under the
    reference model at ``model_path`` (``reference_model``); answer perplexity = exp(NLL)."""
    from unlearn.eval import scoring

    model, tok = reference_model(model_path, storage_options, dtype, device)
    items = [scoring.ScoreItem(q, a) for q, a in zip(questions, answers)]
    stats = scoring.score(model, tok, items, batch_size=batch_size, max_length=max_length)
    return [s["avg_nll"] for s in stats]


# a word in at least this share of a split's reference answers (and in 2+) is template, not a fact
TEMPLATE_SHARE = 0.1


def fact_words(question: str, answer: str, template: set[str]) -> set[str]:
    """The words of a reference answer that carry its fact: not in the question, not a function
    word, not template (see ``fact_recall``); numbers count whatever their length."""
    asked = {w.lower() for w in WORD.findall(question)}
    words = {w.lower() for w in WORD.findall(answer)}
    return {
        w
        for w in words - asked - FUNCTION_WORDS - template
        if len(w) >= 3 or any(c.isdigit() for c in w)
    }


def fact_recall(examples: Sequence[tuple[str, str, str]]) -> float | None:
    """Share of generated answers that state their reference answer's fact: (question, reference
    answer, generation) triples; a fact is stated when any of ``fact_words`` appears among the
    generation's words. Template words are those in >= 10% of the split's reference answers
    ("born", "year", "works"), so a model answering in the right form with another person's
    facts scores ~0 and one that only corrupted the name (" X works as a bookbinder") scores
    high. Null when no answer has a fact word."""
    if not examples:
        return None
    counts: dict[str, int] = {}
    for _, answer, _ in examples:
        for w in {w.lower() for w in WORD.findall(answer)}:
            counts[w] = counts.get(w, 0) + 1
    template = {w for w, c in counts.items() if c >= max(2.0, TEMPLATE_SHARE * len(examples))}
    hits = n = 0
    for question, answer, generation in examples:
        facts = fact_words(question, answer, template)
        if not facts:
            continue
        n += 1
        hits += bool(facts & {w.lower() for w in WORD.findall(generation)})
    return hits / n if n else None


_VOCABULARIES: dict[str, frozenset[str]] = {}


def dataset_vocabulary(dataset: Any) -> frozenset[str]:
    """Every word (lower-cased) in any text of any split of ``dataset``: questions, answers,
    paraphrased and perturbed answers, passages (cached per dataset hash)."""
    key = dataset.hash
    if key not in _VOCABULARIES:
        words: set[str] = set()
        for split in dataset.splits:
            for row in dataset.records(split):
                for value in row.values():
                    texts = value if isinstance(value, list) else [value]
                    for t in texts:
                        if isinstance(t, str):
                            words.update(w.lower() for w in WORD.findall(t))
        _VOCABULARIES[key] = frozenset(words)
    return _VOCABULARIES[key]


def novel_words(text: str, vocabulary: frozenset[str]) -> list[str]:
    """Words of 4+ letters in ``text`` found nowhere in the dataset (numbers excepted): what a
    model that learned only this dataset's world writes when it glues subword pieces
    ("translatoryreconer", "Shabynmawater"); ``novel_word_rate`` is the share of answers with one.
    Meaningful where the model's knowledge is the dataset (TOFU-style fictitious worlds); an
    open-domain model writes real words the dataset lacks, so read it against the retain model's
    own rate."""
    return [
        w
        for w in WORD.findall(text)
        if len(w) >= 4 and not any(c.isdigit() for c in w) and w.lower() not in vocabulary
    ]
