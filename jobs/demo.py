"""The demo: synthetic benchmark -> tiny model -> target and retain-only models (Ray Train,
DeepSpeed) -> NPO-KL (stopping once retain-equivalent) and gradient ascent on the forget split ->
distributed evaluation -> a verdict computed from the numbers.

    unlearn demo --out runs/demo                      # synthesizes the data
    unlearn demo --data DATASET --forget-split forget10 --retain-split retain90 --out runs/mine
    ray job submit --working-dir . -- python -m jobs.demo --out /mnt/shared/demo

Writes ``OUT/summary.json`` = {"models": {"target", "retain", "npo", "ga": <metrics.json>}, ...}
and ``OUT/report.html``; prints one table. The sizes below were tuned so the target memorizes its
facts and the whole run fits in a few minutes on a 2-core CPU (see docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from jobs.common import init_ray, run_training
from jobs.eval import EvalJobConfig, EvalScaling, run_eval
from unlearn import storage
from unlearn.config import apply_overrides, build, load_config, read_yaml, require, to_dict
from unlearn.data import Dataset, write_dataset
from unlearn.engine import run_dir
from unlearn.engine.config import RunConfig, TrainConfig
from unlearn.engine.evaluation import check_eval_plan
from unlearn.errors import ConfigError, DataError, OutputExistsError, run_command
from unlearn.eval import EvalConfig
from unlearn.eval.plan import plan_splits, retain_fallback

PRESET = Path(__file__).resolve().parents[1] / "examples" / "demo.yaml"


@dataclass
class SynthSpec:
    """The synthetic benchmark built when no dataset is given."""

    entities: int = 60
    facts_per_entity: int = 8


@dataclass
class TinyModelSpec:
    """The tiny Llama built when no base model is given."""

    size: str = "micro"
    vocab_size: int = 1024
    max_positions: int = 128


@dataclass
class DemoConfig:
    """The demo's recipe (examples/demo.yaml): data, models, training budgets, methods, eval."""

    out: str = ""
    data: str | None = None  # a dataset in our format (default: synthesize one into OUT/data)
    forget_split: str = "forget10"
    retain_split: str | None = None  # default: the forget split's pair in dataset.json
    model: str | None = None  # a base model to fine-tune (default: build a tiny Llama)
    workers: int = 2  # Ray Train and eval workers
    zero_stage: Literal[0, 1, 2, 3] = 2
    seed: int = 0
    overwrite: bool = False  # start over in an existing OUT
    max_length: int = 64
    synth: SynthSpec = field(default_factory=SynthSpec)
    tiny_model: TinyModelSpec = field(default_factory=TinyModelSpec)
    finetune: TrainConfig = field(default_factory=TrainConfig)
    unlearn: TrainConfig = field(default_factory=TrainConfig)
    # run name -> the run's method section (name + parameters); all share the ``unlearn`` budget
    methods: dict[str, Any] = field(default_factory=dict)
    curves: list[str] = field(default_factory=list)  # runs evaluated after every epoch
    eval: EvalConfig = field(default_factory=EvalConfig)

    def check(self) -> None:
        """An output dir, at least one method, and curves naming methods."""
        require(bool(self.out), "out", "is required (--out)")
        require(self.workers >= 1, "workers", f"must be >= 1, got {self.workers}")
        require(bool(self.methods), "methods", "must name at least one unlearning run")
        for name, section in self.methods.items():
            require(
                isinstance(section, dict) and "name" in section,
                f"methods.{name}",
                "must be a method section with a name",
            )
            require(
                name not in ("target", "retain", "data", "base", "eval"),
                f"methods.{name}",
                "is a name the demo uses for its own outputs",
            )
        for name in self.curves:
            require(name in self.methods, "curves", f"{name!r} is not one of the methods")


# flag -> config key
FLAGS = {
    "out": "out",
    "data": "data",
    "forget_split": "forget_split",
    "retain_split": "retain_split",
    "model": "model",
    "workers": "workers",
    "zero_stage": "zero_stage",
    "seed": "seed",
}


