"""Issue 16, as written: ``--overwrite`` cannot delete a user's files and publishes before it
removes; caches are keyed by content; fixed keys are refused; late validations fail fast without
Ray; failures are recorded; one error boundary. The mechanism itself (``unlearn.storage``) is
tested locally and on a real S3 server (moto on 127.0.0.1), including writers killed mid-way.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cli import main
from unlearn import storage
from unlearn.data import Dataset, write_dataset
from unlearn.errors import DataError, ModelError, OutputExistsError, describe, run_command

ROOT = Path(__file__).resolve().parents[1]


def rows(entity: str, n: int = 2) -> list[dict]:
    return [
        {"id": f"{entity}-{i}", "entity": entity, "question": f"Q{i}?", "answer": f"A{i}."}
        for i in range(n)
    ]


def write_small(path, **kw):
    return write_dataset(path, {"forget": rows("ann"), "retain": rows("bob")}, source="t", **kw)


def hidden(parent: Path) -> list[str]:
    return sorted(n for n in os.listdir(parent) if storage.MARK in n)


# --------------------------------------------------------------------------------------------
# 1. --overwrite replaces only this tool's own output of the same kind


def test_a_users_directory_survives_overwrite(tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("do not delete")
    assert main(["data", "synth", "--out", str(mine), "--overwrite", "--entities", "4"]) == 2
    assert "holds notes.txt, which is not a dataset written by unlearn" in capsys.readouterr().err
    assert os.listdir(mine) == ["notes.txt"] and (mine / "notes.txt").read_text() == "do not delete"
    assert main(["data", "synth", "--out", str(mine / "notes.txt"), "--overwrite"]) == 2
    assert "is a file" in capsys.readouterr().err
    assert (mine / "notes.txt").read_text() == "do not delete"
    assert hidden(tmp_path) == []


def test_overwrite_replaces_our_dataset_but_not_one_with_a_strangers_file(tmp_path, capsys):
    out = tmp_path / "ds"
    assert main(["data", "synth", "--out", str(out), "--entities", "4", "--seed", "1"]) == 0
    first = Dataset(out).hash
    assert main(["data", "synth", "--out", str(out), "--entities", "4", "--seed", "2"]) == 2
    assert "already holds a dataset; pass --overwrite" in capsys.readouterr().err
    (out / "notes.txt").write_text("mine")
    assert main(["data", "synth", "--out", str(out), "--entities", "4", "--overwrite"]) == 2
    assert "holds notes.txt beside a dataset" in capsys.readouterr().err
    assert Dataset(out).hash == first
    (out / "notes.txt").unlink()
    args = ["data", "synth", "--out", str(out), "--entities", "4", "--seed", "2", "--overwrite"]
    assert main(args) == 0
    assert Dataset(out).hash != first
    assert hidden(tmp_path) == []


def test_other_kinds_of_output_are_not_replaced(tiny_data, nano_model_dir, tmp_path, capsys):
    """A model directory is not a dataset, a dataset is not a model, neither is a run."""
    model = tmp_path / "model"
    shutil.copytree(nano_model_dir, model)
    assert main(["data", "synth", "--out", str(model), "--overwrite"]) == 2
    assert "not a dataset written by unlearn (it has no dataset.json)" in capsys.readouterr().err
    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    args = ["model", "tiny", "--out", str(data), "--data", str(tiny_data), "--overwrite"]
    assert main(args) == 2
    assert "not a model written by unlearn" in capsys.readouterr().err
    run = ["run", "--config", str(ROOT / "examples/npo_tiny.yaml"), f"data.path={tiny_data}"]
    assert main([*run, f"model.path={model}", f"output.dir={data}", "--overwrite"]) == 2
    assert "not a run written by unlearn" in capsys.readouterr().err
    assert Dataset(data).hash == Dataset(tiny_data).hash


def test_run_overwrite_checks_inputs_before_touching_the_old_run(
    tiny_data, nano_model_dir, tmp_path, capsys
):
    """The issue: `run output.dir=DIR --overwrite` deleted DIR, then found the model missing 28 s
    later. Now the model is checked first (no Ray, well under 5 s) and DIR is untouched."""
    import ray

    out = tmp_path / "run"
    out.mkdir()
    (out / "data_hashes.json").write_text(json.dumps({"dataset": "d", "splits": {}}))
    (out / "run.json").write_text(json.dumps({"status": "finished"}))
    before = sorted(os.listdir(out))
    argv = ["run", "--config", str(ROOT / "examples/npo_tiny.yaml"), f"data.path={tiny_data}"]
    argv += [f"model.path={tmp_path / 'missing'}", f"output.dir={out}", "--overwrite"]
    was = ray.is_initialized()
    t0 = time.monotonic()
    assert main(argv) == 2
    assert time.monotonic() - t0 < 5
    assert "does not exist" in capsys.readouterr().err
    assert sorted(os.listdir(out)) == before
    assert ray.is_initialized() == was


def test_outputs_follow_the_umask(tmp_path):
    old = os.umask(0o002)
    try:
        write_small(tmp_path / "shared")
    finally:
        os.umask(0o022)
    write_small(tmp_path / "private")
    os.umask(old)
    assert (tmp_path / "shared").stat().st_mode & 0o777 == 0o775
    assert (tmp_path / "private").stat().st_mode & 0o777 == 0o755


KILL_AT = """
import os, sys
from unlearn import storage
point = sys.argv[1]
if point == "before-swap":
    storage._swap_local = lambda staging, target: os._exit(9)
