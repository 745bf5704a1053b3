"""`unlearn sweep` end to end on the nano model with 2 CPUs, and its refusals of bad input.

One real sweep serves the slow checks (about 3-4 minutes here): 4 trials of NPO / GradDiff, 2 at
a time (1 Train worker of 0.99 CPU each, the trial itself 0.01 CPU), the first two known-good
points, the last two hopeless (learning rates that wreck the model). The driver (a subprocess of
its own, with its own local Ray) is killed once two trials ended (one of them finished) and a
fourth started, then `unlearn sweep --resume` finishes the sweep. Checked: nothing finished ran
again; the trials table holds every trial and epoch; pareto.json is the non-dominated set
recomputed here; ASHA stopped a hopeless trial early (its rungs survived the restart); the front's exported models
hold the checkpoint's weights; sweep.html renders in headless Chromium with its images decoded;
TensorBoard event files carry loss, lr, forget quality and utility per epoch.
"""

from __future__ import annotations

import importlib.util
import json
import os
import random
import shutil
import signal
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
UNLEARN = [sys.executable, "-m", "cli"]
GOOD = [
    {"method": "npo", "lr": 4.0e-3},
    {"method": "graddiff", "lr": 3.0e-3},
]
HOPELESS = [  # learning rates that wreck the model (utility near 0)
    {"method": "graddiff", "lr": 5.0e-2},
    {"method": "npo", "lr": 1.0e-1},
]


def train_nano(tokenizer, rows, steps: int, seed: int):
    """A nano Llama trained on QA pairs with a plain torch loop (as tests/unlearn/eval does)."""
    import torch

    from unlearn.models import IGNORE_INDEX, build_tiny_model, encode_qa

    model = build_tiny_model(tokenizer, "nano", max_positions=128, seed=seed)
    enc = [encode_qa(tokenizer, r["question"], r["answer"], 96) for r in rows]
    opt = torch.optim.AdamW(model.parameters(), lr=5e-3)
    rng = random.Random(seed)
    for _ in range(steps):
        batch = rng.sample(enc, min(32, len(enc)))
        width = max(len(e["input_ids"]) for e in batch)
        ids = torch.full((len(batch), width), tokenizer.pad_token_id)
        labels = torch.full((len(batch), width), IGNORE_INDEX)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for i, e in enumerate(batch):
            n = len(e["input_ids"])
            ids[i, :n] = torch.tensor(e["input_ids"])
            labels[i, :n] = torch.tensor(e["labels"])
            mask[i, :n] = 1
        model(input_ids=ids, attention_mask=mask, labels=labels).loss.backward()
        opt.step()
        opt.zero_grad()
    return model.eval()


@pytest.fixture(scope="module")
def models(tiny_data, tmp_path_factory):
    """A target (full + world facts) and a retain-only nano model, saved (about 30 s)."""
    import torch

    from unlearn.data import Dataset
    from unlearn.models import dataset_texts, save_model, train_tokenizer

    ds = Dataset(tiny_data)
    tok = train_tokenizer(dataset_texts([r for s in ds.splits for r in ds.records(s)]), 512)
    root = tmp_path_factory.mktemp("sweep_models")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        world = ds.records("world_facts")
        save_model(train_nano(tok, ds.records("full") + world, 150, 0), tok, root / "target")
        save_model(train_nano(tok, ds.records("retain90") + world, 150, 1), tok, root / "retain")
    finally:
        torch.set_num_threads(before)
    return root / "target", root / "retain"


def sweep_config(data, target, retain, out, **extra) -> dict:
    cfg = {
        "out": str(out),
        "run": {
            "data": {"path": str(data), "forget_split": "forget10", "max_length": 64},
            "model": {"path": str(target), "retain_model": str(retain) if retain else None},
            "train": {"epochs": 3, "batch_size": 8, "micro_batch_size": 4, "warmup_epochs": 0},
            "backend": {"kind": "torch"},
            "scaling": {"num_workers": 1, "cpus_per_worker": 0.99},
            "eval": {"batch_size": 64, "max_length": 64, "max_new_tokens": 16},
        },
        "space": {
            "method": {"choice": ["npo", "graddiff"]},
            "lr": {"loguniform": [1.0e-6, 1.0e-1]},
        },
        "search": {"algorithm": "random", "num_samples": 4, "seed": 0, "points": GOOD + HOPELESS},
        "asha": {"grace_period": 1, "reduction_factor": 2},
        "resources": {"max_concurrent_trials": 2},
    }
    for key, value in extra.items():
        cfg[key] = value
    return cfg


