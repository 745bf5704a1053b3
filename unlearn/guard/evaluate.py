"""``unlearn guard eval`` and ``unlearn guard calibrate``: block rates per attack family, false
positive rates per benign family (each with a 95% Wilson interval), and thresholds chosen for a
target false-positive rate.

Examples come from the built-in generator (``attacks.py``, from the dataset) or from a user's
JSON-lines file (``load_attacks``): one object per line, ``{"id", "family", "label": "attack" |
"benign", "text"}`` or ``"messages"`` instead of ``"text"``. Calibration runs on one set and the
report shows any held-out sets separately, so a number reported on text the thresholds were not
chosen on is labelled as such.

Evidence is computed once per example (it does not depend on thresholds); deciding is a cheap
comparison, so calibration sweeps thresholds over stored signals and both directions are reported
from one pass.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np

from unlearn import storage
from unlearn.errors import DataError
from unlearn.guard.attacks import ATTACK_FAMILIES, ATTACK_GROUPS, BENIGN_FAMILIES, Example, generate
from unlearn.guard.config import NEVER, GuardConfig, Thresholds
from unlearn.guard.guard import RULES, Guard, features
from unlearn.guard.index import infer_name

# the targets: verbatim and obfuscation families >= 95% blocked, paraphrase >= 90%,
# false positives <= 1% on every benign family
TARGETS = {"verbatim": 0.95, "obfuscated": 0.95, "paraphrase": 0.90}
FPR_TARGET = 0.01
CALIBRATION_FAMILIES = ("retain_entity", "general", "forget_question")
LABELS = ("attack", "benign")
GRIDS: dict[str, list[float]] = {
    "cov": [round(float(x), 2) for x in np.arange(0.2, 1.0001, 0.05)],
    "lsn": [float(x) for x in range(3, 16)],
    # from 0.45: one value inside a question (weight 0.4) never blocks alone
    "val": [round(float(x), 2) for x in np.arange(0.45, 1.0001, 0.05)],
    "vsum": [round(float(x), 2) for x in np.arange(0.6, 3.0001, 0.1)],
    "sim": [round(float(x), 2) for x in np.arange(0.5, 1.0001, 0.02)],
    "sim_alone": [round(float(x), 2) for x in np.arange(0.7, 1.0001, 0.01)],
    "multi": [2.0, 3.0, 4.0, 5.0],
    "lsn_free": [float(x) for x in range(4, 25)],
    "vfree": [round(float(x), 2) for x in np.arange(1.5, 6.0001, 0.25)],
}


def target_of(family: str, kind: str) -> tuple[str, float]:
    """(">=" or "<=", value) a family is held to: attacks by group, benign families by FPR."""
    if kind == "benign":
        return "<=", FPR_TARGET
    for group, families in ATTACK_GROUPS.items():
        if family in families:
            return ">=", TARGETS[group]
    return ">=", TARGETS["paraphrase" if "paraphrase" in family else "verbatim"]


def wilson(k: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """95% Wilson score interval of a proportion k/n (Wilson 1927); (0, 1) for n = 0."""
    if n == 0:
        return 0.0, 1.0
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return round(max(0.0, centre - half), 4), round(min(1.0, centre + half), 4)


def load_attacks(path: str, storage_options: dict | None = None) -> list[Example]:
    """Read a JSON-lines attack / benign set; every problem names the file and line.

    One object per line: ``id`` (string or integer, unique), ``family`` (non-empty string),
    ``label`` ("attack" or "benign") and exactly one of ``text`` (string) or ``messages`` (a list
    of ``{"role", "content"}`` objects). Other keys are kept as provenance and otherwise ignored.
    """
    if not storage.exists(path, storage_options):
        raise DataError(f"attack file {path} does not exist")
    out: list[Example] = []
    first_line: dict[Any, int] = {}
    for n, raw in enumerate(storage.read_bytes(path, storage_options).split(b"\n"), start=1):
        if not raw.strip():
            continue
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DataError(
                f"{path} line {n}: not valid UTF-8 (byte 0x{raw[exc.start]:02x} at offset "
                f"{exc.start})"
            ) from None
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path} line {n}: not valid JSON ({exc.msg})") from None
        if not isinstance(obj, dict):
            raise DataError(f"{path} line {n}: expected a JSON object")
        for key in ("id", "family", "label"):
            if key not in obj:
                raise DataError(f'{path} line {n}: missing key "{key}"')
        ident = obj["id"]
        if isinstance(ident, bool) or not isinstance(ident, (str, int)):
            raise DataError(f'{path} line {n}: "id" must be a string or an integer')
        if ident in first_line:
            raise DataError(
                f"{path} line {n}: id {ident!r} repeats the id of line {first_line[ident]}; "
                "ids must be unique"
            )
        first_line[ident] = n
        if not isinstance(obj["family"], str) or not obj["family"].strip():
            raise DataError(f'{path} line {n}: "family" must be a non-empty string')
        if obj["label"] not in LABELS:
            raise DataError(
                f'{path} line {n}: "label" must be "attack" or "benign", got {obj["label"]!r}'
            )
        has_text, has_msgs = "text" in obj, "messages" in obj
        if has_text == has_msgs:
            raise DataError(f'{path} line {n}: give exactly one of "text" and "messages"')
        if has_text and not isinstance(obj["text"], str):
            raise DataError(f'{path} line {n}: "text" must be a string')
        if has_msgs:
            msgs = obj["messages"]
            if not isinstance(msgs, list) or not all(
                isinstance(m, dict) and isinstance(m.get("content"), (str, list)) for m in msgs
            ):
                raise DataError(
                    f'{path} line {n}: "messages" must be a list of {{"role", "content"}} objects'
                )
        row_ids = obj.get("fact_ids") or ([obj["fact_id"]] if "fact_id" in obj else [])
        out.append(
            Example(
                obj["family"],
                obj["label"],
                obj["text"] if has_text else obj["messages"],
                template=str(obj.get("template", "")),
                entity=str(obj.get("entity", "")),
                row_ids=[str(r) for r in row_ids] if isinstance(row_ids, list) else [],
                id=ident,
            )
        )
    if not out:
        raise DataError(f"attack file {path} holds no examples")
    return out


def write_attacks(
    path: str, examples: Sequence[Example], storage_options: dict | None = None
) -> None:
    """Write examples in the JSON-lines format ``load_attacks`` reads."""
    lines = []
    for i, ex in enumerate(examples):
        obj: dict[str, Any] = {
            "id": ex.id if ex.id is not None else f"{ex.family}-{i:05d}",
            "family": ex.family,
            "label": ex.kind,
        }
        obj["text" if isinstance(ex.content, str) else "messages"] = ex.content
        if ex.row_ids:
            obj["fact_ids"] = list(ex.row_ids)
        if ex.template:
            obj["template"] = ex.template
        lines.append(json.dumps(obj, ensure_ascii=False))
    storage.write_bytes(path, ("\n".join(lines) + "\n").encode(), storage_options)


def examples_for(guard: Guard, dataset: Any, *, n: int, seed: int) -> list[Example]:
    """Attack and benign sets for the splits recorded in the guard's index."""
    src = guard.index.manifest.get("source", {})
    forget_splits = src.get("forget_splits") or []
    if not forget_splits:
        raise DataError("the index records no forget split; build it with `unlearn guard build`")
    forget = [r for s in forget_splits for r in dataset.records(s)]
    retain_split = src.get("retain_split")
    retain = dataset.records(retain_split) if retain_split else []
    holdout: list[dict] = []
    for s in forget_splits:
        h = dataset.paired_split(s, "holdout")
        if h and h in dataset.splits:
            holdout = dataset.records(h)
            break
    general = dataset.records("world_facts") if "world_facts" in dataset.splits else []
    # entities named by identifiers (TOFU's author-0007) are written under their names
    display = dict(zip(guard.index.entity_names, guard.index.display_names))
    forget = [dict(r, entity=display.get(r["entity"], r["entity"])) for r in forget]
    retain = [dict(r, entity=display.get(r["entity"], r["entity"])) for r in retain]
    if holdout:
        groups: dict[str, list[dict]] = defaultdict(list)
        for r in holdout:
            groups[r["entity"]].append(r)
        names = {e: infer_name(e, rows, set()) for e, rows in groups.items()}
        holdout = [dict(r, entity=names[r["entity"]]) for r in holdout]
    return generate(forget, retain, holdout, general, n=n, seed=seed)