elif point == "after-exchange":
    real = storage._exchange
    def exchange(a, b):
        real(a, b)
        os._exit(9)
    storage._exchange = exchange
elif point == "between-renames":
    storage._exchange = lambda a, b: False
    real_rename = os.rename
    calls = []
    def rename(a, b):
        calls.append(a)
        real_rename(a, b)
        if len(calls) == 1:
            os._exit(9)
    os.rename = rename
from cli import main
main(sys.argv[2:])
"""


@pytest.mark.parametrize("point", ["before-swap", "after-exchange", "between-renames"])
def test_a_writer_killed_mid_publish_loses_nothing(tmp_path, point):
    """Killed before the swap: the old dataset is intact. Killed after it: the new one is in
    place. Killed between the fallback's two renames: the next writer puts the old one back.
    Whatever the writer left beside the output is cleaned up by the next one."""
    out = tmp_path / "ds"
    assert main(["data", "synth", "--out", str(out), "--entities", "4", "--seed", "1"]) == 0
    old = Dataset(out).hash
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    argv = ["data", "synth", "--out", str(out), "--entities", "4", "--seed", "2", "--overwrite"]
    proc = subprocess.run(
        [sys.executable, "-c", KILL_AT, point, *argv], env=env, capture_output=True, timeout=300
    )
    assert proc.returncode == 9, proc.stderr.decode()[-2000:]
    assert hidden(tmp_path)  # it left something behind, as a killed process does
    if point == "before-swap":
        assert Dataset(out).hash == old
    elif point == "after-exchange":
        assert Dataset(out).hash != old
    else:
        assert not out.exists()  # between the renames: the old output sits in its backup
    from unlearn.data.dataset import KIND

    storage.recover(out, KIND)  # what every writer of this path does first
    assert hidden(tmp_path) == []
    assert Dataset(out).hash == (old if point != "after-exchange" else Dataset(out).hash)
    assert main(argv) == 0
    assert Dataset(out).hash != old and hidden(tmp_path) == []


def test_a_killed_synth_leaves_no_staging_forever(tmp_path):
    out = tmp_path / "ds"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    argv = ["data", "synth", "--out", str(out), "--entities", "4"]
    proc = subprocess.run(
        [sys.executable, "-c", KILL_AT, "before-swap", *argv],
        env=env,
        capture_output=True,
        timeout=300,
    )
    assert proc.returncode == 9
    assert not out.exists() and len(hidden(tmp_path)) == 1
    assert main(argv) == 0
    assert hidden(tmp_path) == [] and Dataset(out).splits


def test_a_live_writers_staging_is_left_alone(tmp_path):
    """Only writers that are gone are cleaned up after (this process is alive)."""
    live = tmp_path / storage._hidden_name("ds", "new")
    live.mkdir()
    write_small(tmp_path / "ds")
    assert live.exists()


def test_s3_overwrite_is_by_kind_and_publishes_before_removing(s3_bucket):
    import s3fs

    fs = s3fs.S3FileSystem(skip_instance_cache=True)
    mine = f"{s3_bucket}/mine"
    fs.pipe(f"{mine}/notes.txt".removeprefix("s3://"), b"do not delete")
    with pytest.raises(OutputExistsError, match="holds notes.txt, which is not a dataset"):
        write_small(mine, overwrite=True)
    assert fs.cat(f"{mine}/notes.txt") == b"do not delete"
    url = f"{s3_bucket}/ds"
    first = write_small(url)
    second = write_dataset(url, {"forget": rows("zed", 3)}, source="t", overwrite=True)
    assert Dataset(url).hash == second.hash != first.hash
    names = sorted(p.rsplit("/", 1)[-1] for p in fs.ls(url.removeprefix("s3://")))
    assert names == ["dataset.json", "forget.parquet"]  # retain.parquet of the old one is gone
    assert [p for p in fs.ls(s3_bucket.removeprefix("s3://")) if storage.MARK in p] == []


def test_s3_writer_killed_mid_upload_restores_the_old_output(s3_bucket, monkeypatch):
    """The upload of the replacement dies half-way: the old output stops looking complete (its
    dataset.json is gone, so nothing reads a mix), and the next writer restores it from the
    backup before deciding anything."""
    import s3fs

    from unlearn.data.dataset import KIND

    url = f"{s3_bucket}/ds"
    first = write_small(url)
    real = storage._publish_remote

    def dies_half_way(put, files, *args, **kwargs):
        def put_some(rel, dest):
            if rel == "retain.parquet":
                raise KeyboardInterrupt  # as if killed here
            put(rel, dest)

        return real(put_some, files, *args, **kwargs)

    monkeypatch.setattr(storage, "_publish_remote", dies_half_way)
    with pytest.raises(KeyboardInterrupt):
        write_dataset(
            url, {"forget": rows("zed"), "retain": rows("yan")}, source="t", overwrite=True
        )
    monkeypatch.undo()
    with pytest.raises(DataError, match="dataset.json is missing"):
        Dataset(url)  # incomplete, never a mix that looks complete
    # the backup's owner is this (live) process: pretend it is gone, as after a kill
    monkeypatch.setattr(storage, "_stale", lambda m: True)
    storage.recover(url, KIND)
    assert Dataset(url).hash == first.hash
    fs = s3fs.S3FileSystem(skip_instance_cache=True)
    assert [p for p in fs.ls(s3_bucket.removeprefix("s3://")) if storage.MARK in p] == []


# --------------------------------------------------------------------------------------------
# 2. Caches keyed by content


def swap_weights(model_dir: Path) -> None:
    from safetensors.torch import load_file, save_file

    weights = load_file(model_dir / "model.safetensors")
    save_file({k: v * 0.5 for k, v in weights.items()}, model_dir / "model.safetensors")


def test_model_hash_is_the_weights_and_a_lying_manifest_is_an_error(nano_model_dir, tmp_path):
    from unlearn.models import model_hash, model_identity, weights_hash

    m = tmp_path / "m"
    shutil.copytree(nano_model_dir, m)
    recorded = json.loads((m / "unlearn_model.json").read_text())["weights_sha256"]
    assert model_hash(m) == recorded == model_identity(m)
    swap_weights(m)
    actual = weights_hash(m)
    with pytest.raises(ModelError) as err:
        model_hash(m)
    assert actual[:16] in str(err.value) and recorded[:16] in str(err.value)
    with pytest.raises(ModelError):
        model_identity(m)
    (m / "unlearn_model.json").unlink()
    assert model_hash(m) == actual != recorded


def test_s3_model_hash_reads_the_objects(nano_model_dir, s3_bucket, tmp_path):
    import s3fs

    from unlearn.models import load_model, model_hash, save_model, weights_hash

    model, tok = load_model(nano_model_dir)
    url = f"{s3_bucket}/m"
    digest = save_model(model, tok, url)
    assert model_hash(url) == digest == weights_hash(nano_model_dir)
    swapped = tmp_path / "w"
    shutil.copytree(nano_model_dir, swapped)
    swap_weights(swapped)
    fs = s3fs.S3FileSystem(skip_instance_cache=True)
    fs.put_file(
        str(swapped / "model.safetensors"), f"{url}/model.safetensors".removeprefix("s3://")
    )
    with pytest.raises(ModelError, match="does not match the one unlearn_model.json records"):
        model_hash(url)
    with pytest.raises(ModelError, match="does not match"):
        load_model(url)  # the downloaded bytes are hashed too


def test_a_swapped_weights_file_changes_the_retain_reference_key(
    tiny_data, nano_model_dir, tmp_path
):
    """No Ray: the cache key follows the bytes, and a tampered cache entry is recomputed."""
    from unlearn.eval import EvalConfig, cached_reference, reference_key
    from unlearn.models import files_hash, model_hash

    m = tmp_path / "retain"
    shutil.copytree(nano_model_dir, m)
    cfg = EvalConfig(forget_split="forget10")
    ds = Dataset(tiny_data)
    key1 = reference_key(ds, cfg, model_hash(m), files_hash(m))
    calls = []

    def compute():
        calls.append(1)
        return {"forget_truth_ratios": {"a": 0.5}, "n": len(calls)}

    cache = str(tmp_path / "cache")
    assert cached_reference(key1, compute, cache_dir=cache)["n"] == 1
    assert cached_reference(key1, compute, cache_dir=cache)["n"] == 1  # reused
    stored = tmp_path / "cache" / f"{key1}.json"
    doc = json.loads(stored.read_text())
    doc["forget_truth_ratios"]["a"] = 0.9  # edited by hand: fails its checksum
    stored.write_text(json.dumps(doc))
    assert cached_reference(key1, compute, cache_dir=cache)["n"] == 2
    swap_weights(m)
    (m / "unlearn_model.json").unlink()
    key2 = reference_key(ds, cfg, model_hash(m), files_hash(m))
    assert key2 != key1
    (m / "tokenizer_config.json").write_text((m / "tokenizer_config.json").read_text() + " ")
    assert reference_key(ds, cfg, model_hash(m), files_hash(m)) != key2


def test_reference_logprob_cache_is_keyed_by_weights_and_tokens(tmp_path):
    import torch

    from unlearn.engine import reference
    from unlearn.engine.data import Example

    ex = [Example(0, "a", [1, 2, 3], [-100, 2, 3]), Example(1, "b", [1, 4], [-100, 4])]
    meta = reference.cache_meta("w1", "float32", {"forget": ex})
    path = str(tmp_path / reference.CACHE_FILE)
    cache = {"forget": torch.tensor([-1.0, -2.0])}
    reference.save_cache(path, cache, meta)
    assert torch.equal(reference.load_cache(path, meta)["forget"], cache["forget"])
    assert reference.load_cache(path, reference.cache_meta("w2", "float32", {"forget": ex})) is None
    retok = [Example(0, "a", [1, 2, 5], [-100, 2, 5]), ex[1]]
    assert (
        reference.load_cache(path, reference.cache_meta("w1", "float32", {"forget": retok})) is None
    )
    raw = bytearray(Path(path).read_bytes())
    raw[-1] ^= 0xFF  # one flipped bit in the tensor data
    Path(path).write_bytes(bytes(raw))
    assert reference.load_cache(path, meta) is None


@pytest.mark.slow
def test_unlearn_eval_does_not_reuse_a_reference_after_the_weights_change(
    ray_local, tiny_data, nano_model_dir, tmp_path, capsys
):
    """The issue's case: retain weights replaced, manifest kept. Before: the old reference was
    reused (forget quality 0.035 reported, 3.3e-09 true). Now the lie is an error naming both
    hashes, and once the model is saved properly its own reference is computed."""
    from unlearn.models import load_model, save_model

    retain = tmp_path / "retain"
    shutil.copytree(nano_model_dir, retain)
    cache = tmp_path / "cache"
    small = ["max_new_tokens=4", "max_examples_per_split=8", "batch_size=16", "generation=false"]

    def evaluate(out: str) -> int:
        argv = ["eval", "--model", str(nano_model_dir), "--data", str(tiny_data)]
        argv += ["--retain-model", str(retain), "--out", str(tmp_path / out)]
        return main([*argv, "--cache-dir", str(cache), *small])

    assert evaluate("a") == 0
    first = json.loads((tmp_path / "a" / "metrics.json").read_text())
    assert first["forget_quality"] == pytest.approx(1.0)  # the model against itself
    swap_weights(retain)
    capsys.readouterr()
    assert evaluate("b") == 2
    err = capsys.readouterr().err
    assert "does not match the one unlearn_model.json records" in err
    assert not (tmp_path / "b").exists()
    model, tok = load_model(retain)  # the swapped weights, saved properly this time
    shutil.rmtree(retain)
    save_model(model, tok, retain)
    assert evaluate("c") == 0
    third = json.loads((tmp_path / "c" / "metrics.json").read_text())
    assert len(list(cache.glob("*.json"))) == 2  # a second reference, for the new weights
    assert third["retain_reference"]["model_hash"] != first["retain_reference"]["model_hash"]
    assert third["forget_quality"] < 0.5  # a different model: no longer indistinguishable


# --------------------------------------------------------------------------------------------
# 3. Fixed keys


def test_finetune_refuses_another_method(tiny_data, nano_model_dir, tmp_path, capsys):
    argv = ["finetune", "--config", str(ROOT / "examples/finetune_tiny.yaml")]
    argv += [f"data.path={tiny_data}", f"model.path={nano_model_dir}", f"output.dir={tmp_path}/o"]
    assert main([*argv, "method.name=npo"]) == 2
    assert "method.name: this command sets it to 'finetune'; got 'npo'" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_demo_refuses_keys_it_sets_itself(tmp_path, capsys):
    for key in ("eval.forget_split=forget05", "eval.retain_split=x", "finetune.seed=1"):
        assert main(["demo", "--out", str(tmp_path / "d"), key]) == 2
        assert "the demo sets it itself" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()


# --------------------------------------------------------------------------------------------
# 4. Validation on the driver; failed runs are recorded and never resumed as if valid


def test_each_late_validation_fails_fast_without_ray(tiny_data, nano_model_dir, tmp_path, capsys):
    """The issue's list: a missing or corrupt model dir, forget/retain entity overlap, tampered
    splits, unknown eval split names; each used to start Ray and fail after 10-33 s."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    import jobs.common

    corrupt = tmp_path / "corrupt"
    shutil.copytree(nano_model_dir, corrupt)
    (corrupt / "model.safetensors").write_bytes(b"\0" * 100)
    tampered = tmp_path / "tampered"
    shutil.copytree(tiny_data, tampered)
    t = pq.read_table(tampered / "retain90.parquet")
    t = t.set_column(t.schema.get_field_index("answer"), "answer", pa.array(["x"] * t.num_rows))
    pq.write_table(t, tampered / "retain90.parquet")
    base = ["run", "--config", str(ROOT / "examples/npo_tiny.yaml")]
    good = [f"data.path={tiny_data}", f"model.path={nano_model_dir}"]
    cases = {
        "missing model": [good[0], f"model.path={tmp_path / 'nope'}"],
        "corrupt model": [good[0], f"model.path={corrupt}"],
        "entity overlap": [*good, "data.retain_split=full"],
        "tampered split": [f"data.path={tampered}", good[1]],
        "unknown eval split": [
            *good,
            f"model.retain_model={nano_model_dir}",
            "eval.holdout_split=x",
        ],
    }
    started = []
    real_init = jobs.common.init_ray
    jobs.common.init_ray = lambda *a, **k: started.append(1)
    try:
        main([*base, *good, "method.name=sgd"])  # imports warm, as in one long-lived process
        capsys.readouterr()
        for name, args in cases.items():
            out = tmp_path / name.replace(" ", "_")
            t0 = time.monotonic()
            assert main([*base, *args, f"output.dir={out}"]) == 2, name
            elapsed = time.monotonic() - t0
            err = capsys.readouterr().err
            assert err.startswith("error: ") and err.count("\n") == 1, err
            assert elapsed < 5, (name, elapsed)
            assert not out.exists(), name
    finally:
        jobs.common.init_ray = real_init
    assert started == []  # (a session's Ray started by other tests is not this test's)


