"""Shared fixtures: a tiny synthetic dataset, a tiny model, and a real S3 server on 127.0.0.1."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

# Ray's node and gloo's MASTER_ADDR stay on loopback with this switch (see ray.md).
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """A small synthetic benchmark: 20 entities x 4 facts (+ holdout and world facts)."""
    from unlearn.data import write_dataset
    from unlearn.data.synth import synthesize

    path = tmp_path_factory.mktemp("data") / "synth"
    splits, pairs = synthesize(20, 4, seed=3)
    write_dataset(path, splits, source="unlearn.synth", seed=3, pairs=pairs)
    return path


@pytest.fixture(scope="session")
def nano_model_dir(tiny_data, tmp_path_factory) -> Path:
    """A randomly initialized nano Llama + tokenizer trained on ``tiny_data``, saved in HF layout."""
    from unlearn.data import Dataset
    from unlearn.models import build_tiny_model, dataset_texts, save_model, train_tokenizer

    ds = Dataset(tiny_data)
    records = [r for s in ds.splits for r in ds.records(s)]
    tok = train_tokenizer(dataset_texts(records), vocab_size=512)
    model = build_tiny_model(tok, "nano", max_positions=128)
    path = tmp_path_factory.mktemp("models") / "nano"
    save_model(model, tok, path)
    return path


@pytest.fixture(scope="session")
def s3_server():
    """A moto S3 server on 127.0.0.1 (real HTTP), with credentials and endpoint in the environment."""
    port = free_port()
    moto = Path(sys.executable).with_name("moto_server")
    proc = subprocess.Popen(
        [str(moto), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.time() + 20
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                break
        except OSError:
            time.sleep(0.1)
    else:
        proc.kill()
        raise RuntimeError("moto_server did not start")
    saved = {
        k: os.environ.get(k)
        for k in (
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_DEFAULT_REGION",
            "AWS_ENDPOINT_URL",
        )
    }
    os.environ.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION="us-east-1",
        AWS_ENDPOINT_URL=endpoint,
    )
    yield endpoint
    proc.terminate()
    proc.wait(timeout=10)
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture
def s3_bucket(s3_server) -> str:
    """A fresh bucket on the moto server; returns its ``s3://`` URL."""
    import uuid

    import s3fs

    name = f"test-{uuid.uuid4().hex[:10]}"
    fs = s3fs.S3FileSystem(endpoint_url=s3_server, skip_instance_cache=True)
    fs.mkdir(name)
    return f"s3://{name}"


@pytest.fixture(scope="session")
def ray_local():
    """One local Ray for the whole session (loopback, no dashboard); 4 logical CPUs so that 2
    training workers, actors and tasks fit on this 2-core machine."""
    import ray

    from jobs.common import init_ray

    init_ray(num_cpus=4)
    yield ray
    ray.shutdown()