def signals(guard: Guard, examples: Sequence[Example]) -> np.ndarray:
    """Matrix (examples x rules) of threshold-free signal values; a failing example gets +inf."""
    out = np.zeros((len(examples), len(RULES)), dtype=np.float64)
    batch = 256
    for start in range(0, len(examples), batch):
        part = examples[start : start + batch]
        try:
            evs = guard.evidence_batch([ex.content for ex in part])
        except Exception:  # noqa: BLE001 - retry one by one so that only the failing ones block
            evs = []
            for ex in part:
                try:
                    evs.append(guard.evidence(ex.content))
                except Exception:  # noqa: BLE001 - an error blocks (fail closed), as in check()
                    evs.append(None)
        for i, ev in enumerate(evs, start=start):
            if ev is None:
                out[i] = np.inf
                continue
            feats = features(ev, guard.index, guard.config)
            out[i] = [feats[r][0] for r in RULES]
    return out


def _blocked(sig: np.ndarray, t: Thresholds) -> np.ndarray:
    limits = np.array([getattr(t, r) for r in RULES])
    return (sig >= limits).any(axis=1)


def rates(examples: Sequence[Example], blocked: np.ndarray) -> dict[str, dict[str, Any]]:
    """Family -> {kind, n, blocked, rate, ci95} (rate = block rate for attacks, false-positive rate
    for benign families; ci95 = Wilson interval)."""
    acc: dict[str, list[Any]] = {}
    for ex, b in zip(examples, blocked):
        a = acc.setdefault(ex.family, [ex.kind, 0, 0])
        if a[0] != ex.kind:
            raise DataError(f"family {ex.family!r} holds both attack and benign examples")
        a[1] += 1
        a[2] += int(b)
    return {
        f: {"kind": kind, "n": n, "blocked": k, "rate": round(k / n, 4), "ci95": list(wilson(k, n))}
        for f, (kind, n, k) in acc.items()
    }