def test_a_failed_run_resumes_only_with_the_same_inputs(tiny_data, nano_model_dir, tmp_path):
    from unlearn.config import load_config
    from unlearn.engine import run_dir
    from unlearn.engine.config import RunConfig
    from unlearn.engine.inputs import check_run

    def cfg(*extra):
        base = [
            f"data.path={tiny_data}",
            f"model.path={nano_model_dir}",
            f"output.dir={tmp_path / 'o'}",
        ]
        return load_config(RunConfig, None, [*base, "method.name=npo", *extra])

    c = cfg()
    inputs = check_run(c)
    assert set(inputs) == {"dataset", "splits", "model"}
    assert run_dir.plan(c, inputs).mode == "new"
    run_dir.record_failure(c, "worker 0: out of memory")
    assert json.loads((tmp_path / "o" / "run.json").read_text())["status"] == "failed"
    resumed = run_dir.plan(c, inputs)
    assert resumed.mode == "resume" and resumed.previous["reason"] == "worker 0: out of memory"
    with pytest.raises(OutputExistsError, match=r"holds a failed run .*differs in: method\.beta"):
        run_dir.plan(cfg("method.beta=0.5"), inputs)
    with pytest.raises(OutputExistsError, match=r"differs in: inputs\.model"):
        run_dir.plan(c, {**inputs, "model": "another"})
    replaced = run_dir.plan(cfg("method.beta=0.5", "output.overwrite=true"), inputs)
    assert replaced.staged and Path(replaced.cfg.output.dir).parent == tmp_path
    run_dir.discard(replaced)
    assert hidden(tmp_path) == []