def utility_splits(ds: Dataset) -> list[str]:
    """Splits standing in for pre-training knowledge, trained into both target and retain models."""
    return [s for s in ("world_facts", "real_authors") if s in ds.splits]


def greedy_accuracy(model_dir: str, ds: Dataset, split: str, max_new_tokens: int) -> float:
    """Fraction of ``split`` whose greedy answer equals the reference answer (case/space-folded)."""
    from unlearn.eval.scoring import generate
    from unlearn.models import encode_prompt, load_model

    model, tok = load_model(model_dir)
    rows = ds.records(split)
    outs = generate(
        model,
        tok,
        [encode_prompt(tok, r["question"]) for r in rows],
        batch_size=64,
        max_new_tokens=max_new_tokens,
    )

    def norm(text: str) -> str:
        return " ".join(text.lower().split())

    return sum(norm(o) == norm(r["answer"]) for o, r in zip(outs, rows)) / len(rows)


def parser() -> argparse.ArgumentParser:
    """The demo's command line (``unlearn demo`` and ``python -m jobs.demo``)."""
    p = argparse.ArgumentParser(
        prog="unlearn demo",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", default=str(PRESET), help="the demo preset (default: %(default)s)")
    p.add_argument("--out", help="output directory")
    p.add_argument("--data", help="a dataset in our format (default: synthesize one)")
    p.add_argument("--forget-split")
    p.add_argument("--retain-split", help="default: the forget split's pair in dataset.json")
    p.add_argument("--model", help="a base model to fine-tune (default: build a tiny Llama)")
    p.add_argument("--workers", type=int, help="Ray Train / eval workers")
    p.add_argument("--zero-stage", type=int, choices=[0, 1, 2, 3])
    p.add_argument("--seed", type=int)
    p.add_argument("--address", help="Ray cluster address (default: a local Ray)")
    p.add_argument("--overwrite", action="store_true", help="start over in an existing --out")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="e.g. unlearn.epochs=8")
    return p


def load_demo_config(args: argparse.Namespace) -> DemoConfig:
    """The preset, then the flags, then the dotted overrides."""
    flags = [
        f"{key}={json.dumps(getattr(args, flag))}"
        for flag, key in FLAGS.items()
        if getattr(args, flag) is not None
    ]
    if args.overwrite:
        flags.append("overwrite=true")
    return load_config(DemoConfig, args.config, [*flags, *args.overrides])


DEMO_FILE = "demo.json"  # written first: the demo's config; it marks a demo directory
# keys the demo sets itself (from the top-level keys named here); a config setting them is refused
FIXED = {
    "eval.forget_split": "forget_split",
    "eval.retain_split": "retain_split",
    "eval.every_n_epochs": "curves (every epoch)",
    "finetune.seed": "seed",
    "unlearn.seed": "seed",
}


def _is_demo(files: dict[str, bytes]) -> str | None:
    try:
        doc = json.loads(files[DEMO_FILE])
    except ValueError:
        return f"its {DEMO_FILE} is not JSON"
    if not isinstance(doc, dict) or doc.get("tool") != "unlearn demo":
        return f"its {DEMO_FILE} was not written by the demo"
    return None


# What ``--overwrite`` may replace: a demo's output (its own files, its run directories, and what
# `make serve-demo` adds for it: the guard index of its data, API keys, the serving audit log).
KIND = storage.OutputKind(
    "demo",
    (DEMO_FILE,),
    (
        *(DEMO_FILE, "summary.json", "report.html", "data", "base", "eval", "target", "retain"),
        *("guard", "api_keys.txt", "serve_audit.jsonl"),
    ),
    nested=(run_dir.KIND,),
    validate=_is_demo,
)


