"""trials.parquet, pareto.json and sweep.html from hand-made rows."""

from __future__ import annotations

import json
import re

import pyarrow.parquet as pq

from unlearn.sweep import pareto_document, pareto_front, read_trials, write_trials
from unlearn.sweep.report import render_sweep

OBJ = {"forget_quality": "max", "model_utility": "max"}


def rows():
    out = []
    for t, (method, lr, beta) in enumerate(
        [("npo", 1e-3, 0.1), ("ga", 1e-4, None), ("npo", 3e-3, 0.3)]
    ):
        for e in (1, 2):
            out.append(
                {
                    "trial_id": f"t{t}",
                    "epoch": e,
                    "checkpoint": None if (t == 1 and e == 1) else f"/ck/t{t}/{e}",
                    "config": {"method.name": method, "train.lr": lr}
                    | ({"method.beta": beta} if beta else {}),
                    "metrics": {
                        "forget_quality": 0.1 * (t + 1) * e,
                        "model_utility": 0.9 - 0.2 * t - 0.05 * e,
                        "forget_loss": -1.0 * e,
                        "step": 3 * e,
                    },
                }
            )
    return out


def test_trials_parquet_round_trip(tmp_path):
    path = str(tmp_path / "trials.parquet")
    data = rows()
    write_trials(path, data)
    table = pq.read_table(path)
    cols = table.column_names
    assert cols[:3] == ["trial_id", "epoch", "checkpoint"]
    assert {"config/method.name", "config/train.lr", "config/method.beta"} <= set(cols)
    assert {"forget_quality", "model_utility", "forget_loss", "step"} <= set(cols)
    assert table.num_rows == 6
    assert table.column("checkpoint").to_pylist()[2] is None
    assert table.column("config/method.beta").to_pylist()[2] is None  # ga has no beta
    back = read_trials(path)
    assert back == data


def test_pareto_document():
    data = rows()
    front = pareto_front(data, OBJ)
    models = {i: f"/sweep/pareto/{data[i]['trial_id']}-e{data[i]['epoch']}" for i in front}
    doc = pareto_document(data, front, OBJ, models)
    assert doc["objectives"] == OBJ
    assert [(t["trial_id"], t["epoch"]) for t in doc["trials"]] == [
        (data[i]["trial_id"], data[i]["epoch"]) for i in front
    ]
    first = doc["trials"][0]
    assert set(first) == {"trial_id", "epoch", "config", "metrics", "model_path", "model_id"}
    assert first["model_id"] == f"{first['trial_id']}-e{first['epoch']}"
    assert first["model_path"] == models[front[0]]
    json.dumps(doc, allow_nan=False)


def test_sweep_html_is_self_contained():
    data = rows()
    front = pareto_front(data, OBJ)
    doc = pareto_document(data, front, OBJ, {})
    page = render_sweep(
        data,
        front,
        doc,
        params=[("method.name", "choice['npo', 'ga']", False), ("train.lr", "loguniform", True)],
        trials=[
            {"trial_id": f"t{i}", "status": "TERMINATED", "stopped_early": i == 1} for i in range(3)
        ],
        title="test sweep",
    )
    assert page.count("data:image/png;base64,") == 2  # the front, the hyperparameter grid
    assert "1 stopped early by ASHA" in page
    assert not re.search(r"""(src|href)=["']https?:""", page)