# --------------------------------------------------------------------------------------------
# 5. One error boundary


def test_expected_failures_become_one_line():
    import botocore.exceptions
    import pyarrow as pa

    cases = [
        (PermissionError(13, "Permission denied", "/data/x"), "permission denied: /data/x"),
        (FileNotFoundError(2, "No such file", "/data/y"), "/data/y does not exist"),
        (OSError(28, "No space left on device", "/out"), "no space left on the device"),
        (botocore.exceptions.NoCredentialsError(), "set AWS_ACCESS_KEY_ID"),
        (
            botocore.exceptions.EndpointConnectionError(endpoint_url="http://127.0.0.1:9"),
            "http://127.0.0.1:9",
        ),
        (pa.ArrowInvalid("Parquet magic bytes not found"), "corrupt or not parquet"),
        (DataError("split 'x'\nhas a problem"), "split 'x' has a problem"),
    ]
    for exc, expected in cases:
        msg = describe(exc)
        assert msg is not None and expected in msg and "\n" not in msg, (exc, msg)
    try:
        b"\xff".decode("utf-8")
    except UnicodeDecodeError as exc:
        assert "not utf-8 text" in describe(exc)
    assert describe(KeyError("bug")) is None  # bugs keep their traceback
    wrapped = RuntimeError("worker failed")
    wrapped.__cause__ = FileNotFoundError(2, "No such file", "/z")
    assert describe(wrapped) == "/z does not exist"