def refuse_fixed_keys(args: argparse.Namespace) -> None:
    """Refuse config keys the demo sets itself (they would be silently replaced)."""
    raw = apply_overrides(read_yaml(args.config) if args.config else {}, list(args.overrides))
    for key, source in FIXED.items():
        node: Any = raw
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if node is not None:
            raise ConfigError(f"{key}: the demo sets it itself from {source}; remove it")


def prepare_out(cfg: DemoConfig, final: str) -> tuple[str, str]:
    """Where this demo writes, decided before any work: ``(work dir, mode)``; mode is "absent" or
    "empty" (a new demo), "resume" (the same config in an unfinished or finished demo) or
    "replace" (``--overwrite``: built beside ``final`` and published when complete)."""
    recorded = {k: v for k, v in to_dict(cfg).items() if k not in ("out", "overwrite")}
    found = storage.inspect_output(final, KIND)
    if found.state in ("absent", "empty"):
        mode, work = found.state, final
    else:
        if cfg.overwrite or not found.strangers:  # resuming deletes nothing: strangers may stay
            storage.check_output(final, KIND, overwrite=True)  # refuses what is not a demo's
        if cfg.overwrite:
            mode, work = "replace", storage.staging_path(final)
        else:
            old = json.loads(storage.read_bytes(storage.join(final, DEMO_FILE)))
            if old.get("config") != recorded:
                changed = [k for k in recorded if old.get("config", {}).get(k) != recorded[k]]
                raise OutputExistsError(
                    f"{final} holds a demo run with another config (differs in: "
                    f"{', '.join(changed) or 'its keys'}); pass --overwrite to replace it or "
                    "choose another --out"
                )
            return final, "resume"
    storage.write_bytes(
        storage.join(work, DEMO_FILE),
        json.dumps({"tool": "unlearn demo", "config": recorded}, indent=2).encode(),
    )
    return work, mode


def main(argv: list[str] | None = None) -> int:
    """Run the whole demo; returns the exit code."""
    args = parser().parse_intermixed_args(argv)  # options and key=value in any order
    refuse_fixed_keys(args)
    cfg = load_demo_config(args)
    if cfg.model is not None:
        from unlearn.models import check_model

        check_model(cfg.model)
    if cfg.data is not None:
        Dataset(cfg.data).read(cfg.forget_split)
    final = os.path.abspath(cfg.out) if not storage.is_remote(cfg.out) else cfg.out
    out, mode = prepare_out(cfg, final)
    state: dict[str, Any] = {"started": False}
    try:
        code = run_demo(cfg, args, out, state)
    except BaseException:
        if mode == "replace" or (mode in ("absent", "empty") and not state["started"]):
            storage.discard_staged(out)  # refused before any training: leave nothing behind
            if mode == "empty" and not storage.is_remote(out):
                Path(out).mkdir()
        raise
    if mode == "replace":
        storage.publish_staged(out, final, KIND)
    print(
        f"\nreport: {storage.join(final, 'report.html')}\nsummary: {storage.join(final, 'summary.json')}"
    )
    data = cfg.data or storage.join(final, "data")
    print(serve_instructions(final, data, *state["serve"]))
    return code


