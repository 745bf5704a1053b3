"""``unlearn eval --preset tofu | muse``: the presets' settings, their layering under --config,
flags and overrides, and (slow) both presets end to end on Ray on the hand-written fixtures."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from cli import main
from jobs.eval import load_job_config, parser

TESTS = Path(__file__).resolve().parents[1]
TOFU = TESTS / "unlearn" / "guard" / "heldout" / "tofu_shaped"
TOFU_HOLDOUT = TESTS / "unlearn" / "data" / "tofu_holdout"
MUSE = TESTS / "unlearn" / "data" / "muse_shaped"


def cfg(*argv):
    return load_job_config(
        parser().parse_args(["--model", "m", "--data", "d", "--out", "o", *argv])
    )


def test_presets_set_open_unlearnings_settings(tmp_path):
    tofu = cfg("--preset", "tofu").eval
    assert (tofu.max_new_tokens, tofu.max_length, tofu.forget_split) == (200, 512, "forget10")
    assert "gradnorm" in tofu.mia_attacks and tofu.privleak_attack == "min_k"
    muse = cfg("--preset", "muse").eval
    assert (muse.suite, muse.privleak_attack, muse.max_length) == ("muse", "min_k_plus_plus", 2048)
    assert (muse.knowmem_max_new_tokens, muse.verbmem_max_new_tokens) == (32, 128)
    assert muse.knowmem_stop == ["\n\n", "\nQuestion", "Question:"]
    # without a preset the small defaults stay (the demo's preset is separate)
    plain = cfg().eval
    assert (plain.max_new_tokens, plain.max_length, plain.suite) == (64, 256, "qa")
    # a config file, then key=value, apply on top of the preset (top-level shorthand included)
    (tmp_path / "mine.yaml").write_text("max_new_tokens: 100\neval:\n  batch_size: 4\n")
    mine = cfg("--preset", "tofu", "--config", str(tmp_path / "mine.yaml"), "max_length=384").eval
    assert (mine.max_new_tokens, mine.batch_size, mine.max_length) == (100, 4, 384)
    assert "gradnorm" in mine.mia_attacks  # the rest of the preset stays


def test_unknown_preset_is_named(capsys):
    assert main(["eval", "--preset", "wmdp", "--model", "m", "--data", "d", "--out", "o"]) == 2
    assert "--preset: unknown preset 'wmdp' (known: muse, tofu)" in capsys.readouterr().err


def _tiny_model(data: Path, out: Path, seed: int) -> Path:
    from unlearn.data import Dataset
    from unlearn.models import build_tiny_model, dataset_texts, save_model, train_tokenizer

    ds = Dataset(data)
    tok = train_tokenizer(dataset_texts(r for s in ds.splits for r in ds.records(s)), 600)
    save_model(build_tiny_model(tok, "nano", max_positions=640, seed=seed), tok, out)
    return out


@pytest.mark.slow
def test_both_presets_end_to_end(ray_local, tmp_path):
    """Import each fixture with the CLI and evaluate with its preset on a Ray worker."""
    src = tmp_path / "tofu_src"
    shutil.copytree(TOFU, src)
    for f in TOFU_HOLDOUT.glob("holdout*.json"):
        shutil.copy(f, src / f.name)
    runs = {
        "tofu": (src, ["max_new_tokens=8"]),
        "muse": (MUSE, ["max_length=384", "verbmem_max_new_tokens=16", "batch_size=8"]),
    }
    for preset, (release, extra) in runs.items():
        data = tmp_path / f"{preset}_data"
        assert main(["data", "import", "--format", preset, str(release), "--out", str(data)]) == 0
        model = _tiny_model(data, tmp_path / f"{preset}_model", seed=0)
        out = tmp_path / f"{preset}_eval"
        argv = ["eval", "--preset", preset, "--model", str(model), "--data", str(data)]
        argv += ["--retain-model", str(model), "--out", str(out), "--cache-dir", str(tmp_path)]
        assert main([*argv, *extra]) == 0
        doc = json.loads((out / "metrics.json").read_text())
        if preset == "tofu":
            assert doc["roles"]["holdout10"] == "holdout"
            assert set(doc["mia"]) == {"loss", "zlib", "min_k", "min_k_plus_plus", "gradnorm"}
            assert (
                doc["eval_config"]["max_length"] == 512
                and doc["eval_config"]["max_new_tokens"] == 8
            )
        else:
            assert doc["suite"] == "muse" and doc["eval_config"]["suite"] == "muse"
            assert {"muse_knowmem"} == set(doc["splits"]["knowmem_forget_qa"])
            assert {"muse_verbmem"} == set(doc["splits"]["verbmem_forget"])
            assert "min_k_plus_plus" in doc["mia"]
        # the retain model is the evaluated model: no leak relative to itself
        assert doc["privleak"] == pytest.approx(0.0, abs=1e-6)
        assert doc["privleak_reference"] == "retain model"
        assert "privleak" in (out / "report.html").read_text()
