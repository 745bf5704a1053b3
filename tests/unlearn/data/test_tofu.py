"""TOFU import on small hand-written fixtures in TOFU's shape."""

from __future__ import annotations

import json

import pytest

from cli import main
from unlearn.data import Dataset
from unlearn.errors import DataError


def qa(i: int) -> dict:
    return {"question": f"What did author {i // 2} write (fact {i})?", "answer": f"Book {i}."}


@pytest.fixture
def tofu_dir(tmp_path):
    """A TOFU-shaped release: 3 authors x 2 rows; forget34 = last author (JSON lines + arrays mixed)."""
    src = tmp_path / "tofu"
    src.mkdir()
    full = [qa(i) for i in range(6)]
    (src / "full.json").write_text(json.dumps(full))
    (src / "forget34.json").write_text("\n".join(json.dumps(r) for r in full[4:]) + "\n")
    (src / "retain66.json").write_text(json.dumps(full[:4]))
    perturbed = [
        {
            **r,
            "paraphrased_answer": f"P{i}",
            "paraphrased_question": f"PQ{i}",
            "perturbed_answer": [f"w{i}a", f"w{i}b", f"w{i}c"],
        }
        for i, r in enumerate(full[4:], start=4)
    ]
    (src / "forget34_perturbed.json").write_text(json.dumps(perturbed))
    (src / "retain_perturbed.json").write_text(
        json.dumps([{**full[1], "paraphrased_answer": "RP", "perturbed_answer": ["r1", "r2"]}])
    )
    world = [
        {
            "question": "Capital of France?",
            "answer": "Paris",
            "perturbed_answer": ["Rome", "Oslo", "Lima"],
        }
    ]
    (src / "world_facts_perturbed.json").write_text(json.dumps(world))
    (src / "real_authors_perturbed.json").write_text(
        json.dumps(
            [
                {
                    "question": "Who wrote Hamlet?",
                    "answer": "Shakespeare",
                    "perturbed_answer": ["Joyce"],
                }
            ]
        )
    )
    return src


def test_import_tofu_shape(tofu_dir, tmp_path):
    out = tmp_path / "ds"
    assert (
        main(
            [
                "data",
                "import",
                "--format",
                "tofu",
                str(tofu_dir),
                "--out",
                str(out),
                "--rows-per-entity",
                "2",
            ]
        )
        == 0
    )
    ds = Dataset(out)
    assert set(ds.splits) == {
        "full",
        "forget34",
        "retain66",
        "retain_perturbed",
        "world_facts",
        "real_authors",
    }
    forget = ds.records("forget34")
    assert [r["id"] for r in forget] == ["tofu-00004", "tofu-00005"]
    assert {r["entity"] for r in forget} == {"author-0002"}
    assert forget[0]["perturbed_answers"] == ["w4a", "w4b", "w4c"]
    assert forget[1]["paraphrased_question"] == "PQ5"
    assert {r["entity"] for r in ds.records("retain66")} == {"author-0000", "author-0001"}
    # the same fact keeps one id and entity across splits
    rp = ds.records("retain_perturbed")[0]
    assert (rp["id"], rp["entity"], rp["perturbed_answers"]) == (
        "tofu-00001",
        "author-0000",
        ["r1", "r2"],
    )
    wf = ds.records("world_facts")[0]
    assert wf["paraphrased_answer"] == "Paris" and wf["perturbed_answers"] == [
        "Rome",
        "Oslo",
        "Lima",
    ]
    assert ds.info.pairs == {"forget34": {"retain": "retain66", "holdout": None}}


def test_rows_per_entity_that_splits_an_author_is_refused(tofu_dir, tmp_path, capsys):
    # with 3 rows per author, author 1 would hold rows 3-5: forget and retain would share it,
    # so the import refuses and writes nothing
    out = tmp_path / "ds"
    args = ["data", "import", "--format", "tofu", str(tofu_dir), "--out", str(out)]
    assert main([*args, "--rows-per-entity", "3"]) == 2
    assert "'author-0001'" in capsys.readouterr().err
    assert not out.exists()
    # these rows name no author, so the block size cannot be derived: the flag is asked for
    assert main(args) == 2
    assert "pass --rows-per-entity N (TOFU: 20)" in capsys.readouterr().err
    assert not out.exists()


def test_row_not_in_full_is_named(tofu_dir, tmp_path):
    (tofu_dir / "forget34.json").write_text(json.dumps([{"question": "Unknown?", "answer": "x"}]))
    from unlearn.data.tofu import import_tofu

    with pytest.raises(DataError, match=r"forget34\.json:0: row is not in full\.json"):
        import_tofu(tofu_dir, rows_per_entity=2)


def test_missing_full_json(tmp_path):
    from unlearn.data.tofu import import_tofu

    (tmp_path / "src").mkdir()
    with pytest.raises(DataError, match="full.json is missing"):
        import_tofu(tmp_path / "src")


def test_malformed_json_is_named(tofu_dir):
    from unlearn.data.tofu import import_tofu

    (tofu_dir / "retain66.json").write_text("{not json")
    with pytest.raises(DataError, match=r"retain66\.json: not valid JSON"):
        import_tofu(tofu_dir, rows_per_entity=2)
