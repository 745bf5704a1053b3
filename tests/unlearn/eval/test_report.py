"""report.html: self-contained, one row per model, plots embedded, text escaped."""

from __future__ import annotations

import html
import re

from unlearn.eval import METRICS, write_report


def fake_metrics(fq, mu, rouge, gen):
    return {
        "forget_quality": fq,
        "forget_quality_reason": None if fq is not None else "no retain model",
        "model_utility": mu,
        "privleak": -12.5,
        "score": mu,
        "roles": {"forget10": "forget", "retain90": "retain"},
        "splits": {
            "forget10": {"rouge_l_recall": rouge, "probability": 0.5, "truth_ratio": 0.7},
            "retain90": {"rouge_l_recall": 0.9},
        },
        "mia": {"min_k": {"auc": 0.61}},
        "examples": [
            {
                "split": "forget10",
                "role": "forget",
                "id": "a",
                "question": "Where was <Ann> born?",
                "answer": "In Oslo.",
                "generation": gen,
            }
        ],
    }


def test_report_is_self_contained_and_compares_models(tmp_path):
    models = {
        "target": fake_metrics(1e-12, 0.62, 1.0, "In Oslo."),
        "retain": fake_metrics(1.0, 0.60, 0.2, "In Rome."),
        "npo": fake_metrics(None, 0.55, 0.3, "I don't know & more"),
    }
    history = [
        {"epoch": e, "forget_quality": 10.0 ** (-5 + e), "model_utility": 0.6} for e in range(4)
    ]
    path = write_report(str(tmp_path / "report.html"), models, history)
    text = open(path, encoding="utf-8").read()
    assert len(re.findall(r'src="data:image/png;base64,[A-Za-z0-9+/=]+"', text)) == 2
    assert not re.search(r'(src|href)="(http|//)', text)  # nothing fetched from elsewhere
    for name in models:
        assert f'<td class="l">{name}</td>' in text
    assert "&lt;Ann&gt;" in text and "<Ann>" not in text  # escaped
    assert "I don&#x27;t know &amp; more" in text
    assert "1.00e-12" in text and "no retain model" in text
    for name, metric in METRICS.items():  # one sentence per metric
        assert f"<dt>{name}</dt><dd>{html.escape(metric.good)}</dd>" in text


def test_report_without_history_or_forget_quality(tmp_path):
    path = write_report(
        str(tmp_path / "r.html"), {"only": fake_metrics(None, None, 0.4, "x")}, examples=[]
    )
    text = open(path, encoding="utf-8").read()
    assert text.count("data:image/png;base64,") == 1  # the scatter only
    assert "Example generations" not in text