def run_demo(cfg: DemoConfig, args: argparse.Namespace, out: str, state: dict[str, Any]) -> int:
    """The demo's steps, writing under ``out``; ``state["started"]`` turns true when training
    starts (before that, every input has been checked), ``state["serve"]`` holds what the
    serving instructions need."""
    t0 = time.time()

    # 1. data
    data = cfg.data or storage.join(out, "data")
    if cfg.data is None and not storage.exists(storage.join(data, "dataset.json")):
        from unlearn.data.synth import synthesize

        spec = cfg.synth
        splits, pairs = synthesize(spec.entities, spec.facts_per_entity, cfg.seed)
        write_dataset(
            data, splits, source="unlearn.synth", seed=cfg.seed, params=to_dict(spec), pairs=pairs
        )
    ds = Dataset(data)
    forget = cfg.forget_split
    retain = cfg.retain_split or ds.paired_split(forget, "retain")
    if retain is None:
        raise DataError(
            f"dataset {data} records no retain split for {forget!r}: pass --retain-split"
        )
    ds.pair(forget, retain)
    extra = utility_splits(ds)
    full = ["full"] if "full" in ds.splits else [forget, retain]
    base = cfg.model or storage.join(out, "base")
    target_model = storage.join(out, "target", "model")
    retain_model = storage.join(out, "retain", "model")

    def run_config(name: str, model: str, section: dict[str, Any]) -> RunConfig:
        raw = {
            "data": {"path": data, "max_length": cfg.max_length},
            "model": {"path": model},
            "backend": {"kind": "deepspeed", "zero_stage": cfg.zero_stage},
            "scaling": {"num_workers": cfg.workers},
            "output": {"dir": storage.join(out, name)},
            **section,
        }
        raw["train"] = {**raw.get("train", {}), "seed": cfg.seed}
        try:
            return build(RunConfig, raw)
        except ConfigError as exc:
            raise ConfigError(f"demo run {name!r}: {exc}") from None

    # Every run's config is built and checked before anything trains.
    ft = to_dict(cfg.finetune)
    configs = {
        "target": run_config(
            "target",
            base,
            {
                "method": {"name": "finetune"},
                "data": {"path": data, "max_length": cfg.max_length, "train_splits": full + extra},
                "train": ft,
            },
        ),
        "retain": run_config(
            "retain",
            base,
            {
                "method": {"name": "finetune"},
                "data": {
                    "path": data,
                    "max_length": cfg.max_length,
                    "train_splits": [retain, *extra],
                },
                "train": ft,
            },
        ),
    }
    in_training_eval = {k: v for k, v in to_dict(cfg.eval).items() if k not in SPLIT_KEYS}
    for name, method in cfg.methods.items():
        section: dict[str, Any] = {
            "method": method,
            "data": {
                "path": data,
                "max_length": cfg.max_length,
                "forget_split": forget,
                "retain_split": retain,
            },
            "train": to_dict(cfg.unlearn),
        }
        if name in cfg.curves:  # evaluated after every epoch, on all workers
            section["model"] = {"path": target_model, "retain_model": retain_model}
            section["eval"] = {**in_training_eval, "every_n_epochs": 1}
        else:  # unlearn.stop_at decides after in-training evaluations: curve runs only
            section["train"]["stop_at"] = "none"
        configs[name] = run_config(name, target_model, section)
    # the final evaluation picks its splits as `unlearn eval` does (TOFU: retain_perturbed)
    own_retain = retain_fallback(ds, cfg.eval, forget, retain)
    ecfg = build(
        EvalConfig,
        {**to_dict(cfg.eval), "forget_split": forget, "retain_split": own_retain},
    )
    # ... and every evaluation planned (splits and columns) before anything trains
    for run_cfg in configs.values():
        check_eval_plan(run_cfg, ds)
    plan_splits(ds, ecfg)
    print(
        f"[1/5] data: {data}  forget={forget} ({ds.info.splits[forget]['rows']} rows)  retain={retain}  utility={extra}"
    )

    # 2. base model
    if cfg.model is None and not storage.exists(storage.join(base, "config.json")):
        from unlearn.models import build_tiny_model, dataset_texts, save_model, train_tokenizer

        spec = cfg.tiny_model
        texts = dataset_texts(r for s in ds.splits for r in ds.records(s))
        tok = train_tokenizer(texts, spec.vocab_size)
        model = build_tiny_model(tok, spec.size, max_positions=spec.max_positions, seed=cfg.seed)
        save_model(model, tok, base)
    print(f"[2/5] base model: {base}")

    state["started"] = True
    init_ray(args.address)

    def run(name: str) -> dict[str, Any]:
        run_json = storage.join(out, name, "run.json")
        if storage.exists(run_json):  # finished earlier (a re-run of the demo reuses it)
            done = json.loads(storage.read_bytes(run_json))
            if done.get("status") == "finished":
                return done
        started = time.time()
        summary = run_training(configs[name])
        print(
            f"      {name}: {summary['steps']} steps in {time.time() - started:.0f}s, loss before {fmt(summary['loss_before'])} after {fmt(summary['loss_after'])}"
        )
        return summary

    # 3. target and retain-only models
    runs = {"target": run("target"), "retain": run("retain")}
    acc = greedy_accuracy(target_model, ds, forget, cfg.eval.max_new_tokens)
    print(
        f"[3/5] target and retain-only models trained; target's forget-set greedy-answer accuracy: {acc:.1%}"
    )

    # 4. unlearning, every method with the same maximum budget (curve runs may stop earlier)
    for name in cfg.methods:
        runs[name] = run(name)
    print(f"[4/5] unlearned with {', '.join(cfg.methods)}")

    # 5. evaluation: every model against the retain-only model, across Ray workers
    from unlearn.eval import write_report

    models: dict[str, Any] = {}
    for name in ("target", "retain", *cfg.methods):
        job = EvalJobConfig(
            model=storage.join(out, name, "model"),
            data=data,
            out=storage.join(out, "eval", name),
            retain_model=retain_model,
            name=name,
            cache_dir=storage.join(out, "eval", "cache"),
            overwrite=True,
            scaling=EvalScaling(workers=cfg.workers),
            eval=ecfg,
        )
        models[name] = run_eval(job, address=args.address)
    summary = {
        "models": models,
        "runs": runs,
        "target_forget_greedy_accuracy": acc,
        "dataset": {"path": data, "hash": ds.hash, "forget_split": forget, "retain_split": retain},
        "wall_time_s": time.time() - t0,
    }
    history = epoch_curve(out, cfg.curves[0], models["target"]) if cfg.curves else None
    sentences = verdict_sentences(models, list(cfg.methods), runs)
    summary["verdict"] = sentences
    storage.write_bytes(storage.join(out, "summary.json"), json.dumps(summary, indent=2).encode())
    write_report(
        storage.join(out, "report.html"),
        models,
        history=history,
        title=f"unlearn demo: {' vs '.join(cfg.methods)}",
        summary=" ".join(sentences),
    )
    print("[5/5] evaluated\n")
    print(verdict_table(models, forget))
    print("\n" + "\n".join(sentences))
    print(f"({time.time() - t0:.0f}s)")
    state["serve"] = (forget, list(cfg.methods), ds.records(forget)[0]["question"])
    return 0


