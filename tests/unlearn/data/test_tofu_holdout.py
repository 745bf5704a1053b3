"""TOFU import of the hand-written TOFU-shaped fixture with holdout files: authors derived from
the rows, holdout01/05/10 paired with the forget splits, MIA and privleak computed on them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from cli import main
from unlearn.data import Dataset
from unlearn.data.tofu import import_tofu, tofu_rows_per_entity
from unlearn.errors import DataError

HERE = Path(__file__).resolve().parent
SHAPED = HERE.parents[1] / "unlearn" / "guard" / "heldout" / "tofu_shaped"
HOLDOUT = HERE / "tofu_holdout"


@pytest.fixture
def release(tmp_path) -> Path:
    """The tofu_shaped release (20 authors x 6 rows) plus holdout01/05/10.json."""
    src = tmp_path / "tofu"
    shutil.copytree(SHAPED, src)
    for f in HOLDOUT.glob("holdout*.json"):
        shutil.copy(f, src / f.name)
    return src


def test_authors_are_derived_from_the_rows(release):
    assert tofu_rows_per_entity(release) == 6  # not TOFU's 20: this fixture has 6 per author
    splits, _ = import_tofu(release)
    full = splits["full"]
    assert len({r["entity"] for r in full}) == 20
    # every author's six rows share one entity, and it is the author the rows are about
    by_entity: dict[str, list[str]] = {}
    for r in full:
        by_entity.setdefault(r["entity"], []).append(r["question"] + r["answer"])
    assert all("Nadia Okafor" in " ".join(v) for v in [by_entity["author-0019"]])
    assert all("Tomasz Wielgosz" in t for t in by_entity["author-0001"][1:])


def test_import_produces_paired_holdout_splits(release, tmp_path, capsys):
    out = tmp_path / "ds"
    assert main(["data", "import", "--format", "tofu", str(release), "--out", str(out)]) == 0
    assert "6 consecutive rows per author (derived)" in capsys.readouterr().out
    ds = Dataset(out)
    assert {"holdout01", "holdout05", "holdout10"} <= set(ds.splits)
    assert ds.info.pairs["forget10"] == {"retain": "retain90", "holdout": "holdout10"}
    assert ds.info.pairs["forget05"] == {"retain": "retain95", "holdout": "holdout05"}
    h10, h05, h01 = (ds.records(s) for s in ("holdout10", "holdout05", "holdout01"))
    assert (len(h10), len(h05), len(h01)) == (12, 6, 2)
    assert {r["entity"] for r in h10} == {"holdout-author-0000", "holdout-author-0001"}
    # one fact, one id across the holdout files; none of them is a trained-on row
    assert [r["id"] for r in h05] == [r["id"] for r in h10[:6]]
    assert [r["id"] for r in h01] == [r["id"] for r in h10[:2]]
    trained = {r["id"] for r in ds.records("full")}
    assert not trained & {r["id"] for r in h10}
    assert json.loads((out / "dataset.json").read_text())["params"]["rows_per_entity"] == 6


def test_a_holdout_row_seen_in_training_is_refused(release):
    full_row = json.loads((release / "full.json").read_text().splitlines()[3])
    with (release / "holdout10.json").open("a") as f:
        f.write(json.dumps(full_row) + "\n")
    with pytest.raises(DataError, match=r"holdout10\.json:12: this holdout row is also in full"):
        import_tofu(release)


def test_eval_on_the_holdout_reports_mia_and_privleak(release, tmp_path):
    """One process: a tiny model (tokenizer trained on the data) and a retain model."""
    from unlearn.data import write_dataset
    from unlearn.eval import EvalConfig, evaluate, retain_reference
    from unlearn.models import build_tiny_model, dataset_texts, train_tokenizer

    splits, pairs = import_tofu(release)
    write_dataset(tmp_path / "ds", splits, source="tofu", pairs=pairs)
    ds = Dataset(tmp_path / "ds")
    tok = train_tokenizer(dataset_texts(r for s in ds.splits for r in ds.records(s)), 512)
    model = build_tiny_model(tok, "nano", max_positions=256, seed=1)
    retain = build_tiny_model(tok, "nano", max_positions=256, seed=2)
    cfg = EvalConfig(forget_split="forget10", max_new_tokens=4, max_length=128,
                     mia_attacks=["loss", "zlib", "min_k", "min_k_plus_plus", "reference"])  # fmt: skip
    ref = retain_reference(retain, tok, ds, cfg, use_cache=False)
    m = evaluate(model, tok, ds, cfg, ref)
    assert m["roles"] == {
        "forget10": "forget", "retain_perturbed": "retain", "holdout10": "holdout",
        "real_authors": "options", "world_facts": "options",
    }  # fmt: skip
    assert set(m["mia"]) == {"loss", "zlib", "min_k", "min_k_plus_plus", "reference"}
    assert all(0.0 <= v["auc"] <= 1.0 for v in m["mia"].values())
    assert m["privleak"] is not None and m["privleak_reference"] == "retain model"
    assert m["rel_diff"] is not None
    # without a retain model privleak stays null unless the fixed reference AUC is asked for
    bare = evaluate(model, tok, ds, cfg)
    assert bare["privleak"] is None and "no retain model" in bare["privleak_reason"]
    assert "mia.reference" in bare["skipped"]
    fixed = evaluate(model, tok, ds, EvalConfig(**{**cfg.__dict__, "privleak_reference_auc": 0.5}))
    auc = fixed["mia"]["min_k"]["auc"]
    assert fixed["privleak"] == pytest.approx(((1 - auc) - 0.5) / 0.5 * 100, rel=1e-6)
    assert fixed["privleak_reference"].startswith("fixed AUC 0.5")
