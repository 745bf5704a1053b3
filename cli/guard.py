"""``unlearn guard build | check | calibrate | eval | redteam``."""

from __future__ import annotations

import argparse
import json
from typing import Any

from cli.common import storage_options_arg
from unlearn.errors import DataError

CONFIG_FILE = "guard.yaml"  # written by calibrate into the index directory, read by check/eval


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``guard`` command group."""
    guard = sub.add_parser("guard", help="build, run, calibrate and evaluate the forget-set guard")
    cmds = guard.add_subparsers(dest="guard_command", required=True, metavar="SUBCOMMAND")

    p = cmds.add_parser("build", help="compile a guard index from a dataset's forget split")
    p.add_argument("--data", required=True, help="dataset directory (local or s3://)")
    p.add_argument(
        "--forget-split", required=True, action="append", help="forget split (repeatable)"
    )
    p.add_argument("--retain-split", help="retain split (default: the one paired in dataset.json)")
    p.add_argument("--out", required=True, help="index directory to write")
    p.add_argument(
        "--embeddings",
        choices=["auto", "on", "off"],
        default="auto",
        help="embed facts with all-MiniLM-L6-v2 (auto: when installed)",
    )
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--storage-options", help="JSON object passed to the filesystem (s3fs)")
    p.set_defaults(func=cmd_build)

    p = cmds.add_parser("check", help="check JSON lines of texts or conversations")
    p.add_argument("--index", required=True)
    p.add_argument("--input", required=True, help='JSONL: {"id", "text"|"messages", "direction"?}')
    p.add_argument(
        "--output", required=True, help='JSONL: {"id", "blocked", "score", "layer", "reason"}'
    )
    p.add_argument("--audit-log", help="append a JSON line per block to this local file")
    p.add_argument("--data", help="dataset the index must have been built from (version check)")
    _config_args(p)
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_check)

    p = cmds.add_parser("calibrate", help="choose thresholds for a target false-positive rate")
    p.add_argument("--index", required=True)
    p.add_argument(
        "--data",
        help="the dataset the index was built from (generated sets; needed without --attacks)",
    )
    p.add_argument(
        "--attacks",
        help='calibrate on this JSONL set instead: {"id", "family", "label", "text"|"messages"}',
    )
    p.add_argument(
        "--heldout",
        action="append",
        default=[],
        metavar="FILE",
        help="held-out JSONL set reported separately with the calibrated thresholds (repeatable)",
    )
    p.add_argument("--target-fpr", type=float, default=0.01, help="for inputs (default 0.01)")
    p.add_argument("--output-fpr", type=float, default=0.05, help="for outputs (default 0.05)")
    p.add_argument("--n", type=int, default=100, help="examples per family")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", help=f"config YAML to write (default INDEX/{CONFIG_FILE})")
    p.add_argument("--report", help="also write the JSON report here")
    _config_args(p)
    p.set_defaults(func=cmd_calibrate)

    p = cmds.add_parser(
        "eval", help="block rates per attack family, false positives per benign family"
    )
    p.add_argument("--index", required=True)
    p.add_argument(
        "--data",
        help="the dataset the index was built from (generated sets; needed without --attacks)",
    )
    p.add_argument(
        "--attacks",
        action="append",
        default=[],
        metavar="FILE",
        help='evaluate on this JSONL set: one {"id", "family", "label": "attack"|"benign", '
        '"text"|"messages"} per line (repeatable; each file reported separately)',
    )
    p.add_argument("--n", type=int, default=100, help="examples per family")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="write the JSON report here")
    _config_args(p)
    p.set_defaults(func=cmd_eval)

    p = cmds.add_parser(
        "redteam", help="mutate blocked attacks until one passes; share of facts with a pass"
    )
    p.add_argument("--index", required=True)
    p.add_argument("--data", required=True, help="the dataset the index was built from")
    p.add_argument("--budget", type=int, default=50, help="mutations per fact (default 50)")
    p.add_argument("--facts", type=int, default=0, help="at most this many facts (0: all)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--direction", choices=["input", "output"], default="input", help="checked direction"
    )
    p.add_argument(
        "--out",
        required=True,
        help="directory for report.json and passing.jsonl (evidence; never inside the index)",
    )
    p.add_argument("--overwrite", action="store_true")
    _config_args(p)
    p.set_defaults(func=cmd_redteam)


def _config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help=f"guard config YAML (default: INDEX/{CONFIG_FILE} if present)")
    p.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="config override"
    )
    p.add_argument("--no-embeddings", action="store_true", help="lexical layers only")
    p.add_argument("--storage-options", help="JSON object passed to the filesystem (s3fs)")


def _load_config(args: argparse.Namespace) -> Any:
    """The guard config: --config, else INDEX/guard.yaml, else defaults; then --set overrides."""
    from unlearn import storage
    from unlearn.config import load_config
    from unlearn.guard import GuardConfig

    overrides = list(args.set)
    if args.no_embeddings:
        overrides.append("embeddings=false")
    opts = storage_options_arg(args.storage_options)
    path = args.config
    if path is None and storage.exists(storage.join(args.index, CONFIG_FILE), opts):
        path = storage.join(args.index, CONFIG_FILE)
    return load_config(GuardConfig, path, overrides, storage_options=opts)


def _guard(args: argparse.Namespace, dataset: Any = None, audit: str | None = None) -> Any:
    from unlearn.guard import Guard

    return Guard.load(
        args.index,
        _load_config(args),
        storage_options=storage_options_arg(args.storage_options),
        dataset=dataset,
        audit=audit,
    )


def cmd_build(args: argparse.Namespace) -> int:
    """Compile and write a guard index."""
    from unlearn.data import Dataset
    from unlearn.guard.index import build_from_dataset, save_index

    opts = storage_options_arg(args.storage_options)
    ds = Dataset(args.data, opts)
    embeddings = {"auto": None, "on": True, "off": False}[args.embeddings]
    parts = build_from_dataset(ds, args.forget_split, args.retain_split, embeddings=embeddings)
    version = save_index(parts, args.out, opts, overwrite=args.overwrite)
    c = parts.manifest["counts"]
    emb = "with embeddings" if parts.manifest["embedding"] else "lexical only"
    print(
        f"wrote guard index {args.out} (version {version}, {emb}): {c['forget_entities']} forget "
        f"entities / {c['forget_facts']} facts, {c['retain_entities']} retain entities / "
        f"{c['retain_facts']} facts, {c['aliases']} names; dataset {ds.hash[:16]}"
    )
    return 0


def read_requests(path: str, storage_options: dict | None = None) -> list[dict[str, Any]]:
    """Parse a check input file; every problem names the file and line."""
    from unlearn import storage

    if not storage.exists(path, storage_options):
        raise DataError(f"input file {path} does not exist")
    out = []
    first_line: dict[Any, int] = {}
    for n, raw in enumerate(storage.read_bytes(path, storage_options).split(b"\n"), start=1):
        if not raw.strip():
            continue
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DataError(
                f"{path} line {n}: not valid UTF-8 (byte 0x{raw[exc.start]:02x} at offset "
                f"{exc.start}); input must be UTF-8 JSON lines"
            ) from None
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path} line {n}: not valid JSON ({exc.msg})") from None
        if not isinstance(obj, dict) or "id" not in obj:
            raise DataError(f'{path} line {n}: expected an object with an "id" key')
        ident = obj["id"]
        if isinstance(ident, (dict, list)):
            raise DataError(f'{path} line {n}: "id" must be a string or a number')
        key = json.dumps(ident)
        if key in first_line:
            raise DataError(
                f"{path} line {n}: id {ident!r} repeats the id of line {first_line[key]}; "
                "ids must be unique (each output line is matched to its input by id)"
            )
        first_line[key] = n
        has_text, has_msgs = "text" in obj, "messages" in obj
        if has_text == has_msgs:
            raise DataError(f'{path} line {n}: give exactly one of "text" and "messages"')
        if has_text and not isinstance(obj["text"], str):
            raise DataError(f'{path} line {n}: "text" must be a string')
        if has_msgs and not isinstance(obj["messages"], list):
            raise DataError(f'{path} line {n}: "messages" must be a list of messages')
        direction = obj.get("direction", "input")
        if direction not in ("input", "output"):
            raise DataError(
                f'{path} line {n}: "direction" must be "input" or "output", got {direction!r}'
            )
        session = obj.get("session")
        if session is not None and not isinstance(session, str):
            raise DataError(f'{path} line {n}: "session" must be a string')
        out.append(
            {
                "id": obj["id"],
                "content": obj["text"] if has_text else obj["messages"],
                "direction": direction,
                "session": session,
            }
        )
    return out


def _check_audit_log(path: str) -> None:
    """Refuse an audit log that cannot be appended to, before any check runs."""
    import os

    from unlearn.errors import UnlearnError

    try:
        parent = os.path.dirname(os.path.abspath(path))
        os.makedirs(parent, exist_ok=True)
        with open(path, "a", encoding="utf-8"):
            pass
    except OSError as exc:
        raise UnlearnError(
            f"audit log {path} cannot be written ({exc.strerror or exc}); every block must be "
            "logged, so nothing was checked: fix the path or its permissions"
        ) from None


def cmd_check(args: argparse.Namespace) -> int:
    """Check every line of a JSONL file and write one decision per line."""
    from unlearn import storage
    from unlearn.data import Dataset
    from unlearn.errors import OutputExistsError

    opts = storage_options_arg(args.storage_options)
    if storage.exists(args.output, opts) and not args.overwrite:
        raise OutputExistsError(f"{args.output} already exists; pass --overwrite to replace it")
    requests = read_requests(args.input, opts)
    dataset = Dataset(args.data, opts) if args.data else None
    if args.audit_log:
        _check_audit_log(args.audit_log)
        args.set = [*args.set, "on_audit_error=raise"]  # a lost audit record fails the command
    guard = _guard(args, dataset, args.audit_log)
    lines, blocked = [], 0
    for req in requests:
        d = guard.check(req["content"], req["direction"], session=req["session"])
        blocked += d.blocked
        lines.append(
            json.dumps(
                {
                    "id": req["id"],
                    "blocked": d.blocked,
                    "score": d.score,
                    "layer": d.layer,
                    "reason": d.reason,
                },
                ensure_ascii=False,
            )
        )
    storage.write_bytes(args.output, ("\n".join(lines) + "\n" if lines else "").encode(), opts)
    mode = "lexical+embeddings" if guard.semantic else "lexical"
    print(f"checked {len(requests)} lines ({mode}): {blocked} blocked -> {args.output}")
    return 0


def _sets(args: argparse.Namespace, guard: Any, dataset: Any, opts: dict | None) -> Any:
    from unlearn.guard.evaluate import examples_for

    if dataset is None:
        raise DataError("give --data (generated sets) or --attacks FILE")
    return examples_for(guard, dataset, n=args.n, seed=args.seed)


def cmd_calibrate(args: argparse.Namespace) -> int:
    """Choose thresholds on an attack/benign set and write them as a guard config; held-out sets
    are reported separately with the chosen thresholds."""
    import yaml

    from unlearn import storage
    from unlearn.config import to_dict
    from unlearn.data import Dataset
    from unlearn.guard.evaluate import calibrate, load_attacks, table

    opts = storage_options_arg(args.storage_options)
    heldout = [(path, load_attacks(path, opts)) for path in args.heldout]  # fail before work
    cal = load_attacks(args.attacks, opts) if args.attacks else None
    ds = Dataset(args.data, opts) if args.data else None
    guard = _guard(args, ds)
    examples = cal if cal is not None else _sets(args, guard, ds, opts)
    source = args.attacks or f"generated (seed {args.seed}, n {args.n})"
    config, rep = calibrate(
        guard,
        examples,
        target_fpr=args.target_fpr,
        output_fpr=args.output_fpr,
        heldout=heldout,
        source=source,
    )
    out = args.out or storage.join(args.index, CONFIG_FILE)
    how = f"--attacks {args.attacks}" if args.attacks else f"--data {args.data} --seed {args.seed}"
    header = (
        f"# guard config calibrated by `unlearn guard calibrate --index {args.index} {how} "
        f"--target-fpr {args.target_fpr} --output-fpr {args.output_fpr}`\n"
        f"# index {guard.index.version}, mode {rep['mode']}; use: unlearn guard check --config {out}\n"
    )
    storage.write_bytes(
        out, (header + yaml.safe_dump(to_dict(config), sort_keys=False)).encode(), opts
    )
    if args.report:
        storage.write_bytes(args.report, json.dumps(rep, indent=2).encode(), opts)
    print(table(rep, "[calibration set]"))
    for name, sub in rep["heldout"].items():
        print()
        print(table(sub, f"[held out: {name}]"))
    print(f"wrote {out}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    """Evaluate a guard on generated attack and benign sets, or on users' JSONL sets."""
    from unlearn import storage
    from unlearn.data import Dataset
    from unlearn.guard.evaluate import load_attacks, report, table

    opts = storage_options_arg(args.storage_options)
    files = [(path, load_attacks(path, opts)) for path in args.attacks]  # fail before work
    ds = Dataset(args.data, opts) if args.data else None
    guard = _guard(args, ds)
    if files:
        reps = {path: report(guard, exs, source=path) for path, exs in files}
    else:
        reps = {"generated": report(guard, _sets(args, guard, ds, opts))}
    rep = next(iter(reps.values())) if len(reps) == 1 else {"sets": reps}
    met = all(r["targets_met"] for r in reps.values())
    if len(reps) > 1:
        rep["targets_met"] = met
    if args.out:
        storage.write_bytes(args.out, json.dumps(rep, indent=2).encode(), opts)
    for i, (name, r) in enumerate(reps.items()):
        if i:
            print()
        print(table(r, f"[{name}]" if files else ""))
    print(json.dumps({"targets_met": met, "report": args.out}))
    return 0 if met else 1