def env() -> dict:
    e = dict(os.environ)
    e["PYTHONPATH"] = str(ROOT) + os.pathsep + e.get("PYTHONPATH", "")
    e.pop("RAY_ADDRESS", None)  # each driver starts its own local Ray (2 CPUs, dashboard on)
    e["TUNE_GLOBAL_CHECKPOINT_S"] = "1"  # experiment state saved often: the kill below is abrupt
    return e


def finished_trials(out: Path) -> dict[str, float]:
    return {
        p.parent.name: p.stat().st_mtime
        for p in (out / "trials").glob("*/run.json")
        if json.loads(p.read_text()).get("status") == "finished"
    }


@pytest.fixture(scope="module")
def swept(tiny_data, models, tmp_path_factory):
    """The sweep, interrupted (driver killed) after two trials and resumed."""
    root = tmp_path_factory.mktemp("sweep")
    out = root / "out"
    cfg_file = root / "sweep.yaml"
    cfg = sweep_config(tiny_data, *models, out)
    if importlib.util.find_spec("mlflow") is not None:  # the optional extra
        cfg["tracking"] = {"mlflow_tracking_uri": f"sqlite:///{root}/mlflow.db"}
    cfg_file.write_text(yaml.safe_dump(cfg))
    log = open(root / "first.log", "w")
    proc = subprocess.Popen(
        [*UNLEARN, "sweep", "--config", str(cfg_file)],
        cwd=ROOT,
        env=env(),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: the driver and the Ray it started
    )
    deadline = time.time() + 600
    killed_at = None
    try:
        while time.time() < deadline and proc.poll() is None:
            done = finished_trials(out)
            started = (
                [p for p in (out / "trials").glob("*") if p.name != "_check"]
                if (out / "trials").exists()
                else []
            )
            states = (
                list((out / "tune").glob("experiment_state-*.json"))
                if (out / "tune").exists()
                else []
            )
            if len(done) >= 1 and len(started) >= 4 and states:
                # Two at a time: a fourth trial started once two others ended (finished, or stopped
                # by ASHA, which writes no run.json); one of them finished. Kill once Tune saved
                # its state after both events or, as Tune may save only when a trial changes
                # status, 3 s after the later: a trial whose run.json says finished is not rerun
                # on resume even when Tune missed its end (jobs/sweep.py), and waiting longer lets
                # a quick sweep end before the kill.
                newest_state = max(s.stat().st_mtime for s in states)
                last_event = max(max(done.values()), max(p.stat().st_mtime for p in started))
                if newest_state > last_event + 1 or time.time() > last_event + 3:
                    killed_at = done
                    os.killpg(proc.pid, signal.SIGKILL)
                    break
            time.sleep(0.5)
    finally:
        if proc.poll() is None and killed_at is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
        log.close()
    assert killed_at is not None, (root / "first.log").read_text()[-4000:]
    assert not (out / "pareto.json").exists()
    results_before = {
        t: len((out / "tune").glob(f"*{t}*/result.json").__next__().read_text().splitlines())
        for t in killed_at
    }
    time.sleep(2)  # let the killed Ray's processes go
    resumed = subprocess.run(
        [*UNLEARN, "sweep", "--resume", str(out)],
        cwd=ROOT,
        env=env(),
        capture_output=True,
        text=True,
        timeout=900,
    )
    (root / "resume.log").write_text(resumed.stdout + resumed.stderr)
    assert resumed.returncode == 0, (resumed.stdout + resumed.stderr)[-4000:]
    return out, killed_at, results_before, resumed.stdout


@pytest.mark.slow
def test_resume_does_not_repeat_finished_trials(swept):
    out, finished_before, results_before, _ = swept
    after = finished_trials(out)
    for trial, mtime in finished_before.items():
        assert after[trial] == mtime  # run.json untouched: the trial did not run again
        result = next((out / "tune").glob(f"*{trial}*/result.json"))
        assert len(result.read_text().splitlines()) == results_before[trial]
    tune_trials = {p.name.split("_")[2] for p in (out / "tune").glob("run_trial_*")}
    assert len(tune_trials) == 4  # no trial was added to make up for the interruption


