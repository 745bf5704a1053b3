"""Evaluation settings: which splits, how much generation, which attacks, how to pick a checkpoint.

Load from YAML or overrides with ``unlearn.config.load_config(EvalConfig, path, ["batch_size=8"])``;
the same dataclass is the ``eval`` section of a training config. Defaults are chosen to run on a
CPU in seconds on the synthetic benchmark; the TOFU / MUSE settings are noted beside each field.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from unlearn.config import require

# Utility splits used when ``utility_splits`` is None: those of these the dataset holds (TOFU has
# both; the synthetic benchmark has world_facts only).
DEFAULT_UTILITY_SPLITS = ("real_authors", "world_facts")
# The retain split TOFU evaluates on (a 400-row subset of retain90 with paraphrased and perturbed
# answers). Used instead of the paired retain split when the dataset has it.
RETAIN_PERTURBED = "retain_perturbed"
SCORES = ("hmean", "gmean", "model_utility", "forget_quality")


@dataclass
class EvalConfig:
    """What ``unlearn eval`` and in-training evaluation compute (see docs/architecture.md)."""

    # The forget split; its retain and holdout partners come from dataset.json ``pairs`` unless named.
    forget_split: str = "forget10"
    retain_split: str | None = None
    holdout_split: str | None = None
    # Splits scored like TOFU's real_authors / world_facts: probability normalized over the
    # perturbed (wrong) answers, ROUGE, truth ratio against the answer. None = DEFAULT_UTILITY_SPLITS
    # that exist in the dataset; an explicit list must name existing splits.
    utility_splits: list[str] | None = None
    # Score retain utility on ``retain_perturbed`` when the dataset has it (TOFU does).
    use_retain_perturbed: bool = True
    # Rows per forward pass / per generate call. Lower it for large models.
    batch_size: int = 32
    # Longest prompt + answer in tokens (answers are cut, prompts kept whole).
    max_length: int = 256
    # Greedy decoding length. TOFU uses 200, MUSE KnowMem 32 and VerbMem 128; 64 keeps CPU runs
    # short and covers the synthetic answers (about 15 tokens) and most TOFU answers.
    max_new_tokens: int = 64
    # Greedy generation (ROUGE, KnowMem, VerbMem). Off = teacher-forced metrics only (fast); then
    # model_utility is null because it needs ROUGE.
    generation: bool = True
    # MUSE VerbMem on the forget split: continue the forget text from a prefix (needs generation).
    verbmem: bool = True
    # Fraction of each forget answer's tokens given to the model as the VerbMem prefix.
    verbmem_prefix_fraction: float = 0.5
    # Membership-inference attacks, forget (members) vs holdout (non-members).
    mia_attacks: list[str] = field(
        default_factory=lambda: ["loss", "zlib", "min_k", "min_k_plus_plus"]
    )
    # k of Min-K% and Min-K%++ (fraction of the lowest-scoring tokens kept), 0.4 as in OU.
    min_k: float = 0.4
    # The attack whose AUC privleak compares with the retain model's (OU: Min-K%; MUSE: Min-K%++).
    privleak_attack: str = "min_k"
    # Without a retain model privleak and rel_diff are null; a number here is the AUC they
    # compare with instead (open-unlearning falls back to 0.5), labelled in metrics.json
    # (privleak_reference) and the report.
    privleak_reference_auc: float | None = None
    # p of the gradient-norm attack's per-parameter norms (1, 2 or .inf; open-unlearning: 2).
    gradnorm_p: float = 2.0
    # A split whose rows lack paraphrased / perturbed answers: raise, or skip the truth ratio
    # (and the normalized probability of utility splits) and record why in metrics.json.
    on_missing_perturbed: Literal["error", "skip"] = "error"
    # Evaluate at most this many rows per split (evenly spaced, deterministic); None = all.
    max_examples_per_split: int | None = None
    # In training: evaluate every N epochs (and after the last one).
    every_n_epochs: int = 1
    # Best-checkpoint score (higher is better); see unlearn.eval.metrics.selection_score:
    # balanced = harmonic mean of FQ, MU, 1 - |privleak|/100 and 1 - the forget answers'
    # malformed rate (a term that is null is left out); hmean = 2 FQ MU / (FQ + MU) (the score
    # before fluency and over-unlearning counted); gmean = sqrt(FQ MU); or one of FQ, MU alone.
    # Without a retain model (FQ null) the forget split's truth ratio stands in for FQ.
    score: Literal["balanced", "hmean", "gmean", "model_utility", "forget_quality"] = "balanced"
    # Fluency: the perplexity of each generated answer under this model. "retain": the retain
    # model when the evaluation has one (`unlearn eval --retain-model`, a run's
    # model.retain_model; in training not under ZeRO-3, where every rank would hold the whole
    # model; under DDP / ZeRO-1/2 each rank keeps a copy for the whole run: "none" for large
    # models); a model path; or "none".
    fluency_model: str | None = "retain"
    # How to read fluency_model (set by the shells from the retain model's settings).
    fluency_storage_options: dict[str, Any] | None = None
    fluency_dtype: str | None = None
    # A local Hugging Face text classifier (e.g. open-unlearning's gibberish detector, label
    # "clean"): gibberish_probability = 1 - p(clean) of each generated answer. Nothing is
    # downloaded; null = off.
    gibberish_classifier: str | None = None
    # Example generations per forget / retain split kept in metrics.json for the report.
    report_examples: int = 3
    # Which benchmark's definitions: "qa" (TOFU-style QA splits, everything above) or "muse"
    # (MUSE's own: KnowMem few-shot QA, VerbMem prompt / continuation, privleak on passages;
    # the splits ``unlearn data import --format muse`` writes; see unlearn.eval.muse).
    suite: Literal["qa", "muse"] = "qa"
    # MUSE KnowMem: greedy tokens after the few-shot prompt, cut at the first stop string.
    knowmem_max_new_tokens: int = 32
    knowmem_stop: list[str] = field(default_factory=lambda: ["\n\n", "\nQuestion", "Question:"])
    # MUSE VerbMem: greedy tokens continuing each prompt.
    verbmem_max_new_tokens: int = 128

    @property
    def fluency_path(self) -> str | None:
        """The fluency reference model's path, or None ("none", or "retain" left unresolved)."""
        return None if self.fluency_model in (None, "none", "retain") else self.fluency_model

    def with_fluency_model(
        self,
        retain_model: str | None,
        storage_options: dict[str, Any] | None = None,
        dtype: str | None = None,
    ) -> EvalConfig:
        """This config with "retain" made ``retain_model`` (None: no fluency model) and how to
        read the fluency model (``fluency_storage_options``, ``fluency_dtype``)."""
        import dataclasses

        fm = retain_model if self.fluency_model == "retain" else self.fluency_model
        fm = None if fm == "none" else fm
        if fm is None:
            return dataclasses.replace(self, fluency_model=None)
        return dataclasses.replace(
            self, fluency_model=fm, fluency_storage_options=storage_options, fluency_dtype=dtype
        )

    def check(self) -> None:
        """Reject impossible values (ConfigError naming the key)."""
        from unlearn.eval.metrics import MIA_ATTACKS

        require(bool(self.forget_split), "forget_split", "must name a split")
        require(self.batch_size >= 1, "batch_size", f"must be >= 1, got {self.batch_size}")
        require(self.max_length >= 8, "max_length", f"must be >= 8, got {self.max_length}")
        require(
            self.max_new_tokens >= 1, "max_new_tokens", f"must be >= 1, got {self.max_new_tokens}"
        )
        require(
            0.0 <= self.verbmem_prefix_fraction < 1.0,
            "verbmem_prefix_fraction",
            f"must be in [0, 1), got {self.verbmem_prefix_fraction}",
        )
        require(0.0 < self.min_k <= 1.0, "min_k", f"must be in (0, 1], got {self.min_k}")
        known = ", ".join(MIA_ATTACKS)
        for i, name in enumerate(self.mia_attacks):
            require(
                name in MIA_ATTACKS,
                f"mia_attacks[{i}]",
                f"unknown attack {name!r} (known: {known})",
            )
        require(
            len(set(self.mia_attacks)) == len(self.mia_attacks), "mia_attacks", "holds a duplicate"
        )
        require(
            self.privleak_attack in MIA_ATTACKS,
            "privleak_attack",
            f"unknown attack {self.privleak_attack!r} (known: {known})",
        )
        require(
            MIA_ATTACKS[self.privleak_attack].computed != "reference",
            "privleak_attack",
            f"{self.privleak_attack!r} scores against the retain model itself; privleak needs "
            "an attack the retain model can be scored with",
        )
        require(
            self.privleak_reference_auc is None or 0.0 <= self.privleak_reference_auc < 1.0,
            "privleak_reference_auc",
            f"must be in [0, 1) or null, got {self.privleak_reference_auc}",
        )
        require(
            self.gradnorm_p in (1.0, 2.0, float("inf")),
            "gradnorm_p",
            f"must be 1, 2 or .inf, got {self.gradnorm_p}",
        )
        require(
            self.max_examples_per_split is None or self.max_examples_per_split >= 1,
            "max_examples_per_split",
            f"must be >= 1 or null, got {self.max_examples_per_split}",
        )
        require(
            self.every_n_epochs >= 1, "every_n_epochs", f"must be >= 1, got {self.every_n_epochs}"
        )
        require(
            self.report_examples >= 0,
            "report_examples",
            f"must be >= 0, got {self.report_examples}",
        )
        if self.gibberish_classifier is not None:
            from pathlib import Path

            where = self.gibberish_classifier
            require(
                "://" not in where and Path(where).is_absolute(),
                "gibberish_classifier",
                f"must be an absolute local path (every worker reads it), got {where!r}",
            )
            require(
                (Path(where) / "config.json").is_file(),
                "gibberish_classifier",
                f"{where} is not a local model directory (no config.json)",
            )
        for key in ("knowmem_max_new_tokens", "verbmem_max_new_tokens"):
            require(getattr(self, key) >= 1, key, f"must be >= 1, got {getattr(self, key)}")
        require(all(self.knowmem_stop), "knowmem_stop", "holds an empty stop string")
        if self.utility_splits is not None:
            require(
                self.forget_split not in self.utility_splits,
                "utility_splits",
                f"must not include the forget split {self.forget_split!r}",
            )
