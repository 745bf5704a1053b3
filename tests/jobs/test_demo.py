"""The demo end to end (Ray Train + DeepSpeed on 2 workers, distributed evaluation), and the
efficacy claims it exists to show, on the synthetic benchmark with the tiny model:

- the target memorized the forget set (ROUGE-L recall >= 0.9); the retain-only model did not;
- target vs retain-only: forget quality < 0.01 (distinguishable), as in TOFU;
- NPO+RT on forget10: forget quality >= 0.05 and model utility >= 0.9 x the target's;
- gradient ascent with the same budget forgets as much (forget ROUGE as low) but its model utility
  falls far below NPO's (the NPO paper's claim).
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


def test_npo_forgets_and_keeps_utility(demo):
    _, summary = demo
    _, _, target_mu = numbers(summary, "target")
    npo_rouge, npo_fq, npo_mu = numbers(summary, "npo")
    assert npo_fq >= 0.05
    assert npo_mu >= 0.9 * target_mu
    assert npo_rouge <= 0.5


def test_gradient_ascent_collapses_where_npo_does_not(demo):
    _, summary = demo
    npo_rouge, _, npo_mu = numbers(summary, "npo")
    ga_rouge, _, ga_mu = numbers(summary, "ga")
    assert ga_rouge <= npo_rouge + 0.1  # forgot at least about as much ...
    assert ga_mu <= 0.5 * npo_mu  # ... at the cost of the model's utility


def test_demo_writes_its_interfaces(demo):
    out, summary = demo
    assert set(summary["models"]) == {"target", "retain", "npo", "ga"}
    for m in summary["models"].values():
        assert {"forget_quality", "model_utility", "privleak", "splits", "mia"} <= set(m)
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 2  # scatter + NPO per-epoch curves
    npo_run = json.loads((out / "npo" / "run.json").read_text())
    assert npo_run["best"] is not None and npo_run["num_workers"] == 2
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