def test_run_command_exit_codes_and_debug(capsys):
    def fails(argv):
        raise PermissionError(13, "Permission denied", "/root/out")

    assert run_command(fails, []) == 2
    assert capsys.readouterr().err == (
        "error: permission denied: /root/out: check its permissions or choose another location\n"
    )
    with pytest.raises(PermissionError):
        run_command(fails, ["--debug"])

    def bug(argv):
        raise KeyError("oops")

    with pytest.raises(KeyError):
        run_command(bug, [])


def test_s3_without_credentials_is_one_line_naming_the_url(tmp_path, monkeypatch, capsys):
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    options = json.dumps({"endpoint_url": "http://127.0.0.1:9", "skip_instance_cache": True})
    assert main(["data", "inspect", "s3://bucket/ds", "--storage-options", options]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "s3://bucket/ds" in err and "AWS_ACCESS_KEY_ID" in err, err


def test_a_job_module_fails_the_same_way(tmp_path):
    """``python -m jobs.unlearn`` in a fresh process: one line, exit 2, no traceback."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "jobs.unlearn", "--config", str(tmp_path / "missing.yaml")]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("error: config file")
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("where", ["local", "s3"])
def test_a_staged_output_replaces_the_old_one_and_names_its_final_path(where, tmp_path, request):
    """``staging_path`` + ``publish_staged`` (how runs and the demo replace an old output): the
    text files that recorded the staging path name the final one; the old output's files are
    gone; nothing is left beside it."""
    from unlearn.engine import run_dir

    base = str(tmp_path) if where == "local" else request.getfixturevalue("s3_bucket")
    out = storage.join(base, "run")
    inputs = json.dumps({"dataset": "d", "splits": {}}).encode()
    storage.write_bytes(storage.join(out, "data_hashes.json"), inputs)
    storage.write_bytes(storage.join(out, "metrics.jsonl"), b"old\n")
    staged = storage.staging_path(out)
    assert storage.MARK in staged and storage.sibling(out, "x") == storage.join(base, "x")
    storage.write_bytes(storage.join(staged, "data_hashes.json"), inputs)
    record = {"status": "finished", "model_dir": storage.join(staged, "model")}
    storage.write_bytes(storage.join(staged, "run.json"), json.dumps(record).encode())
    storage.write_bytes(storage.join(staged, "model", "model.safetensors"), b"\0weights")
    storage.publish_staged(staged, out, run_dir.KIND, commit_last=("run.json",))
    done = json.loads(storage.read_bytes(storage.join(out, "run.json")))
    assert done["model_dir"] == storage.join(out, "model")
    assert not storage.exists(storage.join(out, "metrics.jsonl"))
    assert storage.read_bytes(storage.join(out, "model", "model.safetensors")) == b"\0weights"
    fs, inner = storage.filesystem(base)
    fs.invalidate_cache(inner)
    assert [p for p in fs.ls(inner, detail=False) if storage.MARK in p] == []


def test_demo_refuses_an_existing_demo_of_another_config(tmp_path, capsys):
    out = tmp_path / "demo"
    out.mkdir()
    (out / "demo.json").write_text(json.dumps({"tool": "unlearn demo", "config": {"seed": 9}}))
    before = sorted(os.listdir(out))
    assert main(["demo", "--out", str(out)]) == 2
    assert "holds a demo run with another config (differs in:" in capsys.readouterr().err
    assert sorted(os.listdir(out)) == before


def test_a_run_that_fails_in_a_worker_is_one_line_naming_the_cause(
    tiny_data, nano_model_dir, tmp_path, monkeypatch, capsys
):
    """What Ray Train raises when a worker fails becomes one line with the worker's own error."""
    from ray.train import WorkerGroupError

    import jobs.common

    def fails(cfg, **kwargs):
        raise WorkerGroupError("rank 1 died", {1: DataError("forget10.parquet is corrupt")})

    monkeypatch.setattr(jobs.common, "run_training", fails)
    argv = ["run", "--config", str(ROOT / "examples/npo_tiny.yaml"), f"data.path={tiny_data}"]
    argv += [f"model.path={nano_model_dir}", f"output.dir={tmp_path / 'o'}"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "the run failed: worker 1: forget10.parquet is corrupt" in err
    assert "run.json records it" in err


def test_sweep_overwrite_replaces_only_a_sweep(tmp_path):
    """``unlearn sweep --overwrite`` removed whatever was at ``out``; now only a sweep's own
    output (sweep.yaml marks it) is removed, and anything else there is refused, naming it."""
    from jobs.sweep import CONFIG_FILE, KIND

    sweep = tmp_path / "sweep"
    (sweep / "trials" / "t1").mkdir(parents=True)
    (sweep / CONFIG_FILE).write_text("out: x\n")
    (sweep / "pareto.json").write_text("{}")
    assert storage.check_output(sweep, KIND, overwrite=True) is True
    (sweep / "notes.txt").write_text("mine")
    with pytest.raises(OutputExistsError, match="holds notes.txt beside a sweep"):
        storage.check_output(sweep, KIND, overwrite=True)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    with pytest.raises(OutputExistsError, match="not a sweep written by unlearn"):
        storage.check_output(mine, KIND, overwrite=True)
    assert (mine / "notes.txt").read_text() == "mine"
