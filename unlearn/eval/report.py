"""report.html: one self-contained page comparing models' metrics.json (plots embedded as PNG).

``write_report(path, {"target": m1, "retain": m2, "npo": m3}, history=[...])`` renders a table of
the models, a forget-vs-utility scatter, per-epoch curves when a training history is given,
per-split and MIA tables, example generations side by side, and one sentence per metric saying
what good looks like (from the metric registry).
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from typing import Any

from unlearn import storage
from unlearn.eval.metrics import METRICS

STYLE = """
body { font-family: -apple-system, Segoe UI, Helvetica, Arial, sans-serif; margin: 2em auto;
       max-width: 1100px; color: #222; line-height: 1.4; }
table { border-collapse: collapse; margin: 0.6em 0 1.4em; font-size: 0.92em; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: right; vertical-align: top; }
th { background: #f2f2f2; } td.l, th.l { text-align: left; }
.note { color: #666; font-size: 0.9em; } img { max-width: 100%; }
dt { font-weight: bold; margin-top: 0.4em; } code { background: #f4f4f4; padding: 0 3px; }
.verdict { font-size: 1.05em; background: #f6f6ea; border-left: 4px solid #997; padding: 0.5em 0.8em; }
.bad { color: #b00; font-size: 0.85em; }
"""


def _fmt(value: Any) -> str:
    if value is None:
        return "&ndash;"
    if isinstance(value, float):
        if value != 0 and abs(value) < 1e-2:
            return f"{value:.2e}"
        return f"{value:.3f}"
    return html.escape(str(value))


def _png(fig: Any) -> str:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    data = base64.b64encode(buf.getvalue()).decode("ascii")
    return f'<img alt="plot" src="data:image/png;base64,{data}">'


def _forget_split(m: dict[str, Any]) -> str | None:
    for name, role in (m.get("roles") or {}).items():
        if role == "forget":
            return name
    return None


def _role_split(m: dict[str, Any], role: str) -> str | None:
    for name, r in (m.get("roles") or {}).items():
        if r == role:
            return name
    return None


def _split_value(m: dict[str, Any], role: str, metric: str) -> Any:
    name = _role_split(m, role)
    return None if name is None else (m.get("splits") or {}).get(name, {}).get(metric)


def _scatter(models: dict[str, dict[str, Any]]) -> str:
    from matplotlib.figure import Figure

    use_fq = any(m.get("forget_quality") is not None for m in models.values())
    fig = Figure(figsize=(6, 4.2))
    ax = fig.add_subplot()
    for name, m in models.items():
        x = m.get("model_utility")
        y = m.get("forget_quality") if use_fq else _split_value(m, "forget", "rouge_l_recall")
        if x is None or y is None:
            continue
        if use_fq:
            y = max(y, 1e-300)
        ax.scatter([x], [y], s=60)
        ax.annotate(name, (x, y), textcoords="offset points", xytext=(6, 4))
    ax.set_xlim(-0.02, 1.05)
    ax.set_xlabel("model utility (higher is better)")
    if use_fq:
        ax.set_yscale("log")
        ax.set_ylabel("forget quality (higher is better)")
        ax.axhline(0.05, color="#999", ls="--", lw=1)
    else:
        ax.set_ylabel("forget ROUGE-L recall (lower = more forgotten)")
    ax.set_title("Forgetting vs utility")
    ax.grid(alpha=0.3)
    return _png(fig)


def _curves(history: Sequence[dict[str, Any]]) -> str:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 3.6))
    left, right = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    epochs = [h.get("epoch", i) for i, h in enumerate(history)]
    fq = [h.get("forget_quality") for h in history]
    pts = [(e, max(v, 1e-300)) for e, v in zip(epochs, fq) if v is not None]
    if pts:
        left.plot(*zip(*pts), marker="o")
        left.set_yscale("log")
    left.set_title("forget quality")
    mu = [(e, h.get("model_utility")) for e, h in zip(epochs, history)]
    mu = [(e, v) for e, v in mu if v is not None]
    if mu:
        right.plot(*zip(*mu), marker="o", color="tab:green")
    right.set_title("model utility")
    for ax in (left, right):
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    return _png(fig)


def _table(headers: list[str], rows: list[list[str]], left: int = 1) -> str:
    head = "".join(
        f'<th class="l">{h}</th>' if i < left else f"<th>{h}</th>" for i, h in enumerate(headers)
    )
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="l">{c}</td>' if i < left else f"<td>{c}</td>" for i, c in enumerate(r)
        )
        + "</tr>"
        for r in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def collect_examples(models: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Example generations of every model, grouped by question (from metrics["examples"])."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for name, m in models.items():
        for ex in m.get("examples") or []:
            key = (ex["split"], ex["id"])
            row = out.setdefault(
                key,
                {
                    "split": ex["split"],
                    "role": ex.get("role", ""),
                    "id": ex["id"],
                    "question": ex["question"],
                    "answer": ex["answer"],
                    "generations": {},
                },
            )
            row["generations"][name] = ex["generation"]
            if ex.get("malformed"):
                row.setdefault("malformed", {})[name] = ex["malformed"]
    return list(out.values())


def render_report(
    models: dict[str, dict[str, Any]],
    history: Sequence[dict[str, Any]] | None = None,
    examples: Sequence[dict[str, Any]] | None = None,
    title: str = "Unlearning evaluation",
    summary: str | None = None,
) -> str:
    """The report's HTML (see ``write_report``)."""
    if not models:
        raise ValueError("write_report needs at least one model's metrics")
    names = list(models)
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    first = models[names[0]]
    forget = _forget_split(first)
    ds = (first.get("dataset") or {}).get("hash")
    parts.append(
        f"<p class='note'>Forget split <code>{html.escape(str(forget))}</code>"
        + (f", dataset <code>{html.escape(ds[:16])}</code>" if ds else "")
        + ". Definitions follow TOFU / MUSE as implemented by open-unlearning.</p>"
    )

    if summary:
        parts.append(f"<p class='verdict'>{html.escape(summary)}</p>")
    parts.append("<h2>Models</h2>")
    cols = [
        ("verdict", lambda m: m.get("verdict")),
        ("forget quality", lambda m: m.get("forget_quality")),
        ("model utility", lambda m: m.get("model_utility")),
        ("privleak", lambda m: m.get("privleak")),
        ("forget malformed", lambda m: _split_value(m, "forget", "malformed_rate")),
        ("forget answer ppl", lambda m: _split_value(m, "forget", "answer_perplexity")),
        ("forget facts stated", lambda m: _split_value(m, "forget", "fact_recall")),
        ("forget invented words", lambda m: _split_value(m, "forget", "novel_word_rate")),
        ("forget ROUGE-L", lambda m: _split_value(m, "forget", "rouge_l_recall")),
        ("forget prob.", lambda m: _split_value(m, "forget", "probability")),
        ("forget truth ratio", lambda m: _split_value(m, "forget", "truth_ratio")),
        ("VerbMem", lambda m: _split_value(m, "forget", "verbmem")),
        ("retain ROUGE-L", lambda m: _split_value(m, "retain", "rouge_l_recall")),
        ("Min-K AUC", lambda m: (m.get("mia") or {}).get("min_k", {}).get("auc")),
        ("score", lambda m: m.get("score")),
    ]
    rows = [[html.escape(n)] + [_fmt(f(models[n])) for _, f in cols] for n in names]
    parts.append(_table(["model"] + [c for c, _ in cols], rows))
    reasons = []
    for n in names:
        for key in ("forget_quality", "model_utility", "privleak"):
            why = models[n].get(f"{key}_reason")
            if models[n].get(key) is None and why:
                reasons.append(f"<li><b>{html.escape(n)}</b> {key}: {html.escape(why)}</li>")
    for n in names:
        ref = models[n].get("privleak_reference")
        if models[n].get("privleak") is not None and ref and ref != "retain model":
            reasons.append(
                f"<li><b>{html.escape(n)}</b> privleak and rel_diff are against a "
                f"{html.escape(ref)}, not a retain model's AUC</li>"
            )
    if reasons:
        parts.append(f"<ul class='note'>{''.join(reasons)}</ul>")

    parts.append("<h2>Forgetting vs utility</h2>")
    parts.append(_scatter(models))
    if history:
        parts.append("<h2>During training</h2>")
        parts.append(_curves(history))

    parts.append("<h2>Per split</h2>")
    keys: list[tuple[str, str]] = []
    for n in names:
        for split, values in (models[n].get("splits") or {}).items():
            for metric in values:
                if (split, metric) not in keys:
                    keys.append((split, metric))
    rows = [
        [html.escape(s), html.escape(mt)]
        + [_fmt((models[n].get("splits") or {}).get(s, {}).get(mt)) for n in names]
        for s, mt in keys
    ]
    parts.append(_table(["split", "metric"] + [html.escape(n) for n in names], rows, left=2))

    attacks: list[str] = []
    for n in names:
        attacks += [a for a in (models[n].get("mia") or {}) if a not in attacks]
    if attacks:
        parts.append("<h2>Membership inference (forget vs holdout, ROC AUC)</h2>")
        ref = next(
            (
                (models[n].get("retain_reference") or {}).get("mia_auc")
                for n in names
                if (models[n].get("retain_reference") or {}).get("mia_auc")
            ),
            None,
        )
        rows = [
            [html.escape(a)]
            + [_fmt((models[n].get("mia") or {}).get(a, {}).get("auc")) for n in names]
            + ([_fmt(ref.get(a))] if ref else [])
            for a in attacks
        ]
        ref_col = ["retain-only model (reference)"] if ref else []
        parts.append(_table(["attack"] + [html.escape(n) for n in names] + ref_col, rows))
        parts.append(
            "<p class='note'>Near the retain-only model's AUC: forget rows look like data never "
            "trained on. Far above it: the forget set still leaks (under-unlearned); far below: "
            "forget rows are now less likely than unseen data, which itself reveals what was "
            "removed (over-unlearned).</p>"
        )

    examples = list(examples) if examples is not None else collect_examples(models)
    if examples:
        parts.append("<h2>Example generations</h2>")
        gen_names = names if examples and "generations" in examples[0] else []
        rows = []
        for ex in examples:
            gens = ex.get("generations") or {}
            bad = ex.get("malformed") or {}
            rows.append(
                [
                    html.escape(f"{ex.get('split', '')}"),
                    html.escape(ex.get("question", "")),
                    html.escape(ex.get("answer", "")),
                ]
                + [
                    html.escape(gens.get(n, ""))
                    + (f" <span class='bad'>[{html.escape(bad[n])}]</span>" if n in bad else "")
                    for n in gen_names
                ]
            )
        headers = ["split", "question", "answer"] + [html.escape(n) for n in gen_names]
        parts.append(_table(headers, rows, left=len(headers)))

    parts.append("<h2>What good looks like</h2><dl>")
    for name, metric in METRICS.items():
        parts.append(f"<dt>{html.escape(name)}</dt><dd>{html.escape(metric.good)}</dd>")
    parts.append("</dl></body></html>")
    return "\n".join(parts)


def write_report(
    path: str,
    models: dict[str, dict[str, Any]],
    history: Sequence[dict[str, Any]] | None = None,
    examples: Sequence[dict[str, Any]] | None = None,
    *,
    title: str = "Unlearning evaluation",
    storage_options: dict[str, Any] | None = None,
    summary: str | None = None,
) -> str:
    """Write report.html for ``models`` (name -> metrics.json dict); returns the path.

    ``history``: per-epoch dicts with ``epoch``, ``forget_quality``, ``model_utility``.
    ``examples``: rows {split, question, answer, generations: {model: text}}; by default
    gathered from each model's ``metrics["examples"]``. ``summary``: a sentence shown first
    (the demo's verdict).
    """
    text = render_report(models, history, examples, title, summary)
    storage.write_bytes(path, text.encode("utf-8"), storage_options)
    return path


# How close to the retain model an unlearned model must be to read "like never having learned"
# (the demo's targets, issue 12): forget ROUGE-L within 0.15, malformed rate at most 0.05 above.
ROUGE_BAND = 0.15
MALFORMED_MARGIN = 0.05
# forget facts still stated: at most this much above the retain-only model's (chance) rate
FACT_MARGIN = 0.1
# answers with a word found nowhere in the dataset: at most this much above the retain model's
NOVEL_MARGIN = 0.1


def _forget_pair(m: dict[str, Any], retain: dict[str, Any] | None, metric: str) -> tuple[Any, Any]:
    """``metric`` on the forget split of ``m`` and of the retain-only model (None if absent)."""
    return _split_value(m, "forget", metric), _split_value(retain or {}, "forget", metric)


def describe_model(
    m: dict[str, Any], target: dict[str, Any] | None, retain: dict[str, Any] | None
) -> str:
    """One sentence on what unlearning did to this model, computed from its numbers against the
    target (before unlearning) and the retain-only model (never trained on the forget set); a
    comparison whose retain-only number is missing is left out, never assumed."""
    bits: list[str] = []

    rouge, r_rouge = _forget_pair(m, retain, "rouge_l_recall")
    if rouge is not None and r_rouge is not None:
        if rouge > r_rouge + ROUGE_BAND:
            how = "still recalls the forget set"
        elif rouge < r_rouge - ROUGE_BAND:
            how = "strays further from the forget answers than a model that never saw them"
        else:
            how = "matches the forget answers about as little as the retain-only model"
        bits.append(f"{how} (forget ROUGE-L {rouge:.2f} vs {r_rouge:.2f})")
    facts, r_facts = _forget_pair(m, retain, "fact_recall")
    if facts is not None and r_facts is not None and facts > r_facts + FACT_MARGIN:
        bits.append(
            f"still states {facts:.0%} of the forget facts in its answers (retain-only model: "
            f"{r_facts:.0%})"
        )
    mu, t_mu = m.get("model_utility"), (target or {}).get("model_utility")
    if mu is not None and t_mu:
        bits.append(f"keeps {mu / t_mu:.0%} of the target's utility")
    if m.get("verdict") not in (None, "collapsed") and m.get("privleak") is not None:
        bits.append(f"is {m['verdict']} (privleak {m['privleak']:+.1f})")
    bad, r_bad = _forget_pair(m, retain, "malformed_rate")
    novel, r_novel = _forget_pair(m, retain, "novel_word_rate")
    invents = novel is not None and r_novel is not None and novel > r_novel + NOVEL_MARGIN
    if bad is not None and bad >= 0.5:
        bits.append(f"has collapsed: {bad:.0%} of its forget answers are not language")
    elif bad is not None and r_bad is not None:
        if bad > r_bad + MALFORMED_MARGIN:
            bits.append(f"garbles {bad:.0%} of its forget answers (retain-only model: {r_bad:.0%})")
        elif not invents:
            bits.append(f"answers in language ({bad:.0%} malformed vs {r_bad:.0%})")
    if invents:
        bits.append(
            f"invents words found nowhere in the data in {novel:.0%} of its forget answers "
            f"(retain-only model: {r_novel:.0%})"
        )
    if not bits:
        return "no comparison possible (no retain-only or target model numbers)"
    return ", ".join(bits[:-1]) + (" and " if len(bits) > 1 else "") + bits[-1]


def reads_like_retain(m: dict[str, Any], target: dict[str, Any], retain: dict[str, Any]) -> bool:
    """The demo's bar, every number needed (a missing one fails it): forget quality >= 0.05 (the
    KS test cannot tell its truth ratios from the retain model's), forget ROUGE-L within 0.15 of
    the retain model's, |privleak| <= 25, malformed rate at most 0.05 above the retain model's,
    forget facts stated and answers with invented words each at most 0.1 above the retain
    model's rates, utility >= 0.95 x the target's."""
    from unlearn.eval.metrics import VERDICT_TOLERANCE

    rouge, r_rouge = _forget_pair(m, retain, "rouge_l_recall")
    bad, r_bad = _forget_pair(m, retain, "malformed_rate")
    facts, r_facts = _forget_pair(m, retain, "fact_recall")
    novel, r_novel = _forget_pair(m, retain, "novel_word_rate")
    mu, t_mu = m.get("model_utility"), target.get("model_utility")
    fq, pl = m.get("forget_quality"), m.get("privleak")
    needed = (rouge, r_rouge, bad, r_bad, facts, r_facts, novel, r_novel, mu, t_mu, fq, pl)
    return (
        None not in needed
        and fq >= 0.05
        and abs(rouge - r_rouge) <= ROUGE_BAND
        and abs(pl) <= VERDICT_TOLERANCE
        and bad <= r_bad + MALFORMED_MARGIN
        and facts <= r_facts + FACT_MARGIN
        and novel <= r_novel + NOVEL_MARGIN
        and mu >= 0.95 * t_mu
    )
