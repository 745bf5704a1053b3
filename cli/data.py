"""``unlearn data synth | import | inspect``."""

from __future__ import annotations

import argparse
import json

from cli.common import storage_options_arg


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``data`` command group."""
    data = sub.add_parser("data", help="create, import and inspect datasets")
    cmds = data.add_subparsers(dest="data_command", required=True, metavar="SUBCOMMAND")

    p = cmds.add_parser("synth", help="generate the synthetic fictitious-entity benchmark")
    p.add_argument("--out", required=True, help="output dataset directory (local or s3://)")
    p.add_argument("--entities", type=int, default=100)
    p.add_argument("--facts-per-entity", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--storage-options", help="JSON object passed to the filesystem (s3fs)")
    p.set_defaults(func=cmd_synth)

    p = cmds.add_parser("import", help="import a public benchmark release (TOFU, MUSE)")
    p.add_argument("src", help="directory holding the release's files")
    p.add_argument("--format", choices=["tofu", "muse"], required=True)
    p.add_argument("--out", required=True)
    p.add_argument(
        "--rows-per-entity",
        type=int,
        default=None,
        help="TOFU: consecutive rows per author (default: derived from the files; TOFU has 20)",
    )
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--storage-options")
    p.set_defaults(func=cmd_import)

    p = cmds.add_parser("inspect", help="print split sizes, entity counts and an example per split")
    p.add_argument("path")
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    p.add_argument("--storage-options")
    p.set_defaults(func=cmd_inspect)


def cmd_synth(args: argparse.Namespace) -> int:
    """Generate the synthetic benchmark and write it."""
    from unlearn import storage
    from unlearn.data import write_dataset
    from unlearn.data.dataset import KIND
    from unlearn.data.synth import synthesize

    options = storage_options_arg(args.storage_options)
    storage.check_output(args.out, KIND, options, overwrite=args.overwrite)
    splits, pairs = synthesize(args.entities, args.facts_per_entity, args.seed)
    info = write_dataset(
        args.out,
        splits,
        source="unlearn.synth",
        seed=args.seed,
        params={"entities": args.entities, "facts_per_entity": args.facts_per_entity},
        pairs=pairs,
        storage_options=options,
        overwrite=args.overwrite,
    )
    print(f"wrote {args.out}: {len(info.splits)} splits, dataset hash {info.hash[:16]}")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    """Import a TOFU or MUSE release into the dataset format."""
    from unlearn import storage
    from unlearn.data import write_dataset
    from unlearn.data.dataset import KIND

    options = storage_options_arg(args.storage_options)
    storage.check_output(args.out, KIND, options, overwrite=args.overwrite)
    if args.format == "muse":
        from unlearn.data.muse import import_muse

        if args.rows_per_entity is not None:
            from unlearn.errors import ConfigError

            raise ConfigError("--rows-per-entity: MUSE has no authors; drop the flag")
        splits, pairs = import_muse(args.src)
        params: dict = {"src": str(args.src)}
    else:
        from unlearn.data.tofu import import_tofu, tofu_rows_per_entity

        rows = args.rows_per_entity
        if rows is None:
            rows = tofu_rows_per_entity(args.src)
        splits, pairs = import_tofu(args.src, rows_per_entity=rows)
        params = {"src": str(args.src), "rows_per_entity": rows}
        print(
            f"{rows} consecutive rows per author"
            + ("" if args.rows_per_entity is not None else " (derived)")
        )
    info = write_dataset(
        args.out,
        splits,
        source=args.format,
        params=params,
        pairs=pairs,
        storage_options=options,
        overwrite=args.overwrite,
    )
    print(f"imported {len(info.splits)} splits into {args.out}, dataset hash {info.hash[:16]}")
    return 0


def describe(path: str, storage_options: dict | None = None) -> dict:
    """Summary of a dataset: per split rows, entities, hash and one example row."""
    from unlearn.data import Dataset

    ds = Dataset(path, storage_options)
    out = {
        "path": path,
        "source": ds.info.source,
        "hash": ds.hash,
        "pairs": ds.info.pairs,
        "splits": {},
    }
    for name in ds.splits:
        table = ds.read(name)
        out["splits"][name] = {
            "rows": table.num_rows,
            "entities": len(set(table.column("entity").to_pylist())),
            "hash": ds.split_hash(name),
            "example": table.slice(0, 1).to_pylist()[0],
        }
    return out


def cmd_inspect(args: argparse.Namespace) -> int:
    """Print a dataset's splits."""
    summary = describe(args.path, storage_options_arg(args.storage_options))
    if args.json:
        print(json.dumps(summary, indent=2, ensure_ascii=False))
        return 0
    print(f"dataset {summary['path']}  source={summary['source']}  hash={summary['hash'][:16]}")
    print(f"{'split':<18}{'rows':>7}{'entities':>10}  hash")
    for name, s in summary["splits"].items():
        print(f"{name:<18}{s['rows']:>7}{s['entities']:>10}  {s['hash'][:12]}")
    for name, s in summary["splits"].items():
        ex = s["example"]
        print(
            f"\n[{name}] id={ex['id']} entity={ex['entity']}\n  Q: {ex['question']}\n  A: {ex['answer']}"
        )
    return 0