def serve_instructions(out: str, data: str, forget: str, methods: list[str], question: str) -> str:
    """How to serve the demo's models behind the guard (``make serve-demo``) and call them."""
    import shlex

    models = ["target", *methods]
    guard, keys = storage.join(out, "guard"), storage.join(out, "api_keys.txt")
    serve_cmd = " \\\n    ".join(
        ["unlearn serve"]
        + [f"--model {m}={storage.join(out, m, 'model')}" for m in models]
        + [f"--guard {m}={guard}" for m in models]
        + [f"--api-keys-file {keys} --audit-log {storage.join(out, 'serve_audit.jsonl')}"]
        + ["--port 8000"]
    )
    body = json.dumps(
        {"model": methods[0], "messages": [{"role": "user", "content": question}]},
        ensure_ascii=False,
    )
    return f"""
Serve these models behind the guard, OpenAI-compatible on 127.0.0.1:8000 (`make serve-demo` runs):
unlearn guard build --data {data} --forget-split {forget} --out {guard}
python -c "import secrets; print('sk-demo-' + secrets.token_urlsafe(24))" > {keys}
{serve_cmd}

Then ask about a forgotten fact (the target has not forgotten: its answer is withheld, finish_reason
content_filter; a fact pasted into the prompt is refused with HTTP 400 content_filter):
curl -s http://127.0.0.1:8000/v1/chat/completions -H "Authorization: Bearer $(head -1 {keys})" \\
  -H 'Content-Type: application/json' -d {shlex.quote(body)}

python - <<'EOF'
from openai import OpenAI
client = OpenAI(base_url="http://127.0.0.1:8000/v1", api_key=open({keys!r}).read().split()[0])
for model in {tuple(models)!r}:
    r = client.chat.completions.create(
        model=model, temperature=0, messages=[{{"role": "user", "content": {question!r}}}]
    )
    print(model, r.choices[0].finish_reason, repr(r.choices[0].message.content))
EOF"""