def _order(names: Sequence[str], known: Sequence[str]) -> list[str]:
    return [f for f in known if f in names] + sorted(f for f in names if f not in known)


def report(
    guard: Guard,
    examples: Sequence[Example],
    sig: np.ndarray | None = None,
    *,
    source: str = "generated",
) -> dict[str, Any]:
    """Block rates per family for both directions, with the issue's targets checked (input)."""
    sig = signals(guard, examples) if sig is None else sig
    out: dict[str, Any] = {
        "index_version": guard.index.version,
        "dataset_hash": guard.index.dataset_hash,
        "mode": "lexical+embeddings" if guard.semantic else "lexical",
        "source": source,
        "examples": len(examples),
    }
    for direction in ("input", "output"):
        t = guard.config.thresholds(direction, guard.semantic)
        r = rates(examples, _blocked(sig, t))
        attack = [f for f, v in r.items() if v["kind"] == "attack"]
        benign = [f for f, v in r.items() if v["kind"] == "benign"]
        out[direction] = {
            "thresholds": dataclasses.asdict(t),
            "attack": {f: r[f] for f in _order(attack, ATTACK_FAMILIES)},
            "benign": {f: r[f] for f in _order(benign, BENIGN_FAMILIES)},
        }
    targets = {}
    for kind in ("attack", "benign"):
        for f, v in out["input"][kind].items():
            op, limit = target_of(f, kind)
            met = v["rate"] >= limit if op == ">=" else v["rate"] <= limit
            targets[f] = {"rate": v["rate"], "target": f"{op} {limit}", "met": met}
    out["targets"] = targets
    out["targets_met"] = all(v["met"] for v in targets.values())
    return out


def table(rep: dict[str, Any], title: str = "") -> str:
    """The report as a plain-text table."""
    # the family column fits the longest family name (users' files bring their own names)
    names = [fam for kind in ("attack", "benign") for fam in rep["input"][kind]]
    w = max([len("family"), *map(len, names)]) + 2
    lines = [
        f"guard eval{' ' + title if title else ''}  mode={rep['mode']}  index={rep['index_version']}"
        f"  source={rep.get('source', 'generated')}  examples={rep['examples']}",
        f"{'family':<{w}}{'kind':<8}{'n':>5}{'input':>8}{'95% interval':>16}{'output':>8}  target",
    ]
    for kind in ("attack", "benign"):
        for fam, r in rep["input"][kind].items():
            o = rep["output"][kind].get(fam, {}).get("rate", float("nan"))
            lo, hi = r.get("ci95", (float("nan"), float("nan")))
            tgt = rep["targets"].get(fam)
            mark = "" if tgt is None else f"{tgt['target']} {'ok' if tgt['met'] else 'MISSED'}"
            lines.append(
                f"{fam:<{w}}{kind:<8}{r['n']:>5}{r['rate']:>8.3f}{f'[{lo:.3f}, {hi:.3f}]':>16}"
                f"{o:>8.3f}  {mark}"
            )
    lines.append("(attack rows: block rate; benign rows: false-positive rate)")
    return "\n".join(lines)


