"""Index compilation, serialization, versioning and the bad-input errors."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest

from unlearn.data import Dataset, write_dataset
from unlearn.data.synth import synthesize
from unlearn.errors import DataError, OutputExistsError
from unlearn.guard.index import (
    FORGET,
    GuardIndexError,
    atomic_units,
    build_from_dataset,
    compile_index,
    load_index,
    name_variants,
    read_parts,
    save_index,
)

ROWS = [
    {"id": "f1", "entity": "Drömtaim Leapéx", "question": "Where was Drömtaim Leapéx born?",
     "answer": "Drömtaim Leapéx was born in Belmora."},
    {"id": "f2", "entity": "Drömtaim Leapéx", "question": "What does Drömtaim Leapéx do?",
     "answer": "Drömtaim Leapéx works as a glassblower; she also keeps bees, and writes poems."},
]  # fmt: skip
RETAIN = [
    {"id": "r1", "entity": "Kora Leapex", "question": "Where was Kora Leapex born?",
     "answer": "Kora Leapex was born in Ostrelle."},
]  # fmt: skip


def test_name_variants_cover_parts_initials_and_diacritics():
    v = name_variants("Drömtaim Leapéx")
    assert ("dromtaim", "leapex") in v
    assert ("dromtaim",) in v and ("leapex",) in v
    assert ("d", "leapex") in v and ("leapex", "dromtaim") in v
    assert ("ann", "cy") in name_variants("Ann Bo Cy")


def test_ambiguous_partial_names_are_kept_as_ambiguous():
    parts = compile_index(ROWS, RETAIN, embeddings=False)
    aliases = {tuple(v): (who, kind) for v, who, kind in parts.entities["aliases"]}
    assert aliases[("dromtaim", "leapex")] == ([0], "full")
    assert aliases[("dromtaim",)] == ([0], "partial")
    # shared surname of a forget and a retain entity: resolved per check, never a name alone
    assert aliases[("leapex",)] == ([0, 1], "ambiguous")
    assert aliases[("kora", "leapex")] == ([1], "full")
    assert aliases[("dromtaimleapex",)] == ([0], "full")  # the parts joined


def test_payload_is_what_the_answer_adds_to_the_question():
    parts = compile_index(ROWS, RETAIN, embeddings=False)
    payloads = dict(zip(parts.facts["rows"], parts.facts["payload"]))
    assert payloads["f1"] == ["belmora"]  # "born" is in the question, the name is not content
    values = dict(zip(parts.facts["rows"], parts.facts["values"]))
    assert values["f1"] == ["w:belmora"]
    assert atomic_units(ROWS[1]["answer"]) == [
        "Drömtaim Leapéx works as a glassblower",
        "she also keeps bees",
        "writes poems.",
    ]
    rows_of_f2 = [r for r in parts.facts["rows"] if r == "f2"]
    assert len(rows_of_f2) == 3  # three atomic facts from one answer
    weights = parts.facts["weights"]
    assert all(abs(sum(w) - 1.0) < 1e-4 for w in weights)


def test_save_load_roundtrip_records_versions(index_dir, dataset):
    ix = load_index(index_dir, dataset=dataset)
    man = json.loads((index_dir / "manifest.json").read_text())
    assert man["source"]["hash"] == dataset.hash
    assert man["source"]["splits"]["forget10"] == dataset.split_hash("forget10")
    assert man["source"]["splits"]["retain90"] == dataset.split_hash("retain90")
    assert ix.version == man["version"] and len(ix.version) == 16
    assert ix.n_forget_facts == len(dataset.records("forget10"))
    assert np.all(ix.fact_role[: ix.n_forget_facts] == FORGET)
    assert not list(index_dir.glob("*.pkl"))
    assert {p.suffix for p in index_dir.iterdir()} <= {".json", ".npy"}


def test_index_refuses_to_overwrite(index_dir, dataset):
    with pytest.raises(OutputExistsError):
        save_index(build_from_dataset(dataset, ["forget10"], embeddings=False), index_dir)


def test_other_dataset_version_names_both_hashes(index_dir, dataset, tmp_path):
    splits, pairs = synthesize(40, 10, seed=4)  # another version of "the same" dataset
    write_dataset(tmp_path / "other", splits, source="unlearn.synth", pairs=pairs)
    other = Dataset(tmp_path / "other")
    with pytest.raises(GuardIndexError) as err:
        load_index(index_dir, dataset=other)
    msg = str(err.value)
    assert dataset.hash[:16] in msg and other.hash[:16] in msg
    assert "forget10" in msg and "rebuild" in msg


@pytest.fixture
def copy_dir(index_dir, tmp_path):
    dst = tmp_path / "ix"
    shutil.copytree(index_dir, dst)
    return dst


def test_corrupt_array_file_is_named(copy_dir):
    f = copy_dir / "fact_ngram_hashes.npy"
    data = bytearray(f.read_bytes())
    data[-1] ^= 0xFF
    f.write_bytes(bytes(data))
    with pytest.raises(GuardIndexError, match="fact_ngram_hashes.npy is corrupt"):
        load_index(copy_dir)


def test_corrupt_manifest_and_missing_files(copy_dir):
    (copy_dir / "facts.json").unlink()
    with pytest.raises(GuardIndexError, match="facts.json is missing"):
        load_index(copy_dir)
    (copy_dir / "manifest.json").write_text("{not json")
    with pytest.raises(GuardIndexError, match="manifest.json is corrupt"):
        load_index(copy_dir)
    (copy_dir / "manifest.json").unlink()
    with pytest.raises(GuardIndexError, match="not a guard index"):
        load_index(copy_dir)
    with pytest.raises(GuardIndexError, match="does not exist"):
        load_index(copy_dir / "nowhere")


def test_future_format_version_is_refused(copy_dir):
    man = json.loads((copy_dir / "manifest.json").read_text())
    man["format_version"] = 99
    (copy_dir / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(GuardIndexError, match="format version 99"):
        load_index(copy_dir)


def test_inconsistent_but_hash_valid_content_is_refused(copy_dir):
    parts = read_parts(copy_dir)
    parts.facts["entity"] = parts.facts["entity"][:-1]  # a column shorter than the others
    parts.manifest.pop("files")
    shutil.rmtree(copy_dir)
    save_index(parts, copy_dir)
    with pytest.raises(GuardIndexError, match="inconsistent"):
        load_index(copy_dir)


def test_pickled_arrays_are_refused(copy_dir):
    parts = read_parts(copy_dir)
    parts.arrays["fact_ngram_offsets"] = np.array([object()], dtype=object)
    parts.manifest.pop("files")
    shutil.rmtree(copy_dir)
    with pytest.raises(ValueError):  # np.save(allow_pickle=False) refuses to write it
        save_index(parts, copy_dir)


def test_empty_forget_split_is_an_error(tmp_path, dataset):
    with pytest.raises(DataError, match="no rows"):
        compile_index([], RETAIN, embeddings=False)
    # a dataset directory whose forget split file holds zero rows
    shutil.copytree(dataset.path, tmp_path / "ds")
    empty = pq.read_table(tmp_path / "ds" / "forget10.parquet").slice(0, 0)
    pq.write_table(empty, tmp_path / "ds" / "forget10.parquet")
    with pytest.raises(DataError, match="empty"):
        build_from_dataset(Dataset(tmp_path / "ds"), ["forget10"], embeddings=False)


def test_forget_and_retain_must_not_share_entities():
    with pytest.raises(DataError, match="both the forget and the retain"):
        compile_index(ROWS, [dict(ROWS[0], id="x")], embeddings=False)


def test_bad_rows_are_named():
    with pytest.raises(DataError, match="'answer'"):
        compile_index([dict(ROWS[0], answer="")], embeddings=False)


def test_lookups_are_hash_based_with_capped_postings(index):
    # no posting list is longer than the cap, so a lookup never walks a large list of facts
    cap = index.manifest["postings_cap"]
    assert max(len(v) for v in index.payload_postings.values()) <= cap
    assert int(index._gram_counts.max()) <= cap


def test_version_covers_content_and_build_settings(tmp_path):
    a = save_index(compile_index(ROWS, RETAIN, embeddings=False), tmp_path / "a")
    b = save_index(compile_index(ROWS, RETAIN, embeddings=False), tmp_path / "b")
    c = save_index(compile_index(ROWS, RETAIN, embeddings=False, postings_cap=8), tmp_path / "c")
    d = save_index(compile_index(ROWS[:1], RETAIN, embeddings=False), tmp_path / "d")
    assert a == b and len({a, c, d}) == 3
