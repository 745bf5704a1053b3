"""``unlearn model tiny``."""

from __future__ import annotations

import argparse

from cli.common import storage_options_arg


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``model`` command group."""
    model = sub.add_parser("model", help="build and manage models")
    cmds = model.add_subparsers(dest="model_command", required=True, metavar="SUBCOMMAND")
    p = cmds.add_parser(
        "tiny", help="a small Llama from a config + a BPE tokenizer trained on a dataset"
    )
    p.add_argument("--out", required=True)
    p.add_argument("--data", required=True, help="dataset whose text trains the tokenizer")
    p.add_argument("--size", default="tiny", help="nano | micro | tiny | small")
    p.add_argument("--vocab-size", type=int, default=2048)
    p.add_argument("--max-positions", type=int, default=256)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--storage-options")
    p.set_defaults(func=cmd_tiny)


def check_tiny_args(args: argparse.Namespace) -> None:
    """Refuse impossible sizes before any work (the messages name the flag)."""
    from unlearn.errors import ConfigError
    from unlearn.models.tiny import MAX_SEED, MIN_POSITIONS, MIN_VOCAB, SIZES

    if args.size not in SIZES:
        raise ConfigError(
            f"--size: model size {args.size!r} is unknown (known: {', '.join(SIZES)})"
        )
    if not MIN_VOCAB <= args.vocab_size <= 1_000_000:
        raise ConfigError(
            f"--vocab-size must be between {MIN_VOCAB} (the 256 byte symbols and the special "
            f"tokens) and 1000000, got {args.vocab_size}"
        )
    if not MIN_POSITIONS <= args.max_positions <= 1_048_576:
        raise ConfigError(
            f"--max-positions must be between {MIN_POSITIONS} (a prompt and an answer) and "
            f"1048576, got {args.max_positions}"
        )
    if not 0 <= args.seed <= MAX_SEED:
        raise ConfigError(f"--seed must be between 0 and {MAX_SEED}, got {args.seed}")


def cmd_tiny(args: argparse.Namespace) -> int:
    """Build and save a tiny model for a dataset."""
    from unlearn import storage
    from unlearn.data import Dataset
    from unlearn.models import build_tiny_model, dataset_texts, save_model, train_tokenizer
    from unlearn.models.io import KIND

    check_tiny_args(args)
    options = storage_options_arg(args.storage_options)
    storage.check_output(args.out, KIND, options, overwrite=args.overwrite)
    ds = Dataset(args.data, options)
    records = [r for split in ds.splits for r in ds.records(split)]
    tokenizer = train_tokenizer(dataset_texts(records), vocab_size=args.vocab_size)
    model = build_tiny_model(tokenizer, args.size, max_positions=args.max_positions, seed=args.seed)
    n_params = sum(p.numel() for p in model.parameters())
    save_model(
        model,
        tokenizer,
        args.out,
        storage_options=options,
        overwrite=args.overwrite,
        metadata={"built_by": "unlearn model tiny", "size": args.size, "dataset_hash": ds.hash},
    )
    print(
        f"wrote {args.out}: {args.size} Llama, {n_params / 1e6:.2f}M parameters, vocab {len(tokenizer)}"
    )
    return 0