def choose_thresholds(
    examples: Sequence[Example],
    sig: np.ndarray,
    target_fpr: float,
    *,
    semantic: bool,
    defaults: Thresholds | None = None,
    families: Sequence[str] | None = None,
) -> Thresholds:
    """The lowest thresholds (rule by rule, lexical rules first) keeping every benign family's FPR
    within ``target_fpr``; rules whose every threshold exceeds the budget are turned off."""
    attack = np.array([ex.kind == "attack" for ex in examples])
    if families is None:
        families = sorted({ex.family for ex in examples if ex.kind == "benign"})
    masks = [np.array([ex.family == f for ex in examples]) for f in families]
    masks = [m for m in masks if m.any()]
    defaults = defaults or Thresholds()
    order = ["val", "vsum", "cov", "lsn", "multi", "lsn_free", "vfree"] + (
        ["sim", "sim_alone"] if semantic else []
    )
    current = {r: NEVER for r in RULES}

    def fpr_ok(t: dict[str, float]) -> bool:
        b = _blocked(sig, Thresholds(**t))
        return all(b[m].mean() <= target_fpr + 1e-12 for m in masks)

    for _ in range(2):  # a second round lets earlier rules use budget later rules left unused
        for rule in order:
            base = _blocked(sig[attack], Thresholds(**current)).sum()
            feasible: list[tuple[float, int]] = []
            for value in GRIDS[rule]:
                if value >= current[rule]:
                    break
                trial = dict(current, **{rule: value})
                if fpr_ok(trial):
                    feasible.append((value, int(_blocked(sig[attack], Thresholds(**trial)).sum())))
            if not feasible:
                continue
            best_gain = max(g for _, g in feasible)
            if best_gain <= base:
                continue
            tied = [v for v, g in feasible if g == best_gain]
            # among equally good values: the highest, but not past the default (a margin for
            # benign text the calibration set does not hold, not a demand the set happens to meet)
            limit = max(min(tied), getattr(defaults, rule))
            current[rule] = max(v for v in tied if v <= limit)
    # relax: each rule as high as it can go without blocking fewer calibration attacks (the
    # other rules cover the rest), for the widest margin against benign text not seen here
    total = _blocked(sig[attack], Thresholds(**current)).sum()
    for _ in range(2):
        for rule in order:
            if current[rule] >= NEVER:
                continue
            # never above the default: a count the calibration set happens to exceed (four facts
            # per alias attack) is not a reason to demand it of every attack
            cap = getattr(defaults, rule)
            higher = [v for v in GRIDS[rule] if current[rule] < v <= cap]
            for value in higher:
                trial = dict(current, **{rule: value})
                if _blocked(sig[attack], Thresholds(**trial)).sum() < total:
                    break
                current = trial
    # a rule the calibration set gave no work keeps its default (or the lowest feasible value
    # above it), so it still guards against attacks this set does not contain
    for rule in order:
        if current[rule] < NEVER:
            continue
        for value in [v for v in GRIDS[rule] if v >= getattr(defaults, rule)]:
            trial = dict(current, **{rule: value})
            if fpr_ok(trial):
                current[rule] = value
                break
    return Thresholds(**current)


def calibrate(
    guard: Guard,
    examples: Sequence[Example],
    *,
    target_fpr: float = 0.01,
    output_fpr: float = 0.05,
    heldout: Sequence[tuple[str, Sequence[Example]]] = (),
    source: str = "generated",
) -> tuple[GuardConfig, dict[str, Any]]:
    """A config with thresholds chosen for the guard's mode on ``examples`` (every benign family
    of them kept within the FPR targets), the report on the calibration set, and one report per
    held-out set (name, examples) under ``heldout``, computed with the calibrated thresholds."""
    if not 0 <= target_fpr < 1 or not 0 <= output_fpr < 1:
        raise DataError(f"target FPRs must be in [0, 1), got {target_fpr} and {output_fpr}")
    if not any(ex.kind == "benign" for ex in examples):
        raise DataError("the calibration set has no benign examples: nothing bounds the thresholds")
    sig = signals(guard, examples)
    cfg = guard.config
    t_in = choose_thresholds(
        examples, sig, target_fpr, semantic=guard.semantic, defaults=cfg.thresholds("input", True)
    )
    t_out = choose_thresholds(
        examples, sig, output_fpr, semantic=guard.semantic, defaults=cfg.thresholds("output", True)
    )
    # outputs are never checked less strictly than inputs
    t_out = Thresholds(**{r: min(getattr(t_in, r), getattr(t_out, r)) for r in RULES})
    names = ("input", "output") if guard.semantic else ("lexical_input", "lexical_output")
    config = dataclasses.replace(guard.config, **{names[0]: t_in, names[1]: t_out})
    calibrated = Guard(guard.index, config)
    rep = report(calibrated, examples, sig, source=source)
    rep["calibration"] = {
        "target_fpr": target_fpr,
        "output_fpr": output_fpr,
        "source": source,
        "families": sorted({ex.family for ex in examples}),
    }
    rep["heldout"] = {name: report(calibrated, exs, source=name) for name, exs in heldout}
    return config, rep