def cmd_redteam(args: argparse.Namespace) -> int:
    """Fuzz the guard from blocked attacks; write the report and the passing texts."""
    import os

    from unlearn import storage
    from unlearn.data import Dataset
    from unlearn.errors import OutputExistsError
    from unlearn.guard.evaluate import write_attacks
    from unlearn.guard.redteam import redteam, summary_table

    opts = storage_options_arg(args.storage_options)
    if args.budget < 1:
        raise DataError(f"--budget must be at least 1, got {args.budget}")
    out = args.out.rstrip("/")
    index_dir = str(args.index).rstrip("/")
    if os.path.abspath(out).startswith(os.path.abspath(index_dir) + os.sep) or os.path.abspath(
        out
    ) == os.path.abspath(index_dir):
        raise DataError(
            f"--out {out} is inside the index {index_dir}: evidence never ships with it"
        )
    report_path = storage.join(out, "report.json")
    if storage.exists(report_path, opts) and not args.overwrite:
        raise OutputExistsError(f"{report_path} already exists; pass --overwrite to replace it")
    ds = Dataset(args.data, opts)
    guard = _guard(args, ds)
    rep, passing = redteam(
        guard,
        ds,
        budget=args.budget,
        seed=args.seed,
        max_facts=args.facts,
        direction=args.direction,
    )
    write_attacks(storage.join(out, "passing.jsonl"), passing, opts)
    storage.write_bytes(report_path, json.dumps(rep, indent=2).encode(), opts)
    print(summary_table(rep))
    print(
        json.dumps(
            {
                "facts": rep["facts"],
                "facts_passing": rep["facts_passing"],
                "share_passing": rep["share_passing"],
                "target_met": rep["target_met"],
                "out": out,
            }
        )
    )
    return 0