@pytest.mark.slow
def test_trials_table_holds_every_trial_and_epoch(swept):
    import pandas as pd

    out, *_ = swept
    df = pd.read_parquet(out / "trials.parquet")
    assert list(df.columns[:3]) == ["trial_id", "epoch", "checkpoint"]
    assert {"config/method.name", "config/train.lr"} <= set(df.columns)
    assert {"forget_quality", "model_utility", "score", "forget_loss", "lr"} <= set(df.columns)
    assert df["trial_id"].nunique() == 4
    for trial, group in df.groupby("trial_id"):
        # every epoch the trial reported, once, 1..last, each with its checkpoint
        result = next((out / "tune").glob(f"*{trial}*/result.json"))
        reported = {json.loads(line)["epoch"] for line in result.read_text().splitlines()}
        assert sorted(group["epoch"]) == sorted(reported) == list(range(1, len(reported) + 1))
        assert group["checkpoint"].map(lambda p: Path(p).is_dir()).all()
    first = df.groupby("trial_id").first()
    configs = set(zip(first["config/method.name"], first["config/train.lr"]))
    assert configs == {(p["method"], p["lr"]) for p in GOOD + HOPELESS}


@pytest.mark.slow
def test_asha_stopped_a_hopeless_trial(swept):
    """Hopeless trials stop after a rung; a stopped trial always did worse than one that went on.

    ASHA (grace 1, reduction 2) stops a trial whose score at a rung is below the median of the
    scores recorded there so far: which good trial reports first is a race, so a good but worse
    one may be stopped too, but never the only one, and never one that led its rung.
    """
    import pandas as pd

    out, *_ = swept
    df = pd.read_parquet(out / "trials.parquet")
    epochs = df.groupby("trial_id")["epoch"].max()
    lr = df.groupby("trial_id")["config/train.lr"].first()
    score = df.set_index(["trial_id", "epoch"])["score"]
    stopped = epochs[epochs < 3].index
    assert any(lr[t] >= 5.0e-2 for t in stopped)  # a wrecked model stopped early
    assert any(epochs[t] == 3 for t in lr.index if lr[t] < 1e-2)  # a good one ran fully
    for t in stopped:
        e = epochs[t]
        went_on = [u for u in epochs.index if epochs[u] > e]
        assert any(score[(u, e)] > score[(t, e)] for u in went_on), (t, e, score.to_dict())


@pytest.mark.slow
def test_pareto_json_is_the_non_dominated_set(swept):
    import pandas as pd

    out, *_ = swept
    df = pd.read_parquet(out / "trials.parquet")
    doc = json.loads((out / "pareto.json").read_text())
    assert doc["objectives"] == {"forget_quality": "max", "model_utility": "max"}
    cand = df[df["checkpoint"].notna()].dropna(subset=["forget_quality", "model_utility"])
    pts = list(zip(cand["trial_id"], cand["epoch"], cand["forget_quality"], cand["model_utility"]))
    expected = {
        (t, e)
        for t, e, f, u in pts
        if not any(f2 >= f and u2 >= u and (f2 > f or u2 > u) for _, _, f2, u2 in pts)
    }
    assert {(t["trial_id"], t["epoch"]) for t in doc["trials"]} == expected
    assert expected
    for t in doc["trials"]:
        assert set(t) >= {"trial_id", "epoch", "config", "metrics", "model_path"}
        assert t["serve_args"] == [
            "--model",
            f"{t['model_id']}={t['model_path']}",
            "--guard",
            f"{t['model_id']}={doc['guard_index']}",
        ]
    assert doc["serve_command"] == "unlearn serve " + " ".join(doc["serve_args"])
    assert (Path(doc["guard_index"]) / "manifest.json").exists()


@pytest.mark.slow
def test_front_models_hold_their_checkpoints_weights(swept):
    import pandas as pd
    import torch
    from safetensors.torch import load_file

    from unlearn.models import load_model

    out, *_ = swept
    df = pd.read_parquet(out / "trials.parquet").set_index(["trial_id", "epoch"])
    t = json.loads((out / "pareto.json").read_text())["trials"][0]
    model, tok = load_model(t["model_path"])
    ckpt = load_file(Path(df.loc[(t["trial_id"], t["epoch"]), "checkpoint"]) / "model.safetensors")
    state = model.state_dict()
    for name, tensor in ckpt.items():
        assert torch.equal(state[name], tensor), name
    assert tok("hello")["input_ids"]


