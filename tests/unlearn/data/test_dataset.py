"""Dataset format: round trips, validation of bad input, and atomic writes."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from unlearn.data import Dataset, write_dataset
from unlearn.errors import DataError, OutputExistsError


def rows(entity: str, n: int = 2, start: int = 0) -> list[dict]:
    return [
        {
            "id": f"{entity}-{i}",
            "entity": entity,
            "question": f"Q{i} about {entity}?",
            "answer": f"A{i}.",
            "perturbed_answers": ["x", "y", "z"],
        }
        for i in range(start, start + n)
    ]


def write_simple(path, **kw):
    return write_dataset(
        path,
        {"forget": rows("ann"), "retain": rows("bob")},
        source="test",
        pairs={"forget": {"retain": "retain", "holdout": None}},
        **kw,
    )


def test_round_trip_keeps_rows_and_hashes(tmp_path):
    info = write_simple(tmp_path / "ds")
    ds = Dataset(tmp_path / "ds")
    assert ds.splits == ["forget", "retain"]
    assert ds.records("forget")[0]["perturbed_answers"] == ["x", "y", "z"]
    assert ds.records("forget")[0]["paraphrased_answer"] is None
    assert ds.hash == info.hash
    on_disk = json.loads((tmp_path / "ds" / "dataset.json").read_text())
    assert on_disk["splits"]["forget"] == {
        "rows": 2,
        "entities": 1,
        "hash": info.splits["forget"]["hash"],
    }
    forget, retain = ds.pair("forget")
    assert forget.num_rows == retain.num_rows == 2


def test_missing_dataset_and_missing_info(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        Dataset(tmp_path / "nope")
    (tmp_path / "bare").mkdir()
    with pytest.raises(DataError, match="dataset.json is missing"):
        Dataset(tmp_path / "bare")


def test_unknown_split_lists_known(tmp_path):
    write_simple(tmp_path / "ds")
    with pytest.raises(DataError, match=r"no split 'forget10' \(it has: forget, retain\)"):
        Dataset(tmp_path / "ds").read("forget10")


def test_missing_split_file(tmp_path):
    write_simple(tmp_path / "ds")
    (tmp_path / "ds" / "retain.parquet").unlink()
    with pytest.raises(DataError, match=r"retain\.parquet is missing"):
        Dataset(tmp_path / "ds").read("retain")


def test_unreadable_parquet(tmp_path):
    write_simple(tmp_path / "ds")
    (tmp_path / "ds" / "forget.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(DataError, match="not a readable parquet file"):
        Dataset(tmp_path / "ds").read("forget")


def test_missing_column_named(tmp_path):
    write_simple(tmp_path / "ds")
    table = pq.read_table(tmp_path / "ds" / "forget.parquet").drop_columns(["answer"])
    pq.write_table(table, tmp_path / "ds" / "forget.parquet")
    with pytest.raises(DataError, match=r"missing column\(s\) answer"):
        Dataset(tmp_path / "ds").read("forget")


def test_wrong_column_type_named(tmp_path):
    write_simple(tmp_path / "ds")
    table = pq.read_table(tmp_path / "ds" / "forget.parquet")
    table = table.set_column(table.schema.get_field_index("answer"), "answer", pa.array([1, 2]))
    pq.write_table(table, tmp_path / "ds" / "forget.parquet")
    with pytest.raises(DataError, match="column 'answer' has type int64"):
        Dataset(tmp_path / "ds").read("forget")


def test_changed_file_fails_hash_check(tmp_path):
    write_simple(tmp_path / "ds")
    table = pq.read_table(tmp_path / "ds" / "forget.parquet")
    table = table.set_column(
        table.schema.get_field_index("answer"), "answer", pa.array(["B0.", "B1."])
    )
    pq.write_table(table, tmp_path / "ds" / "forget.parquet")
    with pytest.raises(DataError, match="does not match dataset.json"):
        Dataset(tmp_path / "ds").read("forget")


def test_duplicate_ids_rejected(tmp_path):
    bad = rows("ann") + rows("ann", n=1)
    with pytest.raises(DataError, match="duplicate id 'ann-0'"):
        write_dataset(tmp_path / "ds", {"forget": bad}, source="test")
    assert not (tmp_path / "ds").exists()


def test_shared_entity_between_forget_and_retain_rejected(tmp_path):
    with pytest.raises(
        DataError, match="'ann'.*both forget split 'forget' and retain split 'retain'"
    ):
        write_dataset(
            tmp_path / "ds",
            {"forget": rows("ann"), "retain": rows("ann", start=5)},
            source="test",
            pairs={"forget": {"retain": "retain", "holdout": None}},
        )
    assert not (tmp_path / "ds").exists()
    assert list(tmp_path.iterdir()) == []  # no staging directory left behind


def test_empty_split_rejected(tmp_path):
    with pytest.raises(DataError, match="split 'forget'.*empty"):
        write_dataset(tmp_path / "ds", {"forget": []}, source="test")


def test_null_in_required_column_rejected(tmp_path):
    bad = rows("ann")
    bad[1]["question"] = None
    with pytest.raises(DataError, match="column 'question' has 1 null"):
        write_dataset(tmp_path / "ds", {"forget": bad}, source="test")


def test_existing_output_not_overwritten_without_flag(tmp_path):
    info = write_simple(tmp_path / "ds")
    with pytest.raises(OutputExistsError):
        write_dataset(tmp_path / "ds", {"forget": rows("zed")}, source="test")
    assert Dataset(tmp_path / "ds").hash == info.hash
    write_dataset(tmp_path / "ds", {"forget": rows("zed")}, source="test", overwrite=True)
    assert Dataset(tmp_path / "ds").splits == ["forget"]


def test_s3_round_trip(s3_bucket):
    url = f"{s3_bucket}/datasets/simple"
    info = write_simple(url)
    ds = Dataset(url)
    assert ds.hash == info.hash
    assert ds.records("retain")[1]["id"] == "bob-1"


def test_s3_partial_upload_is_not_a_dataset(s3_bucket):
    import s3fs

    fs = s3fs.S3FileSystem(skip_instance_cache=True)
    url = f"{s3_bucket}/partial"
    write_simple(url)
    fs.rm(f"{url}/dataset.json")  # as if the upload stopped before its commit file
    with pytest.raises(DataError, match="dataset.json is missing"):
        Dataset(url)