# eval keys the demo sets itself for its in-training evaluations (the run's own splits)
SPLIT_KEYS = ("forget_split", "retain_split", "every_n_epochs")


def epoch_curve(out: str, name: str, target: dict[str, Any]) -> list[dict[str, Any]]:
    """Forget quality and model utility per epoch of run ``name`` (epoch 0 = the target)."""
    text = storage.read_bytes(storage.join(out, name, "metrics.jsonl")).decode()
    rows = [json.loads(line) for line in text.splitlines() if line]
    curve = [
        {
            "epoch": 0,
            "forget_quality": target.get("forget_quality"),
            "model_utility": target.get("model_utility"),
        }
    ]
    curve += [
        {
            "epoch": r["eval_epoch"] + 1,
            "forget_quality": r["forget_quality"],
            "model_utility": r["model_utility"],
        }
        for r in rows
        if "eval_epoch" in r
    ]
    return curve


def fmt(losses: dict[str, float]) -> str:
    """``forget 1.23 / retain 4.56``."""
    return " / ".join(f"{k.removesuffix('_nll')} {v:.3f}" for k, v in losses.items())


def verdict_table(models: dict[str, dict[str, Any]], forget: str) -> str:
    """One table: forget ROUGE, forget quality, model utility, privleak, the forget answers'
    malformed rate and the verdict word per model."""

    def num(v: Any, spec: str) -> str:
        return "n/a" if v is None else format(v, spec)

    lines = [
        f"{'model':<8}{'forget ROUGE-L':>16}{'forget quality':>16}{'model utility':>15}"
        f"{'privleak':>10}{'malformed':>11}  verdict"
    ]
    for name, m in models.items():
        split = m.get("splits", {}).get(forget) or {}
        lines.append(
            f"{name:<8}{num(split.get('rouge_l_recall'), '.3f'):>16}"
            f"{num(m.get('forget_quality'), '.3g'):>16}{num(m.get('model_utility'), '.3f'):>15}"
            f"{num(m.get('privleak'), '.1f'):>10}{num(split.get('malformed_rate'), '.2f'):>11}"
            f"  {m.get('verdict') or 'n/a'}"
        )
    return "\n".join(lines)


def verdict_sentences(
    models: dict[str, dict[str, Any]],
    methods: list[str],
    runs: dict[str, dict[str, Any]] | None = None,
) -> list[str]:
    """What happened, in words, from the numbers: one sentence per unlearning run, then which
    runs read like never having learned (``unlearn.eval.report.reads_like_retain``)."""
    from unlearn.eval.report import describe_model, reads_like_retain

    target, retain = models.get("target"), models.get("retain")
    out = [f"{name} {describe_model(models[name], target, retain)}." for name in methods]
    for i, name in enumerate(methods):
        stop = ((runs or {}).get(name) or {}).get("stopped")
        if stop:
            out[i] = (
                out[i][:-1] + f"; it stopped after epoch {stop['epoch'] + 1} ({stop['reason']})."
            )
    if target and retain:
        good = [n for n in methods if reads_like_retain(models[n], target, retain)]
        out.append(
            f"Reads like never having learned the forget set: {', '.join(good)}."
            if good
            else "No run reads like never having learned the forget set (forget quality >= "
            "0.05, forget ROUGE-L within 0.15 of the retain-only model's, |privleak| <= 25, at "
            "most 5 points more malformed and 10 points more answers stating forget facts or "
            "inventing words than it, >= 95% of the target's utility)."
        )
    return out


if __name__ == "__main__":
    sys.exit(run_command(main))
