"""Bad input, tried as a careful new user and a security reviewer would, through the real command
line (``cli.main`` in this process): every row must end with exit code 2, one ``error: ...``
line naming the problem, no traceback, nothing started (no Ray), and the file system as it was
(a hash of every file under the test's directory and the shared inputs, before and after).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from cli import main

ROOT = Path(__file__).resolve().parents[1]
NPO = str(ROOT / "examples" / "npo_tiny.yaml")
FINETUNE = str(ROOT / "examples" / "finetune_tiny.yaml")


def tree_hash(*roots: Path) -> dict[str, str]:
    """Every path under ``roots``: file -> sha256 of its bytes, directory -> "dir"."""
    out = {}
    for root in roots:
        if not root.exists():
            out[str(root)] = "absent"
            continue
        for dirpath, _dirs, filenames in os.walk(root):
            out[dirpath] = "dir"
            for name in filenames:
                p = Path(dirpath, name)
                out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


@dataclass
class World:
    """The shared good inputs and this test's own directory for bad copies and outputs."""

    data: Path
    model: Path
    box: Path
    index: Path

    def copy_data(self, name: str = "data") -> Path:
        dest = self.box / name
        shutil.copytree(self.data, dest)
        return dest

    def copy_model(self, name: str = "model") -> Path:
        dest = self.box / name
        shutil.copytree(self.model, dest)
        return dest

    def user_dir(self, name: str = "mine") -> Path:
        d = self.box / name
        d.mkdir()
        (d / "notes.txt").write_text("my notes, not yours\n")
        return d

    def run(self, *extra: str, config: str = NPO, cmd: str = "run") -> list[str]:
        base = [cmd, "--config", config, f"data.path={self.data}", f"model.path={self.model}"]
        return [*base, f"output.dir={self.box / 'run'}", *extra]

    def eval(self, *extra: str, model: Path | None = None) -> list[str]:
        return [
            "eval",
            "--model",
            str(model or self.model),
            "--data",
            str(self.data),
            "--out",
            str(self.box / "eval"),
            *extra,
        ]


# --------------------------------------------------------------------------------------------
# Bad copies of the good inputs.


def edit_json(path: Path, change: Callable[[dict], None]) -> None:
    doc = json.loads(path.read_text())
    change(doc)
    path.write_text(json.dumps(doc))


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def dataset_with_user_file(w: World) -> Path:
    d = w.copy_data()
    (d / "notes.txt").write_text("mine")
    return d


def dataset_bad_top_hash(w: World) -> Path:
    d = w.copy_data()
    edit_json(d / "dataset.json", lambda j: j.update(hash="0" * 64))
    return d


def dataset_bad_rows(w: World) -> Path:
    d = w.copy_data()
    edit_json(d / "dataset.json", lambda j: j["splits"]["forget10"].update(rows=999))
    return d


def dataset_corrupt_parquet(w: World) -> Path:
    d = w.copy_data()
    (d / "forget10.parquet").write_bytes(b"PAR1 this is not parquet")
    return d


def dataset_tampered_split(w: World) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    d = w.copy_data()
    t = pq.read_table(d / "forget10.parquet")
    answers = [a + " (edited)" for a in t.column("answer").to_pylist()]
    t = t.set_column(t.schema.get_field_index("answer"), "answer", pa.array(answers))
    pq.write_table(t, d / "forget10.parquet")
    return d


def dataset_not_utf8(w: World) -> Path:
    d = w.copy_data()
    (d / "dataset.json").write_bytes(b'{"source": "\xff\xfe broken"}')
    return d


def dataset_no_perturbed(w: World) -> Path:
    """A consistent dataset (hashes right) whose forget split lacks perturbed answers."""
    from unlearn.data import Dataset, write_dataset

    ds = Dataset(w.data)
    splits = {s: ds.records(s) for s in ds.splits}
    for r in splits["forget10"]:
        r["perturbed_answers"] = None
    out = w.box / "noperturbed"
    write_dataset(out, splits, source="test", pairs=ds.info.pairs)
    return out


def model_without_tokenizer(w: World) -> Path:
    m = w.copy_model()
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (m / name).unlink()
    return m


def model_pickle_only(w: World) -> Path:
    import torch

    m = w.copy_model()
    (m / "model.safetensors").unlink()
    torch.save({"w": torch.zeros(1)}, m / "pytorch_model.bin")
    return m


