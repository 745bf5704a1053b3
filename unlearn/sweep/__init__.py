"""Hyperparameter sweeps over unlearning runs, the parts that need no cluster.

``space`` (the search space, checked against the methods' configs), ``objectives`` (what the
in-training evaluation produces and what a sweep optimizes), ``pareto`` (the non-dominated
trial-epochs), ``results`` (trials.parquet, pareto.json), ``report`` (sweep.html) and ``export``
(a servable model from any epoch's checkpoint). The cluster shell drives the trials.
"""

from unlearn.sweep.objectives import (
    DEFAULT_OBJECTIVES,
    NO_RETAIN_OBJECTIVES,
    derive,
    produced_numbers,
    resolve_objectives,
)
from unlearn.sweep.pareto import dominates, pareto_front
from unlearn.sweep.results import (
    HTML_FILE,
    PARETO_FILE,
    TRIALS_FILE,
    model_id,
    pareto_document,
    read_trials,
    write_pareto,
    write_trials,
)
from unlearn.sweep.space import SearchSpace

__all__ = [
    "DEFAULT_OBJECTIVES",
    "HTML_FILE",
    "NO_RETAIN_OBJECTIVES",
    "PARETO_FILE",
    "TRIALS_FILE",
    "SearchSpace",
    "derive",
    "dominates",
    "model_id",
    "pareto_document",
    "pareto_front",
    "produced_numbers",
    "read_trials",
    "resolve_objectives",
    "write_pareto",
    "write_trials",
]
