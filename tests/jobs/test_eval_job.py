"""``unlearn eval`` on Ray: 2 workers give the same metrics.json numbers as 1, on loopback."""

from __future__ import annotations

import json

import pytest

from cli import main

pytestmark = pytest.mark.slow

OVERRIDES = ["max_new_tokens=8", "max_examples_per_split=16", "batch_size=16"]


def numbers(doc):
    """Every number metrics.json reports, flattened to dotted keys."""
    out = {}
    for key in ("forget_quality", "model_utility", "privleak", "score"):
        out[key] = doc[key]
    for split, values in doc["splits"].items():
        out.update({f"{split}.{m}": v for m, v in values.items()})
    out.update({f"mia.{a}": v["auc"] for a, v in doc["mia"].items()})
    return out


def test_two_workers_match_one(ray_local, tiny_data, nano_model_dir, tmp_path):
    from jobs.eval import EvalWorker

    cache = str(tmp_path / "cache")
    docs = {}
    for workers in (1, 2):
        out = tmp_path / f"w{workers}"
        argv = ["eval", "--model", str(nano_model_dir), "--data", str(tiny_data)]
        argv += ["--retain-model", str(nano_model_dir), "--out", str(out), "--cache-dir", cache]
        argv += ["--workers", str(workers), "--cpus-per-worker", "1", *OVERRIDES]
        assert main(argv) == 0
        docs[workers] = json.loads((out / "metrics.json").read_text())
        html = (out / "report.html").read_text()
        assert "data:image/png;base64," in html and '<td class="l">nano</td>' in html
    one, two = numbers(docs[1]), numbers(docs[2])
    assert one.keys() == two.keys()
    for key, value in one.items():
        assert two[key] == pytest.approx(value, rel=1e-4, abs=1e-7), key
    # the retain model is the evaluated model itself: indistinguishable from itself
    assert one["forget_quality"] == pytest.approx(1.0)
    assert docs[2]["model"]["hash"] and docs[2]["dataset"]["hash"]
    assert docs[2]["eval_config"]["max_new_tokens"] == 8
    # the reference was computed once (first run) and cached for the second
    assert len(list((tmp_path / "cache").glob("*.json"))) == 1

    worker = EvalWorker.options(num_cpus=0.5).remote(
        str(nano_model_dir), str(tiny_data), None, "cpu", 1
    )
    assert ray_local.get(worker.node_ip.remote()) == "127.0.0.1"
    ray_local.kill(worker)


def test_existing_output_is_not_overwritten(ray_local, tiny_data, nano_model_dir, tmp_path):
    (tmp_path / "metrics.json").write_text("{}")
    argv = ["eval", "--model", str(nano_model_dir), "--data", str(tiny_data)]
    argv += ["--out", str(tmp_path), *OVERRIDES]
    assert main(argv) == 2  # OutputExistsError, reported as an error before any Ray work
    assert (tmp_path / "metrics.json").read_text() == "{}"