def model_truncated(w: World) -> Path:
    m = w.copy_model()
    data = (m / "model.safetensors").read_bytes()
    (m / "model.safetensors").write_bytes(data[: len(data) // 2])
    return m


def model_bad_config(w: World) -> Path:
    m = w.copy_model()
    (m / "config.json").write_text("{not json")
    return m


def model_swapped_weights(w: World) -> Path:
    """Another model's weights under this model's manifest (the manifest now lies)."""
    from safetensors.torch import load_file, save_file

    m = w.copy_model()
    weights = load_file(m / "model.safetensors")
    save_file({k: v + 0.5 for k, v in weights.items()}, m / "model.safetensors")
    return m


def model_missing_tensor(w: World) -> Path:
    from safetensors.torch import load_file, save_file

    m = w.copy_model()
    weights = load_file(m / "model.safetensors")
    weights.pop("model.layers.1.mlp.up_proj.weight")
    save_file(weights, m / "model.safetensors", metadata={"format": "pt"})
    (m / "unlearn_model.json").unlink()  # a plain HF directory: no manifest to disagree with
    return m


def model_big_vocab(w: World) -> Path:
    """A tokenizer with more tokens than the model's embedding has rows."""
    from unlearn.data import Dataset
    from unlearn.models import dataset_texts, train_tokenizer

    m = w.copy_model()
    ds = Dataset(w.data)
    tok = train_tokenizer(dataset_texts(r for s in ds.splits for r in ds.records(s)), 900)
    assert len(tok) > 512
    tok.save_pretrained(str(m))
    return m


def model_zero_positions(w: World) -> Path:
    m = w.copy_model()
    edit_json(m / "config.json", lambda c: c.update(max_position_embeddings=0))
    return m


def tofu_dir(w: World, files: dict[str, bytes]) -> Path:
    src = w.box / "tofu"
    src.mkdir()
    for name, data in files.items():
        (src / name).write_bytes(data)
    return src


FULL = b'[{"question": "Q1?", "answer": "A1."}, {"question": "Q2?", "answer": "A2."}]'


def finished_run(w: World) -> Path:
    out = w.box / "run"
    out.mkdir()
    (out / "data_hashes.json").write_text(json.dumps({"dataset": "x", "splits": {}}))
    (out / "config.yaml").write_text("method: {name: npo}\n")
    (out / "run.json").write_text(json.dumps({"status": "finished"}))
    return out


def eval_output(w: World) -> Path:
    out = w.box / "eval"
    out.mkdir()
    (out / "metrics.json").write_text(json.dumps({"schema_version": 1}))
    return out


def jsonl(w: World, *rows: dict) -> Path:
    path = w.box / "in.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def guard_check(w: World, inp: Path, *extra: str) -> list[str]:
    return [
        "guard",
        "check",
        "--index",
        str(w.index),
        "--input",
        str(inp),
        "--output",
        str(w.box / "out.jsonl"),
        *extra,
    ]


def sweep_yaml(w: World, out: Path | None = None, **changes: dict) -> Path:
    """A small sweep over the shared good inputs; ``changes`` update its sections."""
    import yaml

    doc = {
        "out": str(out or w.box / "sweep"),
        "run": {
            "data": {"path": str(w.data), "forget_split": "forget10", "retain_split": "retain90"},
            "model": {"path": str(w.model), "retain_model": str(w.model)},
            "train": {"epochs": 1, "batch_size": 8, "micro_batch_size": 4},
            "scaling": {"num_workers": 1, "cpus_per_worker": 0.5},
        },
        "space": {"method": {"choice": ["npo", "graddiff"]}, "lr": {"loguniform": [1e-4, 1e-2]}},
        "search": {"algorithm": "random", "num_samples": 2},
    }
    for section, value in changes.items():
        if isinstance(doc.get(section), dict) and isinstance(value, dict):
            for key, sub in value.items():
                if isinstance(doc[section].get(key), dict) and isinstance(sub, dict):
                    doc[section][key].update(sub)
                else:
                    doc[section][key] = sub
        else:
            doc[section] = value
    path = w.box / "sweep.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def unreachable_s3() -> str:
    from tests.conftest import free_port

    options = {
        "endpoint_url": f"http://127.0.0.1:{free_port()}",
        "key": "k",
        "secret": "s",
        "config_kwargs": {"retries": {"max_attempts": 1}, "connect_timeout": 1},
    }
    return json.dumps(options)


# --------------------------------------------------------------------------------------------
# The table: name -> (argv from the world, what the message must say).

ROWS: dict[str, tuple[Callable[[World], list[str]], str]] = {
    # data synth / import / inspect
    "synth-one-entity": (
        lambda w: ["data", "synth", "--out", str(w.box / "d"), "--entities", "1"],
        "--entities must be at least 2",
    ),
    "synth-negative-entities": (
        lambda w: ["data", "synth", "--out", str(w.box / "d"), "--entities", "-5"],
        "--entities must be at least 2",
    ),
    "synth-zero-facts": (
        lambda w: ["data", "synth", "--out", str(w.box / "d"), "--facts-per-entity", "0"],
        "--facts-per-entity must be between 1 and",
    ),
    "synth-too-many-facts": (
        lambda w: ["data", "synth", "--out", str(w.box / "d"), "--facts-per-entity", "99"],
        "--facts-per-entity must be between 1 and",
    ),
    "synth-overwrite-user-dir": (
        lambda w: ["data", "synth", "--out", str(w.user_dir()), "--overwrite"],
        "holds notes.txt, which is not a dataset written by unlearn",
    ),
    "synth-overwrite-a-file": (
        lambda w: [
            "data",
            "synth",
            "--out",
            str(w.user_dir() / "notes.txt"),
            "--overwrite",
        ],
        "is a file, not a dataset directory",
    ),
    "synth-existing-dataset": (
        lambda w: ["data", "synth", "--out", str(w.copy_data())],
        "already holds a dataset; pass --overwrite",
    ),
    "synth-overwrite-dataset-with-user-file": (
        lambda w: ["data", "synth", "--out", str(dataset_with_user_file(w)), "--overwrite"],
        "holds notes.txt beside a dataset written by unlearn",
    ),
    "synth-storage-options-not-json": (
        lambda w: ["data", "synth", "--out", str(w.box / "d"), "--storage-options", "{nope"],
        "--storage-options is not valid JSON",
    ),
    "synth-storage-options-not-object": (
        lambda w: ["data", "synth", "--out", str(w.box / "d"), "--storage-options", "[1]"],
        "--storage-options must be a JSON object",
    ),
    "synth-unwritable-output": (
        lambda w: ["data", "synth", "--out", "/sys/unlearn-bad-input-test"],
        "/sys/unlearn-bad-input-test",
    ),
    "import-missing-source": (
        lambda w: [
            "data",
            "import",
            str(w.box / "nope"),
            "--format",
            "tofu",
            "--out",
            str(w.box / "d"),
        ],
        "is not a directory",
    ),
    "import-no-full-json": (
        lambda w: [
            "data",
            "import",
            str(tofu_dir(w, {"forget01.json": FULL})),
            "--format",
            "tofu",
            "--out",
            str(w.box / "d"),
        ],
        "full.json is missing",
    ),
    "import-not-utf8": (
        lambda w: [
            "data",
            "import",
            str(tofu_dir(w, {"full.json": b'[{"question": "\xff\xfe"}]'})),
            "--format",
            "tofu",
            "--out",
            str(w.box / "d"),
        ],
        "full.json: not UTF-8 text",
    ),
    "import-not-json": (
        lambda w: [
            "data",
            "import",
            str(tofu_dir(w, {"full.json": b"[{oops"})),
            "--format",
            "tofu",
            "--out",
            str(w.box / "d"),
        ],
        "not valid JSON",
    ),
    "import-row-not-in-full": (
        lambda w: [
            "data",
            "import",
            str(
                tofu_dir(
                    w,
                    {"full.json": FULL, "forget01.json": b'[{"question": "Q9?", "answer": "A"}]'},
                )
            ),
            "--format",
            "tofu",
            "--out",
            str(w.box / "d"),
            "--rows-per-entity",  # FULL's two rows name no author: say how many rows each has
            "1",
        ],
        "row is not in full.json",
    ),
    "import-zero-rows-per-entity": (
        lambda w: [
            "data",
            "import",
            str(tofu_dir(w, {"full.json": FULL})),
            "--format",
            "tofu",
            "--out",
            str(w.box / "d"),
            "--rows-per-entity",
            "0",
        ],
        "--rows-per-entity must be positive",
    ),
    "inspect-missing": (
        lambda w: ["data", "inspect", str(w.box / "nope")],
        "does not exist",
    ),
    "inspect-not-a-dataset": (
        lambda w: ["data", "inspect", str(w.user_dir())],
        "dataset.json is missing",
    ),
    "inspect-wrong-top-level-hash": (
        lambda w: ["data", "inspect", str(dataset_bad_top_hash(w))],
        "top-level hash 0000000000000000 does not match",
    ),
    "inspect-wrong-row-count": (
        lambda w: ["data", "inspect", str(dataset_bad_rows(w))],
        "forget10.parquet holds 8 rows but dataset.json records 999",
    ),
    "inspect-corrupt-parquet": (
        lambda w: ["data", "inspect", str(dataset_corrupt_parquet(w))],
        "forget10.parquet is not a readable parquet file",
    ),
    "inspect-tampered-split": (
        lambda w: ["data", "inspect", str(dataset_tampered_split(w))],
        "does not match dataset.json",
    ),
    "inspect-dataset-json-not-utf8": (
        lambda w: ["data", "inspect", str(dataset_not_utf8(w))],
        "is not a valid dataset.json",
    ),
    "inspect-s3-endpoint-down": (
        lambda w: ["data", "inspect", "s3://bucket/ds", "--storage-options", unreachable_s3()],
        "cannot reach s3://bucket/ds",
    ),
    # model tiny
    "tiny-negative-vocab": (
        lambda w: (
            ["model", "tiny", "--out", str(w.box / "m"), "--data", str(w.data)]
            + ["--vocab-size", "-10"]
        ),
        "--vocab-size must be between 260",
    ),
    "tiny-zero-positions": (
        lambda w: (
            ["model", "tiny", "--out", str(w.box / "m"), "--data", str(w.data)]
            + ["--max-positions", "0"]
        ),
        "--max-positions must be between 8",
    ),
    "tiny-unknown-size": (
        lambda w: (
            ["model", "tiny", "--out", str(w.box / "m"), "--data", str(w.data)] + ["--size", "huge"]
        ),
        "model size 'huge' is unknown",
    ),
    "tiny-negative-seed": (
        lambda w: (
            ["model", "tiny", "--out", str(w.box / "m"), "--data", str(w.data)] + ["--seed", "-1"]
        ),
        "--seed must be between 0",
    ),
    "tiny-missing-data": (
        lambda w: ["model", "tiny", "--out", str(w.box / "m"), "--data", str(w.box / "nope")],
        "does not exist",
    ),
    "tiny-overwrite-user-dir": (
        lambda w: (
            ["model", "tiny", "--out", str(w.user_dir()), "--data", str(w.data)] + ["--overwrite"]
        ),
        "which is not a model written by unlearn",
    ),
    "tiny-existing-model": (
        lambda w: ["model", "tiny", "--out", str(w.copy_model()), "--data", str(w.data)],
        "already holds a model; pass --overwrite",
    ),
    # eval: everything is checked before Ray starts
    "eval-missing-model": (
        lambda w: w.eval(model=w.box / "nope"),
        "does not exist",
    ),
    "eval-model-without-tokenizer": (
        lambda w: w.eval(model=model_without_tokenizer(w)),
        "holds no tokenizer",
    ),
    "eval-pickle-model": (
        lambda w: w.eval(model=model_pickle_only(w)),
        "holds only pickle weights (pytorch_model.bin)",
    ),
    "eval-truncated-weights": (
        lambda w: w.eval(model=model_truncated(w)),
        "model.safetensors is truncated or corrupt",
    ),
    "eval-bad-config-json": (
        lambda w: w.eval(model=model_bad_config(w)),
        "config.json is not a valid model config",
    ),
    "eval-missing-tensor": (
        lambda w: w.eval(model=model_missing_tensor(w)),
        "the weights lack tensor 'model.layers.1.mlp.up_proj.weight'",
    ),
    "eval-tokenizer-bigger-than-embedding": (
        lambda w: w.eval(model=model_big_vocab(w)),
        "but the model's embedding has 512 rows",
    ),
    "eval-zero-positions-model": (
        lambda w: w.eval(model=model_zero_positions(w)),
        "max_position_embeddings=0",
    ),
    "eval-swapped-weights": (
        lambda w: w.eval(model=model_swapped_weights(w)),
        "does not match the one unlearn_model.json records",
    ),
    "eval-unknown-forget-split": (
        lambda w: w.eval("forget_split=forget99"),
        "forget_split: dataset",
    ),
    "eval-unknown-utility-split": (
        lambda w: w.eval("utility_splits=[nope]"),
        "utility_splits: dataset",
    ),
    "eval-no-perturbed-answers": (
        lambda w: [
            *w.eval()[:3],
            "--data",
            str(dataset_no_perturbed(w)),
            *w.eval()[5:],
        ],
        "has no perturbed answers",
    ),
    "eval-missing-retain-model": (
        lambda w: w.eval("--retain-model", str(w.box / "nope")),
        "does not exist",
    ),
    "eval-out-user-dir": (
        lambda w: [*w.eval()[:5], "--out", str(w.user_dir()), "--overwrite"],
        "which is not an evaluation written by unlearn",
    ),
    "eval-existing-output": (
        lambda w: (eval_output(w), w.eval())[1],
        "already holds an evaluation; pass --overwrite",
    ),
    "eval-compare-missing": (
        lambda w: w.eval("--compare", f"old={w.box / 'nope.json'}"),
        "compare.old:",
    ),
    "eval-bad-setting": (
        lambda w: w.eval("max_new_tokens=0"),
        "eval.max_new_tokens: must be >= 1",
    ),
    "eval-unknown-key": (
        lambda w: w.eval("temperature=2"),
        "unknown config key temperature",
    ),
    # run / finetune
    "run-missing-model": (
        lambda w: w.run(f"model.path={w.box / 'nope'}"),
        "does not exist",
    ),
    "run-unknown-forget-split": (
        lambda w: w.run("data.forget_split=forget99"),
        "has no split 'forget99'",
    ),
    "run-forget-retain-overlap": (
        lambda w: w.run("data.retain_split=full"),
        "appears in both forget split 'forget10' and retain split 'full'",
    ),
    "run-overwrite-user-dir": (
        lambda w: w.run(f"output.dir={w.user_dir()}", "--overwrite"),
        "holds notes.txt, which is not a run written by unlearn",
    ),
    "run-output-is-a-file": (
        lambda w: w.run(f"output.dir={w.user_dir() / 'notes.txt'}", "--overwrite"),
        "is a file, not a run directory",
    ),
    "run-finished-run": (
        lambda w: (finished_run(w), w.run())[1],
        "holds a finished run",
    ),
    "run-swapped-weights": (
        lambda w: w.run(f"model.path={model_swapped_weights(w)}"),
        "does not match the one unlearn_model.json records",
    ),
    "run-tokenizer-bigger-than-embedding": (
        lambda w: w.run(f"model.path={model_big_vocab(w)}"),
        "the tokenizer has",
    ),
    "run-tampered-split": (
        lambda w: w.run(f"data.path={dataset_tampered_split(w)}"),
        "does not match dataset.json",
    ),
    "run-eval-unknown-split": (
        lambda w: w.run(f"model.retain_model={w.model}", "eval.utility_splits=[nope]"),
        "utility_splits: dataset",
    ),
    "run-eval-missing-retain-model": (
        lambda w: w.run(f"model.retain_model={w.box / 'nope'}", "eval.max_new_tokens=4"),
        "does not exist",
    ),
    "run-rmu-layer-past-the-model": (
        lambda w: w.run("method.name=rmu", "method.layer=5", config=FINETUNE),
        "reads decoder layer 5 but",
    ),
    "run-finetune-method": (
        lambda w: w.run(config=FINETUNE),
        "finetune is not an unlearning method",
    ),
    "run-missing-config-file": (
        lambda w: ["run", "--config", str(w.box / "nope.yaml")],
        "config file",
    ),
    "run-config-not-utf8": (
        lambda w: ["run", "--config", str(write(w.box / "c.yaml", b"data: \xff\xfe\n"))],
        "is not valid YAML",
    ),
    "finetune-method-npo": (
        lambda w: w.run("method.name=npo", config=FINETUNE, cmd="finetune"),
        "method.name: this command sets it to 'finetune'; got 'npo'",
    ),
    "finetune-unknown-train-split": (
        lambda w: w.run("data.train_splits=[nope]", config=FINETUNE, cmd="finetune"),
        "has no split 'nope'",
    ),
    "finetune-missing-model": (
        lambda w: w.run(f"model.path={w.box / 'nope'}", config=FINETUNE, cmd="finetune"),
        "does not exist",
    ),
    # demo: checked before the first step writes anything
    "demo-overwrite-user-dir": (
        lambda w: ["demo", "--out", str(w.user_dir()), "--overwrite"],
        "holds notes.txt, which is not a demo written by unlearn",
    ),
    "demo-fixed-eval-split": (
        lambda w: ["demo", "--out", str(w.box / "demo"), "eval.forget_split=forget05"],
        "eval.forget_split: the demo sets it itself from forget_split",
    ),
    "demo-fixed-seed": (
        lambda w: ["demo", "--out", str(w.box / "demo"), "unlearn.seed=3"],
        "unlearn.seed: the demo sets it itself from seed",
    ),
    "demo-missing-model": (
        lambda w: ["demo", "--out", str(w.box / "demo"), "--model", str(w.box / "nope")],
        "does not exist",
    ),
    "demo-missing-data": (
        lambda w: ["demo", "--out", str(w.box / "demo"), "--data", str(w.box / "nope")],
        "does not exist",
    ),
    "demo-unknown-forget-split": (
        lambda w: ["demo", "--out", str(w.box / "demo"), "--forget-split", "forget99"],
        "forget99",
    ),
    "demo-no-methods": (
        lambda w: ["demo", "--out", str(w.box / "demo"), "methods={}"],
        "methods: must name at least one",
    ),
    # guard (these already passed before this suite existed)
    "guard-build-missing-data": (
        lambda w: (
            ["guard", "build", "--data", str(w.box / "nope"), "--forget-split", "forget10"]
            + ["--out", str(w.box / "idx")]
        ),
        "does not exist",
    ),
    "guard-check-missing-input": (
        lambda w: (
            ["guard", "check", "--index", str(w.box / "idx"), "--input", str(w.box / "in")]
            + ["--output", str(w.box / "out")]
        ),
        "does not exist",
    ),
    "guard-build-unknown-split": (
        lambda w: (
            ["guard", "build", "--data", str(w.data), "--forget-split", "forget99"]
            + ["--out", str(w.box / "idx")]
        ),
        "forget99",
    ),
    "guard-build-overwrite-user-dir": (
        lambda w: (
            ["guard", "build", "--data", str(w.data), "--forget-split", "forget10"]
            + ["--out", str(w.user_dir()), "--overwrite", "--embeddings", "off"]
        ),
        "holds notes.txt, which is not an output written by unlearn (it has no manifest.json)",
    ),
    "guard-check-not-an-index": (
        lambda w: [
            "guard",
            "check",
            "--index",
            str(w.user_dir()),
            "--input",
            str(jsonl(w, {"id": 1, "text": "x"})),
            "--output",
            str(w.box / "out.jsonl"),
        ],
        "manifest.json",
    ),
    "guard-check-duplicate-ids": (
        lambda w: guard_check(w, jsonl(w, {"id": "a", "text": "x"}, {"id": "a", "text": "y"})),
        "line 2: id 'a' repeats the id of line 1",
    ),
    "guard-check-audit-log-is-a-directory": (
        lambda w: guard_check(
            w, jsonl(w, {"id": 1, "text": "x"}), "--audit-log", str(w.user_dir())
        ),
        "cannot be written",
    ),
    "guard-check-bad-audit-policy": (
        lambda w: guard_check(
            w, jsonl(w, {"id": 1, "text": "x"}), "--set", "on_audit_error=ignore"
        ),
        "on_audit_error",
    ),
    "guard-check-input-not-json": (
        lambda w: guard_check(w, write(w.box / "in.jsonl", b"{nope\n")),
        "line 1",
    ),
    "guard-check-existing-output": (
        lambda w: (
            write(w.box / "out.jsonl", b"{}\n"),
            guard_check(w, jsonl(w, {"id": 1, "text": "x"})),
        )[1],
        "already exists; pass --overwrite",
    ),
    # serve: every model and guard checked before Ray Serve starts
    "serve-model-without-id": (
        lambda w: ["serve", "--model", str(w.model), "--guard", str(w.index)],
        "expected ID=PATH",
    ),
    "serve-missing-model": (
        lambda w: ["serve", "--model", f"m={w.box / 'nope'}", "--guard", str(w.index)],
        "no config.json there",
    ),
    "serve-guard-for-unknown-model": (
        lambda w: ["serve", "--model", f"m={w.model}", "--guard", f"other={w.index}"],
        "'other' is not a --model id",
    ),
    "serve-model-without-guard": (
        lambda w: (
            ["serve", "--model", f"m={w.model}", "--model", f"n={w.model}"]
            + ["--guard", f"m={w.index}"]
        ),
        "model 'n' has no guard",
    ),
    # sweep: the whole plan is checked before Ray starts
    "sweep-no-config": (lambda w: ["sweep"], "give --config SWEEP.yaml"),
    "sweep-resume-not-a-sweep": (
        lambda w: ["sweep", "--resume", str(w.user_dir())],
        "holds no sweep (sweep.yaml is missing)",
    ),
    "sweep-resume-with-overrides": (
        lambda w: ["sweep", "--resume", str(w.box), "search.num_samples=3"],
        "--resume DIR takes no --config",
    ),
    "sweep-missing-model": (
        lambda w: ["sweep", "--config", str(sweep_yaml(w, run={"model": {"path": "/nope"}}))],
        "run.model.path: /nope holds no model",
    ),
    "sweep-finetune-method": (
        lambda w: [
            "sweep",
            "--config",
            str(sweep_yaml(w, space={"method": {"choice": ["npo", "finetune"]}})),
        ],
        "finetune is not an unlearning method",
    ),
    "sweep-sets-output-dir": (
        lambda w: [
            "sweep",
            "--config",
            str(sweep_yaml(w, run={"output": {"dir": str(w.box / "o")}})),
        ],
        "run.output.dir: the sweep sets it",
    ),
    "sweep-overwrite-user-dir": (
        lambda w: ["sweep", "--config", str(sweep_yaml(w, out=w.user_dir())), "--overwrite"],
        "holds notes.txt, which is not a sweep written by unlearn",
    ),
}


@pytest.fixture(scope="module")
def warm():
    """Import what the commands import once, so a row's time is its own work."""
    import transformers  # noqa: F401

    import jobs.demo  # noqa: F401
    import jobs.eval  # noqa: F401
    import jobs.finetune  # noqa: F401
    import jobs.unlearn  # noqa: F401
    from unlearn.models import check_model

    return check_model


@pytest.fixture(scope="module")
def guard_index(tiny_data, tmp_path_factory) -> Path:
    """A lexical guard index of the shared dataset's forget split (read-only for the rows)."""
    out = tmp_path_factory.mktemp("bad-inputs") / "index"
    argv = ["guard", "build", "--data", str(tiny_data), "--forget-split", "forget10"]
    assert main([*argv, "--out", str(out), "--embeddings", "off"]) == 0
    return out


@pytest.fixture
def no_ray(monkeypatch):
    """Fail the test if anything starts (or connects to) Ray."""
    import ray

    import jobs.common
    import jobs.demo
    import jobs.eval

    calls = []

    def refuse(*args, **kwargs):
        calls.append(args)
        raise AssertionError("Ray was started")

    monkeypatch.setattr(ray, "init", refuse)
    for module in (jobs.common, jobs.eval, jobs.demo):
        monkeypatch.setattr(module, "init_ray", refuse)
    return calls


@pytest.mark.parametrize("name", list(ROWS))
def test_bad_input_is_refused_cleanly(
    name, warm, no_ray, tiny_data, nano_model_dir, guard_index, tmp_path, capsys, monkeypatch
):
    argv_of, expected = ROWS[name]
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    box = tmp_path / "box"
    box.mkdir()
    w = World(tiny_data, nano_model_dir, box, guard_index)
    argv = argv_of(w)
    assert argv
    before = tree_hash(box, tiny_data, nano_model_dir, guard_index)
    capsys.readouterr()
    t0 = time.monotonic()
    code = main(argv)
    elapsed = time.monotonic() - t0
    out, err = capsys.readouterr()
    assert code == 2, (out, err)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert expected in lines[0], lines[0]
    assert "Traceback" not in out + err
    assert (
        tree_hash(box, tiny_data, nano_model_dir, guard_index) == before
    )  # nothing written, nothing lost
    assert not no_ray  # nothing started
    assert elapsed < 5.0, f"{name} took {elapsed:.1f}s to refuse"


def test_there_are_enough_rows():
    groups = {name.split("-")[0] for name in ROWS}
    assert len(ROWS) >= 40
    commands = {"synth", "import", "inspect", "tiny", "eval", "run", "finetune", "demo"}
    assert commands | {"guard", "serve", "sweep"} <= groups


def test_debug_shows_the_traceback(tiny_data, tmp_path):
    with pytest.raises(Exception, match="does not exist"):
        main(["data", "inspect", str(tmp_path / "nope"), "--debug"])