@pytest.mark.slow
def test_sweep_html_renders_with_its_images(swept, tmp_path):
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(chromium).exists():
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    out, *_ = swept
    page = (out / "sweep.html").read_text()
    assert "Pareto front" in page and page.count("data:image/png;base64,") >= 2
    probe = tmp_path / "probe.html"
    probe.write_text(
        page.replace(
            "</body>",
            "<script>window.addEventListener('load', () => { const s = [...document.images]"
            ".map(i => i.complete && i.naturalWidth > 0 ? 'ok' : 'broken');"
            "document.body.setAttribute('data-images', s.join(','));});</script></body>",
        )
    )
    dom = subprocess.run(
        [
            chromium, "--headless", "--no-sandbox", "--disable-gpu",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
            "--virtual-time-budget=5000", "--dump-dom", probe.as_uri(),
        ],
        capture_output=True, text=True, timeout=120,
    ).stdout  # fmt: skip
    marker = dom.split('data-images="', 1)[1].split('"', 1)[0]
    states = marker.split(",")
    assert len(states) >= 2 and set(states) == {"ok"}, states


def read_events(path: Path) -> list:
    """Events of a TensorBoard file (TFRecord framing: length, crc, data, crc)."""
    from tensorboardX.proto import event_pb2

    data, events, i = path.read_bytes(), [], 0
    while i < len(data):
        (n,) = struct.unpack("<Q", data[i : i + 8])
        events.append(event_pb2.Event.FromString(data[i + 12 : i + 12 + n]))
        i += 12 + n + 4
    return events


@pytest.mark.slow
def test_tensorboard_has_loss_lr_forget_quality_and_utility_per_epoch(swept):
    import pandas as pd

    out, *_ = swept
    epochs = pd.read_parquet(out / "trials.parquet").groupby("trial_id")["epoch"].max()
    for trial, last in epochs.items():  # trials stopped early included
        steps: dict[str, set] = {}
        for f in (out / "trials" / trial / "tensorboard").glob("events.out.tfevents.*"):
            for ev in read_events(f):
                for v in ev.summary.value:
                    steps.setdefault(v.tag, set()).add(ev.step)
        for tag in ("train/forget_loss", "train/lr", "eval/forget_quality", "eval/model_utility"):
            assert steps.get(tag) == set(range(1, last + 1)), (trial, tag, steps.get(tag))


@pytest.mark.slow
def test_mlflow_has_every_trial_when_a_tracking_uri_is_set(swept):
    mlflow = pytest.importorskip("mlflow")
    out, *_ = swept
    client = mlflow.tracking.MlflowClient(f"sqlite:///{out.parent}/mlflow.db")
    exp = client.get_experiment_by_name("unlearn-sweep")
    runs = client.search_runs([exp.experiment_id])
    names = {r.data.tags.get("trial_name", r.info.run_name) for r in runs}
    tune_trials = {p.name.split("_")[2] for p in (out / "tune").glob("run_trial_*")}
    assert all(any(t in n for n in names) for t in tune_trials), names
    logged = [r for r in runs if "forget_quality" in r.data.metrics]
    assert logged and all(0 <= r.data.metrics["forget_quality"] <= 1 for r in logged)


