"""The demo end to end (Ray Train + DeepSpeed on 2 workers, distributed evaluation), and the
efficacy claims it exists to show, on the synthetic benchmark with the tiny model:

- the target memorized the forget set (ROUGE-L recall >= 0.9); the retain-only model did not;
- target vs retain-only: forget quality < 0.01 (distinguishable), as in TOFU;
- NPO-KL on forget10: forget quality >= 0.05, model utility >= 0.95 x the target's, |privleak|
  <= 25 (neither under- nor over-unlearned), forget ROUGE-L within 0.15 of the retain model's;
  its forget answers' malformed rate at most 0.15 above the retain model's (issue 12's target is
  0.05: missed, see docs/benchmarks.md);
- gradient ascent with the same budget forgets as much (forget ROUGE as low) but its model utility
  falls far below NPO's and far more of its answers are not language (the NPO paper's claim);
- the verdict printed and shown in report.html follows from these numbers.
"""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo(ray_local, tmp_path_factory):
    from jobs.demo import main

    out = tmp_path_factory.mktemp("demo")
    assert main(["--out", str(out)]) == 0
    return out, json.loads((out / "summary.json").read_text())


def numbers(summary, name):
    m = summary["models"][name]
    return m["splits"]["forget10"]["rouge_l_recall"], m["forget_quality"], m["model_utility"]


def test_target_memorized_and_retain_model_did_not(demo):
    _, summary = demo
    target_rouge, target_fq, _ = numbers(summary, "target")
    retain_rouge, retain_fq, _ = numbers(summary, "retain")
    assert target_rouge >= 0.9
    assert summary["target_forget_greedy_accuracy"] >= 0.9
    assert retain_rouge <= 0.6  # template words only: the names and facts are unknown to it
    assert target_fq < 0.01  # distinguishable from never having seen the forget set
    assert retain_fq == pytest.approx(1.0)  # the retain model against itself


def forget(summary, name, metric):
    return summary["models"][name]["splits"]["forget10"][metric]


def test_npo_forgets_like_the_retain_model_and_keeps_utility(demo):
    _, summary = demo
    _, _, target_mu = numbers(summary, "target")
    retain_rouge, _, _ = numbers(summary, "retain")
    npo_rouge, npo_fq, npo_mu = numbers(summary, "npo")
    npo = summary["models"]["npo"]
    assert npo_fq >= 0.05
    assert npo_mu >= 0.95 * target_mu
    assert abs(npo["privleak"]) <= 25 and npo["verdict"] == "retain-like"
    assert abs(npo_rouge - retain_rouge) <= 0.15
    assert (
        forget(summary, "npo", "malformed_rate")
        <= forget(summary, "retain", "malformed_rate") + 0.15
    )
    assert summary["models"]["target"]["verdict"] == "under-unlearned"


def test_gradient_ascent_collapses_where_npo_does_not(demo):
    _, summary = demo
    npo_rouge, _, npo_mu = numbers(summary, "npo")
    ga_rouge, _, ga_mu = numbers(summary, "ga")
    assert ga_rouge <= npo_rouge + 0.1  # forgot at least about as much ...
    assert ga_mu <= 0.5 * npo_mu  # ... at the cost of the model's utility
    assert forget(summary, "ga", "malformed_rate") >= forget(summary, "npo", "malformed_rate") + 0.2
    # its answers repeat themselves (loops); and the verdict word says so whatever its MIA AUC
    assert forget(summary, "ga", "distinct_2") < forget(summary, "npo", "distinct_2") - 0.3
    assert summary["models"]["ga"]["verdict"] == "collapsed"


def test_the_verdict_follows_from_the_numbers(demo):
    """Each sentence is recomputed here from metrics, with the thresholds written out."""
    out, summary = demo
    models, sentences = summary["models"], summary["verdict"]
    retain_bad = forget(summary, "retain", "malformed_rate")
    for name, sentence in zip(["npo", "ga"], sentences):
        m = models[name]
        stop = summary["runs"][name].get("stopped")
        assert (
            (f"it stopped after epoch {stop['epoch'] + 1}" in sentence)
            if stop
            else ("stopped after" not in sentence)
        )
        assert sentence.startswith(f"{name} ")
        if m["verdict"] != "collapsed":  # a collapse is said by the fluency clause below
            assert f"is {m['verdict']}" in sentence
        bad = forget(summary, name, "malformed_rate")
        novel = forget(summary, name, "novel_word_rate")
        invents = novel > forget(summary, "retain", "novel_word_rate") + 0.1
        assert ("invents words" in sentence) == invents
        if bad >= 0.5:
            assert "collapsed" in sentence
        elif bad > retain_bad + 0.05:
            assert "garbles" in sentence
        else:
            assert ("answers in language" in sentence) == (not invents)
        assert f"keeps {m['model_utility'] / models['target']['model_utility']:.0%}" in sentence
        facts = forget(summary, name, "fact_recall")
        stated = facts > forget(summary, "retain", "fact_recall") + 0.1
        assert (f"still states {facts:.0%} of the forget facts" in sentence) == stated
    good = [
        n for n in ("npo", "ga")
        if abs(forget(summary, n, "rouge_l_recall") - forget(summary, "retain", "rouge_l_recall"))
        <= 0.15 and abs(models[n]["privleak"]) <= 25
        and forget(summary, n, "malformed_rate") <= retain_bad + 0.05
        and models[n]["model_utility"] >= 0.95 * models["target"]["model_utility"]
        and forget(summary, n, "fact_recall") <= forget(summary, "retain", "fact_recall") + 0.1
        and forget(summary, n, "novel_word_rate")
        <= forget(summary, "retain", "novel_word_rate") + 0.1
        and models[n]["forget_quality"] >= 0.05
    ]  # fmt: skip
    if good:
        assert (
            sentences[-1] == f"Reads like never having learned the forget set: {', '.join(good)}."
        )
    else:
        assert sentences[-1].startswith("No run reads like never having learned")
    html = (out / "report.html").read_text()
    assert sentences[0].split(" (")[0] in html and "retain-like" in html
    assert "forget malformed" in html


def test_demo_writes_its_interfaces(demo):
    out, summary = demo
    assert set(summary["models"]) == {"target", "retain", "npo", "ga"}
    for m in summary["models"].values():
        assert {"forget_quality", "model_utility", "privleak", "splits", "mia"} <= set(m)
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 2  # scatter + NPO per-epoch curves
    npo_run = json.loads((out / "npo" / "run.json").read_text())
    assert npo_run["best"] is not None and npo_run["num_workers"] == 2
    # NPO (a curve run) may stop at retain_equivalent; GA (no in-training evaluation) never does
    assert npo_run["stopped"] is None or npo_run["stopped"]["reason"].startswith("retain_equiv")
    assert json.loads((out / "ga" / "run.json").read_text())["stopped"] is None
    assert summary["runs"]["target"]["backend"] == "deepspeed"


def test_shipped_npo_example_runs_on_the_demo_outputs(demo, tmp_path):
    """`unlearn run --config examples/npo_tiny.yaml` after the demo built its inputs."""
    from cli import main

    out, _ = demo
    args = [
        "run",
        "--config",
        "examples/npo_tiny.yaml",
        f"data.path={out}/data",
        f"model.path={out}/target/model",
        f"output.dir={tmp_path}/npo",
    ]
    assert main(args) == 0
    run = json.loads((tmp_path / "npo" / "run.json").read_text())
    assert run["zero_stage"] == 3 and run["num_workers"] == 2
    assert run["loss_after"]["forget_nll"] > run["loss_before"]["forget_nll"] + 1.0
