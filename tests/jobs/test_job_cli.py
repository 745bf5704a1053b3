"""The job command lines refuse bad configs before any Ray work starts."""

from __future__ import annotations

from cli import main


def test_run_refuses_finetune_and_bad_keys(tiny_data, nano_model_dir, tmp_path, capsys):
    base = [
        "--config",
        "examples/npo_tiny.yaml",
        f"data.path={tiny_data}",
        f"model.path={nano_model_dir}",
        f"output.dir={tmp_path}/o",
    ]
    assert main(["run", *base, "method.name=finetune", "method.beta=0.1"]) == 2
    assert "unknown config key method.beta" in capsys.readouterr().err
    assert main(["run", *base, "method.name=sgd"]) == 2
    assert "unknown method 'sgd'" in capsys.readouterr().err
    assert main(["run", *base, "train.lr=-1"]) == 2
    assert "train.lr: must be > 0" in capsys.readouterr().err
    # the fine-tuning job sets method.name itself: a config or override naming another is refused
    assert main(["finetune", *base]) == 2
    assert "method.name: this command sets it to 'finetune'; got 'npo'" in capsys.readouterr().err
    assert main(["finetune", *base[2:], "method.name=npo"]) == 2
    assert "got 'npo'" in capsys.readouterr().err
    ft = ["--config", "examples/finetune_tiny.yaml", *base[2:]]
    assert main(["finetune", *ft, "method.beta=0.2"]) == 2  # finetune has no beta
    assert "unknown config key method.beta" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()  # nothing written for a refused config


def test_run_refuses_a_finished_run(tiny_data, nano_model_dir, tmp_path, capsys):
    import json

    out = tmp_path / "done"
    out.mkdir()
    (out / "data_hashes.json").write_text(json.dumps({"dataset": "x", "splits": {}}))
    (out / "run.json").write_text(json.dumps({"status": "finished"}))
    args = [
        "run",
        "--config",
        "examples/npo_tiny.yaml",
        f"data.path={tiny_data}",
        f"model.path={nano_model_dir}",
        f"output.dir={out}",
    ]
    assert main(args) == 2
    assert "holds a finished run" in capsys.readouterr().err