# ---------------------------------------------------------------------------------------------
# Bad input: a clear error before anything starts (no Ray, nothing written)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"space": {}}, "search space is empty"),
        (
            {"space": {"method": {"choice": ["ga"]}, "beta": {"uniform": [0.1, 0.5]}}},
            "unknown parameter 'beta' for the chosen method",
        ),
        ({"objectives": {"forget.bleu": "max"}}, "does not produce 'forget.bleu'"),
        (
            {"objectives": {"privleak": "min"}, "retain": None},
            "cannot compute 'privleak' here: no retain model",
        ),
        (
            {"asha": {"metric": "retain.colour"}},
            "asha.metric.retain.colour: the evaluation does not produce",
        ),
        (
            {"space": {"method": {"choice": ["ssd"]}, "lr": {"uniform": [0.1, 0.2]}}},
            "edits the weights once",
        ),
    ],
)
def test_bad_input_is_refused_before_launching(
    tiny_data, nano_model_dir, tmp_path, change, message, capsys
):
    from cli import main

    retain = change.pop("retain", nano_model_dir)
    cfg = sweep_config(tiny_data, nano_model_dir, retain, tmp_path / "out")
    cfg.update(change)
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["sweep", "--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message.split(".*")[0] in err, err
    assert not (tmp_path / "out").exists()


def test_resources_are_checked_against_the_cluster():
    from jobs.sweep import Plan, SweepConfig, check_resources
    from unlearn.errors import ConfigError
    from unlearn.sweep import SearchSpace

    base = {"data": {"path": "/d"}, "model": {"path": "/m"}, "output": {"dir": "/o"}}

    def plan(workers, cpus, concurrent=None):
        run = {
            **base,
            "scaling": {"num_workers": workers, "cpus_per_worker": cpus},
            "train": {"batch_size": 12, "micro_batch_size": 2},
        }
        cfg = SweepConfig(out="/o", run=run)
        cfg.resources.max_concurrent_trials = concurrent
        return Plan(cfg, SearchSpace({"lr": {"uniform": [0.1, 0.2]}}, run), {}, (), 3, [], [])

    assert check_resources(plan(1, 0.99), {"CPU": 2.0}) == 2
    assert check_resources(plan(2, 0.99), {"CPU": 4.0}) == 2
    with pytest.raises(ConfigError, match=r"a trial needs 2.98 CPU .* the cluster has 2"):
        check_resources(plan(3, 0.99), {"CPU": 2.0})
    with pytest.raises(ConfigError, match="needs 1 GPU"):
        p = plan(1, 0.5)
        p.space.base["scaling"]["use_gpu"] = True
        check_resources(p, {"CPU": 2.0})
    with pytest.raises(ConfigError, match="only 2 trials .* wait on each other's placement groups"):
        check_resources(plan(1, 0.99, concurrent=3), {"CPU": 2.0})


@pytest.mark.slow
def test_a_trial_larger_than_the_cluster_fails_before_any_trial(
    tiny_data, nano_model_dir, tmp_path
):
    cfg = sweep_config(tiny_data, nano_model_dir, nano_model_dir, tmp_path / "out")
    cfg["run"]["scaling"] = {"num_workers": 3, "cpus_per_worker": 0.99}
    cfg["run"]["train"]["batch_size"] = 12
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(cfg))
    done = subprocess.run(
        [*UNLEARN, "sweep", "--config", str(path)], cwd=ROOT, env=env(), capture_output=True,
        text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr[-2000:]
    assert "error: a trial needs 2.98 CPU" in done.stderr and "the cluster has 2" in done.stderr
    assert not (tmp_path / "out" / "tune").exists()


def test_tensorboard_callback_of_plain_runs(tmp_path, s3_bucket):
    """The Ray Train callback every run gets: one event file per writer, epoch as the step,
    published whole (locally and on S3) after each report; a resumed run adds a file."""
    import pickle

    import s3fs

    from jobs.common import TensorBoardCallback

    for logdir in (str(tmp_path / "tb"), f"{s3_bucket}/run/tensorboard"):
        cb = pickle.loads(pickle.dumps(TensorBoardCallback(logdir)))  # as Ray ships it
        for epoch in range(3):  # the engine's 0-based epochs
            cb.after_report(
                None,
                [
                    {
                        "epoch": epoch,
                        "forget_loss": -epoch,
                        "lr": 1e-3,
                        "forget_quality": 0.1 * epoch,
                        "model_utility": 0.5,
                        "privleak": None,
                    }
                ],
                None,
            )
        if logdir.startswith("s3://"):
            fs = s3fs.S3FileSystem(endpoint_url=os.environ["AWS_ENDPOINT_URL"])
            (name,) = fs.ls(logdir.removeprefix("s3://"))
            local = tmp_path / "from_s3"
            fs.get(name, str(local))
        else:
            (local,) = (tmp_path / "tb").glob("events.out.tfevents.*")
        steps: dict[str, list] = {}
        for ev in read_events(local):
            for v in ev.summary.value:
                steps.setdefault(v.tag, []).append((ev.step, round(v.simple_value, 6)))
        assert steps["train/forget_loss"] == [(1, 0.0), (2, -1.0), (3, -2.0)]
        assert steps["eval/forget_quality"] == [(1, 0.0), (2, 0.1), (3, 0.2)]
        assert {"train/lr", "eval/model_utility"} <= set(steps) and "eval/privleak" not in steps


def test_relative_paths_are_resolved_on_the_driver(tmp_path, monkeypatch):
    """Tune runs each trial in a directory of its own: the driver resolves local paths."""
    from jobs.sweep import resolve_paths

    monkeypatch.chdir(tmp_path)
    run = {"data": {"path": "runs/demo/data"}, "model": {"path": "s3://b/m", "retain_model": None}}
    out = resolve_paths(run)
    assert out["data"]["path"] == str(tmp_path / "runs/demo/data")
    assert out["model"] == {"path": "s3://b/m", "retain_model": None}
    assert run["data"]["path"] == "runs/demo/data"  # a copy
