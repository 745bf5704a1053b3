"""A run whose evaluation cannot work fails before anything trains, naming the split and column:
`unlearn run` (jobs.common.prepare_run, on the driver before Ray starts) and `unlearn demo`
(before the base model is built)."""

from __future__ import annotations

import pytest

from cli import main
from jobs.common import prepare_run
from unlearn.config import load_config
from unlearn.data import Dataset, write_dataset
from unlearn.engine.config import RunConfig
from unlearn.engine.evaluation import check_eval_plan
from unlearn.errors import DataError


@pytest.fixture
def broken_retain(tiny_data, tmp_path):
    """tiny_data with the perturbed answers of retain90's rows removed (what a TOFU import
    looks like to a run evaluating on retain90 rather than retain_perturbed)."""
    ds = Dataset(tiny_data)
    splits = {name: list(ds.records(name)) for name in ds.splits}
    for row in splits["retain90"]:
        row["perturbed_answers"] = []
    path = tmp_path / "broken"
    write_dataset(path, splits, source="test", pairs=ds.info.pairs)
    return path


def run_cfg(data, out, *extra, model="/nonexistent/model"):
    return load_config(
        RunConfig,
        "examples/npo_tiny.yaml",
        [f"data.path={data}", f"model.path={model}", f"output.dir={out}", *extra],
    )


def test_unlearn_run_refuses_an_unworkable_evaluation_before_training(
    broken_retain, nano_model_dir, tmp_path
):
    cfg = run_cfg(broken_retain, tmp_path / "run", "eval.every_n_epochs=1", model=nano_model_dir)
    with pytest.raises(DataError, match=r"split 'retain90'.*column 'perturbed_answers'"):
        prepare_run(cfg)
    assert not (tmp_path / "run").exists()  # nothing recorded, nothing trained
    # the same dataset is fine for a run that does not evaluate, and for one that skips the metric
    check_eval_plan(run_cfg(broken_retain, tmp_path / "ok"), Dataset(broken_retain))
    skip = run_cfg(
        broken_retain, tmp_path / "skip", "eval.every_n_epochs=1", "eval.on_missing_perturbed=skip"
    )
    check_eval_plan(skip, Dataset(broken_retain))


def test_demo_refuses_an_unworkable_evaluation_before_training(broken_retain, tmp_path, capsys):
    out = tmp_path / "demo"
    argv = [
        "demo", "--data", str(broken_retain), "--forget-split", "forget10",
        "--retain-split", "retain90", "--out", str(out), "--workers", "1",
    ]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "split 'retain90'" in err and "'perturbed_answers'" in err, err
    assert not (out / "base").exists() and not (out / "target").exists()
