"""Shared fixtures: a small synthetic dataset and guard indexes built from it (lexical: fast)."""

from __future__ import annotations

import pytest

from unlearn.data import Dataset, write_dataset
from unlearn.data.synth import synthesize
from unlearn.guard import Guard, GuardConfig, load_index
from unlearn.guard.index import build_from_dataset, save_index


@pytest.fixture(scope="session")
def dataset(tmp_path_factory) -> Dataset:
    """40 fictitious entities x 10 facts: forget10 has 4 entities / 40 facts, retain90 360 facts."""
    path = tmp_path_factory.mktemp("guard-data") / "synth"
    splits, pairs = synthesize(40, 10, seed=3)
    write_dataset(path, splits, source="unlearn.synth", seed=3, pairs=pairs)
    return Dataset(path)


@pytest.fixture(scope="session")
def index_dir(dataset, tmp_path_factory):
    """A lexical-only index of forget10 (with retain90) on disk."""
    path = tmp_path_factory.mktemp("guard-index") / "ix"
    save_index(build_from_dataset(dataset, ["forget10"], embeddings=False), path)
    return path


@pytest.fixture(scope="session")
def index(index_dir, dataset):
    """The lexical index, loaded and checked against its dataset."""
    return load_index(index_dir, dataset=dataset)


@pytest.fixture
def guard(index) -> Guard:
    """A lexical-only guard with a fresh session ledger."""
    return Guard(index, GuardConfig(embeddings=False))


@pytest.fixture(scope="session")
def forget_rows(dataset) -> list[dict]:
    """forget10 rows."""
    return dataset.records("forget10")


@pytest.fixture(scope="session")
def retain_rows(dataset) -> list[dict]:
    """retain90 rows."""
    return dataset.records("retain90")


@pytest.fixture(scope="session")
def built_index(index_dir, tmp_path_factory):
    """A private copy of the lexical index directory (commands may write guard.yaml into it)."""
    import shutil

    dst = tmp_path_factory.mktemp("guard-index-copy") / "ix"
    shutil.copytree(index_dir, dst)
    return dst
