"""The Pareto front of a sweep: the trial-epochs no other trial-epoch beats on every objective.

Row ``b`` dominates row ``a`` when ``b`` is at least as good as ``a`` on every objective and
strictly better on one ("good" is larger for ``max`` objectives, smaller for ``min``). The front is
the set of candidate rows no candidate dominates; rows equal on every objective are all kept.
Candidates are the rows with a checkpoint (a model can be exported from them) and a finite value
for every objective.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from unlearn.sweep.objectives import finite


def dominates(b: dict[str, float], a: dict[str, float], objectives: dict[str, str]) -> bool:
    """Whether metrics ``b`` dominate metrics ``a`` under ``objectives`` ({name: "max"|"min"})."""
    better = False
    for name, mode in objectives.items():
        x, y = (b[name], a[name]) if mode == "max" else (a[name], b[name])
        if x < y:
            return False
        better = better or x > y
    return better


def candidates(rows: Sequence[dict[str, Any]], objectives: dict[str, str]) -> list[int]:
    """Indices of the rows that may be on the front: a checkpoint, every objective finite."""
    return [
        i
        for i, r in enumerate(rows)
        if r.get("checkpoint") and all(finite(r["metrics"].get(k)) for k in objectives)
    ]


def pareto_front(rows: Sequence[dict[str, Any]], objectives: dict[str, str]) -> list[int]:
    """Indices (in row order) of the non-dominated candidate rows. O(n^2): sweeps are small."""
    if not objectives:
        raise ValueError("pareto_front needs at least one objective")
    idx = candidates(rows, objectives)
    return [
        i
        for i in idx
        if not any(dominates(rows[j]["metrics"], rows[i]["metrics"], objectives) for j in idx)
    ]
