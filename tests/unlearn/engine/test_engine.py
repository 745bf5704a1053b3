"""Engine: schedule, reference cache equivalence, single-process training, bad input."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pyarrow.parquet as pq
import pytest
import torch

from unlearn.config import load_config
from unlearn.data import Dataset, write_dataset
from unlearn.engine import reference, run_dir
from unlearn.engine.backend import lr_lambda
from unlearn.engine.config import RunConfig
from unlearn.engine.context import Context
from unlearn.engine.data import Schedule, collate, shard, tokenize
from unlearn.engine.loop import build_streams, data_hashes, train
from unlearn.engine.session import LocalSession
from unlearn.errors import DataError, OutputExistsError
from unlearn.methods import METHODS, Method, MethodConfig, Stream, build_method, register_method
from unlearn.methods.common import LossOutput, nll_loss
from unlearn.methods.ga import GradientAscent
from unlearn.methods.idkdpo import idk_answers
from unlearn.methods.npo import NPO
from unlearn.models import load_model


def run_cfg(data, model, out, *overrides):
    base = [f"data.path={data}", f"model.path={model}", f"output.dir={out}", "data.max_length=64"]
    return load_config(RunConfig, None, base + list(overrides))


def test_schedule_gives_every_rank_the_same_steps_and_covers_the_data():
    single = Schedule(
        primary_size=10, retain_size=7, batch_size=4, micro_batch_size=2, world_size=1, seed=0
    )
    two = Schedule(
        primary_size=10, retain_size=7, batch_size=4, micro_batch_size=2, world_size=2, seed=0
    )
    assert single.steps_per_epoch == two.steps_per_epoch == 3
    assert single.grad_accum == 2 and two.grad_accum == 1
    s_steps = list(single.epoch(0, 0))
    r_steps = [list(two.epoch(0, r)) for r in range(2)]
    assert len(r_steps[0]) == len(r_steps[1]) == 3
    for step in range(3):
        union = sorted(i for r in range(2) for mb in r_steps[r][step] for i in mb["primary"])
        assert union == sorted(i for mb in s_steps[step] for i in mb["primary"])
    seen = {i for step in s_steps for mb in step for i in mb["primary"]}
    assert seen == set(range(10))  # wrap-around pads the last step, nothing is dropped
    assert list(single.epoch(1, 0)) != s_steps  # reshuffled per epoch


def test_shard_pads_to_equal_batch_counts():
    parts = [shard(5, r, 3, 2) for r in range(3)]
    assert [len(p) for p in parts] == [1, 1, 1]
    real = sorted(i for p in parts for idx, ok in p for i, o in zip(idx, ok) if o)
    assert real == [0, 1, 2, 3, 4]
    assert parts[2][0][1] == [True, False]


def test_lr_schedule_warmup_then_linear_decay():
    f = lr_lambda(total_steps=10, warmup_steps=2, schedule="linear")
    assert [round(f(s), 3) for s in (0, 1, 2, 6, 10)] == [0.333, 0.667, 1.0, 0.5, 0.0]
    assert lr_lambda(10, 0, "cosine")(5) == pytest.approx(0.5)
    assert lr_lambda(10, 0, "constant")(9) == 1.0


@pytest.mark.parametrize("method", ["npo", "idkdpo"])
def test_cached_and_online_reference_give_the_same_loss(
    tiny_data, nano_model_dir, tmp_path, method
):
    cfg = run_cfg(tiny_data, nano_model_dir, tmp_path / "o", f"method.name={method}")
    model, tok = load_model(nano_model_dir)
    ref_model, _ = load_model(nano_model_dir, with_tokenizer=False)
    # perturb the trained copy so policy and reference differ
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01 * torch.randn_like(p))
    online = build_method(
        load_config(
            RunConfig,
            None,
            [
                f"data.path={tiny_data}",
                "model.path=m",
                "output.dir=o",
                f"method.name={method}",
                "method.reference=online",
            ],
        ).method
    )
    cached = build_method(cfg.method)
    assert online.needs_reference_model and not cached.needs_reference_model
    streams = build_streams(cfg, cached.streams, Dataset(tiny_data), tok)
    cache = {
        s: reference.stream_logprobs(
            ref_model,
            streams[s],
            batch_size=3,
            rank=0,
            world_size=1,
            pad_id=tok.pad_token_id,
            device=torch.device("cpu"),
        )["sum"]
        for s in cached.cached_reference
    }
    idx = [5, 0, 7]
    rows = {
        st.name: [streams[st.name][i] for i in (idx if st.primary else [1, 2, 3])]
        for st in cached.streams
    }
    pad = tok.pad_token_id
    loss_cached = cached.compute(Context.from_streams(model, rows, pad, reference_cache=cache)).loss
    loss_online = online.compute(
        Context.from_streams(model, rows, pad, reference_model=ref_model)
    ).loss
    assert loss_cached.item() == pytest.approx(loss_online.item(), rel=1e-5)
    assert cache["forget"].shape == (len(streams["forget"]),)


def test_npo_loss_matches_formula_on_a_real_batch(tiny_data, nano_model_dir, tmp_path):
    cfg = run_cfg(
        tiny_data,
        nano_model_dir,
        tmp_path / "o",
        "method.name=npo",
        "method.beta=0.5",
        "method.alpha=0.3",
        "method.gamma=2",
    )
    model, tok = load_model(nano_model_dir)
    method = build_method(cfg.method)
    streams = build_streams(cfg, method.streams, Dataset(tiny_data), tok)
    rows = {st.name: streams[st.name][:2] for st in method.streams}
    batch = {name: collate(r, tok.pad_token_id) for name, r in rows.items()}
    ref = {"forget": torch.tensor([-30.0] * len(streams["forget"]))}
    got = method.compute(
        Context.from_streams(model, rows, tok.pad_token_id, reference_cache=ref)
    ).loss
    with torch.no_grad():

        def seq(b):
            logits = model(
                input_ids=b["input_ids"], attention_mask=b["attention_mask"]
            ).logits.log_softmax(-1)
            total = []
            for row in range(b["input_ids"].shape[0]):
                lp = [
                    logits[row, t - 1, b["labels"][row, t]].item()
                    for t in range(1, b["labels"].shape[1])
                    if b["labels"][row, t] != -100
                ]
                total.append((sum(lp), len(lp)))
            return total

        f = seq(batch["forget"])
        r = seq(batch["retain"])
    forget = (
        sum(
            -(2 / 0.5) * torch.nn.functional.logsigmoid(torch.tensor(-0.5 * (s + 30.0))).item()
            for s, _ in f
        )
        / 2
    )
    retain = sum(-s / n for s, n in r) / 2
    assert got.item() == pytest.approx(2 * forget + 0.3 * retain, rel=1e-4)


def test_local_finetune_learns_and_writes_the_run_dir(tiny_data, nano_model_dir, tmp_path):
    out = tmp_path / "ft"
    cfg = run_cfg(
        tiny_data,
        nano_model_dir,
        out,
        "method.name=finetune",
        "backend.kind=torch",
        "train.epochs=4",
        "train.lr=3e-3",
        "train.batch_size=8",
        "data.train_splits=[forget10]",
    )
    run_dir.prepare(cfg, data_hashes(cfg, Dataset(tiny_data)))
    summary = train(cfg, LocalSession(tmp_path / "ckpt"))
    assert summary["loss_after"]["train_nll"] < summary["loss_before"]["train_nll"] - 0.5
    assert summary["steps"] == 4  # 8 examples / batch 8 x 4 epochs
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "step" in r]
    assert [r["step"] for r in steps] == [1, 2, 3, 4]
    assert {"train_loss", "lr", "tokens_per_s", "grad_norm", "epoch"} <= set(steps[0])
    assert json.loads((out / "run.json").read_text())["status"] == "finished"
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(out / "model")
    # a finished run is refused unless overwritten
    with pytest.raises(OutputExistsError, match="holds a finished run"):
        run_dir.prepare(cfg, data_hashes(cfg, Dataset(tiny_data)))


@pytest.fixture
def process_group():
    """A one-rank gloo group for DeepSpeed, torn down after the test (other tests start their own)."""
    import torch.distributed as dist

    from unlearn.engine.distributed import init_single_process

    init_single_process()
    yield
    dist.destroy_process_group()


def test_single_process_deepspeed_matches_torch(tiny_data, nano_model_dir, tmp_path, process_group):
    results = {}
    for kind in ("torch", "deepspeed"):
        cfg = run_cfg(
            tiny_data,
            nano_model_dir,
            tmp_path / kind,
            "method.name=npo",
            f"backend.kind={kind}",
            "backend.zero_stage=2",
            "train.epochs=2",
            "train.lr=1e-3",
            "train.batch_size=4",
            "train.micro_batch_size=2",
        )
        run_dir.prepare(cfg, data_hashes(cfg, Dataset(tiny_data)))
        results[kind] = train(cfg, LocalSession(tmp_path / f"ckpt-{kind}"))["loss_after"]
    for key in ("forget_nll", "retain_nll"):
        assert results["deepspeed"][key] == pytest.approx(results["torch"][key], rel=1e-4)


def test_rmu_trains_only_the_chosen_layers(tiny_data, nano_model_dir, tmp_path):
    cfg = run_cfg(
        tiny_data,
        nano_model_dir,
        tmp_path / "o",
        "method.name=rmu",
        "method.layer=1",
        "method.trainable_layers=[1]",
    )
    model, _ = load_model(nano_model_dir)
    method = build_method(cfg.method)
    method.prepare_model(model)
    trainable = sorted(n for n, p in model.named_parameters() if p.requires_grad)
    assert trainable and all(n.startswith("model.layers.1.mlp.") for n in trainable)
    bad = run_cfg(tiny_data, nano_model_dir, tmp_path / "o", "method.name=rmu", "method.layer=5")
    from unlearn.errors import ConfigError

    with pytest.raises(ConfigError, match="the model has 2 layers"):
        build_method(bad.method).prepare_model(model)


def test_ssd_dampens_forget_specific_weights(tiny_data, nano_model_dir, tmp_path):
    out = tmp_path / "ssd"
    cfg = run_cfg(tiny_data, nano_model_dir, out, "method.name=ssd", "method.ssd_alpha=1.5")
    run_dir.prepare(cfg, data_hashes(cfg, Dataset(tiny_data)))
    summary = train(cfg, LocalSession(tmp_path / "ckpt"))
    stats = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()][1]
    assert 0 < stats["dampened_fraction"] < 0.5
    before, _ = load_model(nano_model_dir)
    after, _ = load_model(out / "model")
    changed = sum(int((a != b).sum()) for a, b in zip(before.parameters(), after.parameters()))
    assert 0 < changed <= int(stats["dampened_params"])  # a selected weight of exactly 0 stays 0
    assert summary["status"] == "finished"


def test_empty_forget_split_is_refused(tiny_data, nano_model_dir, tmp_path):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    table = pq.read_table(data / "forget10.parquet").slice(0, 0)
    pq.write_table(table, data / "forget10.parquet")
    cfg = run_cfg(data, nano_model_dir, tmp_path / "o")
    with pytest.raises(DataError, match=r"forget10\.parquet: split is empty"):
        build_streams(cfg, NPO.streams, Dataset(data), load_model(nano_model_dir)[1])


def test_missing_retain_split_is_refused(nano_model_dir, tmp_path):
    rows = [{"id": f"a{i}", "entity": "a", "question": "q?", "answer": "x"} for i in range(3)]
    write_dataset(tmp_path / "d", {"forget": rows}, source="test")
    _, tok = load_model(nano_model_dir)
    cfg = run_cfg(tmp_path / "d", nano_model_dir, tmp_path / "o", "data.forget_split=forget")
    with pytest.raises(DataError, match=r"needs a retain split: set data\.retain_split"):
        build_streams(cfg, NPO.streams, Dataset(tmp_path / "d"), tok)
    cfg = run_cfg(
        tmp_path / "d", nano_model_dir, tmp_path / "o", "data.forget_split=forget", "method.name=ga"
    )
    assert (
        len(build_streams(cfg, GradientAscent.streams, Dataset(tmp_path / "d"), tok)["forget"]) == 3
    )


def test_unfinished_run_with_other_config_is_refused(tiny_data, nano_model_dir, tmp_path):
    cfg = run_cfg(tiny_data, nano_model_dir, tmp_path / "o")
    hashes = data_hashes(cfg, Dataset(tiny_data))
    assert run_dir.prepare(cfg, hashes) == "new"
    assert run_dir.prepare(cfg, hashes) == "resume"
    other = run_cfg(tiny_data, nano_model_dir, tmp_path / "o", "method.beta=0.3")
    with pytest.raises(OutputExistsError, match="another config"):
        run_dir.prepare(other, hashes)


def test_tokenize_uses_the_shared_prompt_format(nano_model_dir):
    from unlearn.models import encode_qa

    _, tok = load_model(nano_model_dir)
    ex = tokenize(tok, [{"id": "x", "question": "Q?", "answer": "A."}], 64)[0]
    assert ex.input_ids == encode_qa(tok, "Q?", "A.", 64)["input_ids"]
    batch = collate([ex, ex], tok.pad_token_id)
    assert batch["input_ids"].shape == (2, len(ex.input_ids))


def test_in_training_evaluation_keeps_the_best_checkpoint(tiny_data, nano_model_dir, tmp_path):
    out = tmp_path / "npo"
    cfg = run_cfg(
        tiny_data, nano_model_dir, out, "method.name=npo", "backend.kind=torch", "train.epochs=3",
        "train.lr=2e-3", "train.batch_size=4", "train.micro_batch_size=2",
        f"model.retain_model={nano_model_dir}", "eval.every_n_epochs=1", "eval.max_new_tokens=4",
        "eval.batch_size=16", "eval.max_length=64",
    )  # fmt: skip
    run_dir.prepare(cfg, data_hashes(cfg, Dataset(tiny_data)))
    session = LocalSession(tmp_path / "ckpt")
    summary = train(cfg, session)
    evals = [
        json.loads(line)
        for line in (out / "metrics.jsonl").read_text().splitlines()
        if "eval_epoch" in line
    ]
    assert [e["eval_epoch"] for e in evals] == [0, 1, 2]
    assert all(0 <= e["forget_quality"] <= 1 and e["model_utility"] is not None for e in evals)
    best = summary["best"]
    assert best["score"] == max(e["score"] for e in evals)
    assert best["epoch"] == next(e["eval_epoch"] for e in evals if e["score"] == best["score"])
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(out / "best_model")
    # the numbers reach the session's report with each epoch's checkpoint
    assert [r["epoch"] for r in session.reports] == [0, 1, 2]
    assert all("forget_quality" in r and "train_loss" not in r for r in session.reports)
    assert list((out / "eval_cache").glob("*.json"))  # the retain reference is cached with the run


@dataclass
class ToyConfig(MethodConfig):
    """A method that exists only in this test file."""

    name: str = "toy"
    margin: float = 3.0


class Toy(Method):
    """Hinge the forget NLL up to ``margin``, keep retain NLL down; reads a hidden layer, trains
    against a transformed stream, and freezes the embeddings: every declared hook the engine has."""

    streams = (
        Stream("forget", "forget"),
        Stream("echo", "forget", transform=lambda r: {**r, "answer": "Unknown."}),
        Stream("retain", "retain"),
    )
    hidden_layers = (0,)

    def __init__(self, config: ToyConfig):
        self.config = config
        self.seen: set[str] = set()

    def prepare_model(self, model):
        model.get_input_embeddings().weight.requires_grad_(False)

    def compute(self, ctx):
        forget = nll_loss(ctx.logprobs("forget"))
        echo = nll_loss(ctx.logprobs("echo"))
        hidden = ctx.hidden("retain", 0)
        retain = nll_loss(ctx.logprobs("retain"))
        loss = torch.relu(self.config.margin - forget) + retain + 0.1 * echo
        return LossOutput(loss, {"forget_loss": float(forget), "hidden_norm": float(hidden.norm())})


@pytest.fixture
def toy_method():
    register_method("toy", ToyConfig, Toy)
    yield
    METHODS.pop("toy")


def test_a_method_from_a_test_file_trains_through_the_engine(
    toy_method, tiny_data, nano_model_dir, tmp_path
):
    out = tmp_path / "toy"
    cfg = run_cfg(
        tiny_data, nano_model_dir, out, "method.name=toy", "method.margin=9", "backend.kind=torch",
        "train.epochs=4", "train.lr=1e-2", "train.batch_size=4", "train.micro_batch_size=2",
    )  # fmt: skip
    assert isinstance(cfg.method, ToyConfig) and cfg.method.margin == 9
    hashes = data_hashes(cfg, Dataset(tiny_data))
    assert set(hashes["splits"]) == {"forget10", "retain90"}  # from the declared streams
    run_dir.prepare(cfg, hashes)
    summary = train(cfg, LocalSession(tmp_path / "ckpt"))
    before, after = summary["loss_before"], summary["loss_after"]
    assert set(before) == {"forget_nll", "retain_nll"}  # the transformed stream is not data
    assert after["forget_nll"] > before["forget_nll"] + 0.5  # the hinge pushed forget NLL up
    assert summary["method"] == "toy" and summary["steps"] == 8
    steps = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert all(s["hidden_norm"] > 0 for s in steps if "step" in s)
    base, _ = load_model(nano_model_dir)
    trained, _ = load_model(out / "model")
    emb = "model.embed_tokens.weight"
    assert torch.equal(base.state_dict()[emb], trained.state_dict()[emb])  # prepare_model froze it
    assert not torch.equal(
        base.state_dict()["model.layers.0.mlp.up_proj.weight"],
        trained.state_dict()["model.layers.0.mlp.up_proj.weight"],
    )


def test_joint_batch_keeps_every_stream_in_its_own_rows(tiny_data, nano_model_dir, tmp_path):
    cfg = run_cfg(tiny_data, nano_model_dir, tmp_path / "o", "method.name=idkdpo")
    model, tok = load_model(nano_model_dir)
    method = build_method(cfg.method)
    streams = build_streams(cfg, method.streams, Dataset(tiny_data), tok)
    rows = {st.name: streams[st.name][:3] for st in method.streams}
    ctx = Context.from_streams(model, rows, tok.pad_token_id)
    for name, examples in rows.items():
        alone = collate(examples, tok.pad_token_id)
        width = alone["labels"].shape[1]
        assert torch.equal(ctx.labels(name)[:, :width], alone["labels"])
        with torch.no_grad():
            logits = model(
                input_ids=alone["input_ids"], attention_mask=alone["attention_mask"]
            ).logits
        # right padding: a row's logits do not depend on the other streams sharing the batch
        assert torch.allclose(ctx.logits(name)[:, :width].detach(), logits, atol=1e-5)
    idk = tok.decode([t for t in streams["idk"][0].labels if t != -100], skip_special_tokens=True)
    assert idk.strip() in idk_answers()


def test_stop_at_retain_equivalent_stops_after_the_first_evaluation_that_reaches_it(
    tiny_data, nano_model_dir, tmp_path
):
    """The nano model is its own retain model: privleak is ~0 from the start, so training stops
    after epoch 0's evaluation (and a resumed run trains no further)."""
    out = tmp_path / "npo"
    overrides = [
        "method.name=npo", "backend.kind=torch", "train.epochs=3", "train.lr=1e-4",
        "train.batch_size=4", "train.micro_batch_size=2", f"model.retain_model={nano_model_dir}",
        "eval.every_n_epochs=1", "eval.max_new_tokens=4", "eval.batch_size=16",
        "eval.max_length=64", "train.stop_at=retain_equivalent",
    ]  # fmt: skip
    cfg = run_cfg(tiny_data, nano_model_dir, out, *overrides)
    run_dir.prepare(cfg, data_hashes(cfg, Dataset(tiny_data)))
    session = LocalSession(tmp_path / "ckpt")
    summary = train(cfg, session)
    history = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    evals = [h for h in history if "eval_epoch" in h]
    assert [e["eval_epoch"] for e in evals] == [0]
    assert abs(evals[0]["privleak"]) <= 25
    assert summary["stopped"]["epoch"] == 0 and "privleak" in summary["stopped"]["reason"]
    steps_per_epoch = max(h["step"] for h in history if "step" in h)
    assert all(h["epoch"] == 0 for h in history if "step" in h)
    assert session.reports[-1]["epoch"] == 0  # the stop's checkpoint was reported
    # a restart from that checkpoint (the driver died before run.json) trains no further
    (out / "run.json").unlink()
    again = train(cfg, session)
    assert again["steps"] == summary["steps"] and again["stopped"] == summary["stopped"]
    # ... unless resumed with stop_at: none, which trains on to the last epoch
    (out / "run.json").unlink()
    on = run_cfg(tiny_data, nano_model_dir, out, *overrides[:-1])
    going_on = train(on, session)
    assert going_on["steps"] == 3 * summary["steps"]
    # without stop_at the same run goes on to its last epoch
    cfg2 = run_cfg(tiny_data, nano_model_dir, tmp_path / "full", *overrides[:-1])
    run_dir.prepare(cfg2, data_hashes(cfg2, Dataset(tiny_data)))
    full = train(cfg2, LocalSession(tmp_path / "ckpt2"))
    assert full["stopped"] is None and full["steps"] == 3 * steps_per_epoch


def test_stop_at_needs_an_eval_section_and_a_retain_model(tiny_data, nano_model_dir, tmp_path):
    from unlearn.errors import ConfigError

    with pytest.raises(ConfigError, match="train.stop_at.*eval section"):
        run_cfg(tiny_data, nano_model_dir, tmp_path, "train.stop_at=retain_equivalent")
    with pytest.raises(ConfigError, match="train.stop_at.*model.retain_model"):
        run_cfg(
            tiny_data, nano_model_dir, tmp_path, "train.stop_at=retain_equivalent",
            "eval.every_n_epochs=1",
        )  # fmt: skip
