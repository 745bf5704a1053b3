"""sweep.html: one self-contained page (matplotlib PNGs embedded as base64) showing a sweep.

Sections: the objectives and counts; the Pareto front (every trial-epoch faded, each trial's
epochs joined by a faint line, the front highlighted and joined); every hyperparameter against
every objective (the front highlighted again); the table of the front with each model's path;
every trial's last epoch and status; the commands the caller gives (dashboards, how to run the
front's models).
"""

from __future__ import annotations

import html
import zlib
from collections.abc import Sequence
from typing import Any

from unlearn import storage
from unlearn.eval.metrics import METRICS
from unlearn.eval.report import STYLE, _fmt, _png, _table
from unlearn.sweep.objectives import finite

FADED = "#9aa4b1"
FRONT = "#d62728"


def _label(name: str, mode: str) -> str:
    arrow = "higher is better" if mode == "max" else "lower is better"
    return f"{name} ({arrow})"


def _log_scale(values: Sequence[float]) -> bool:
    pos = [v for v in values if v > 0]
    return len(pos) == len(values) and len(pos) > 1 and max(pos) / min(pos) > 1e3


def _front_plot(
    rows: Sequence[dict[str, Any]], front: Sequence[int], x: str, y: str, objectives: dict
) -> str:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.8))
    ax = fig.add_subplot()
    by_trial: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        by_trial.setdefault(r["trial_id"], []).append(r)
    xs_all, ys_all = [], []
    for trial_rows in by_trial.values():
        pts = [
            (r["metrics"][x], r["metrics"][y])
            for r in sorted(trial_rows, key=lambda r: r["epoch"])
            if finite(r["metrics"].get(x)) and finite(r["metrics"].get(y))
        ]
        if not pts:
            continue
        xs, ys = zip(*pts)
        xs_all += xs
        ys_all += ys
        ax.plot(xs, ys, color=FADED, alpha=0.35, lw=0.8, zorder=1)
        ax.scatter(xs, ys, color=FADED, alpha=0.45, s=18, zorder=2)
    fpts = sorted((rows[i]["metrics"][x], rows[i]["metrics"][y], i) for i in front)
    if fpts:
        ax.plot([p[0] for p in fpts], [p[1] for p in fpts], color=FRONT, lw=1.2, zorder=3)
        ax.scatter(
            [p[0] for p in fpts],
            [p[1] for p in fpts],
            color=FRONT,
            s=46,
            zorder=4,
            label="Pareto front",
        )
        for px, py, i in fpts:
            ax.annotate(
                f"{rows[i]['trial_id']}-e{rows[i]['epoch']}",
                (px, py),
                textcoords="offset points",
                xytext=(5, 4),
                fontsize=7,
            )
        ax.legend(loc="best", fontsize=8)
    if xs_all and _log_scale(xs_all):
        ax.set_xscale("log")
    if ys_all and _log_scale(ys_all):
        ax.set_yscale("log")
    ax.set_xlabel(_label(x, objectives[x]))
    ax.set_ylabel(_label(y, objectives[y]))
    ax.set_title(f"{y} vs {x}: every trial-epoch (grey), the front (red)")
    ax.grid(alpha=0.3)
    return _png(fig)


def _param_plots(
    rows: Sequence[dict[str, Any]],
    front: Sequence[int],
    params: Sequence[tuple[str, bool]],
    objectives: dict[str, str],
) -> str:
    """A grid: one row per hyperparameter, one column per objective."""
    from matplotlib.figure import Figure

    names = list(objectives)
    fig = Figure(figsize=(3.6 * len(names), 2.9 * len(params)))
    on_front = set(front)
    for pi, (key, log) in enumerate(params):
        values = [r["config"].get(key) for r in rows]
        categorical = any(isinstance(v, str | bool) for v in values if v is not None)
        cats = sorted({str(v) for v in values if v is not None}) if categorical else []
        for oi, name in enumerate(names):
            ax = fig.add_subplot(len(params), len(names), pi * len(names) + oi + 1)
            for group, color, size, alpha in (
                ([i for i in range(len(rows)) if i not in on_front], FADED, 16, 0.5),
                (sorted(on_front), FRONT, 34, 1.0),
            ):
                pts = []
                for i in group:
                    v, m = rows[i]["config"].get(key), rows[i]["metrics"].get(name)
                    if v is None or not finite(m):
                        continue
                    if categorical:
                        # spread the points of one category a little, deterministically
                        tag = f"{rows[i]['trial_id']}-{rows[i]['epoch']}".encode()
                        jitter = (zlib.crc32(tag) % 21 - 10) / 60
                        pts.append((cats.index(str(v)) + jitter, m))
                    else:
                        pts.append((float(v), m))
                if pts:
                    ax.scatter(*zip(*pts), color=color, s=size, alpha=alpha)
            if categorical:
                ax.set_xticks(range(len(cats)))
                ax.set_xticklabels(cats, fontsize=8)
            elif log:
                from matplotlib.ticker import NullFormatter

                ax.set_xscale("log")
                ax.xaxis.set_minor_formatter(NullFormatter())  # labelled decades only
            ax.set_xlabel(key, fontsize=9)
            ax.set_ylabel(name, fontsize=9)
            ax.tick_params(labelsize=8)
            ax.grid(alpha=0.3)
    fig.tight_layout()
    return _png(fig)


def render_sweep(
    rows: Sequence[dict[str, Any]],
    front: Sequence[int],
    pareto: dict[str, Any],
    *,
    params: Sequence[tuple[str, str, bool]],
    trials: Sequence[dict[str, Any]],
    title: str,
    notes: Sequence[str] = (),
    commands: dict[str, str] | None = None,
) -> str:
    """The page's HTML.

    ``params``: (config key, distribution text, log scale) per sampled hyperparameter; ``trials``:
    one dict per trial {trial_id, status, epochs, stopped_early}; ``commands``: label -> shell line.
    """
    objectives: dict[str, str] = pareto["objectives"]
    names = list(objectives)
    stopped = sum(bool(t.get("stopped_early")) for t in trials)
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        "<p>Objectives: "
        + ", ".join(f"<code>{html.escape(k)}</code> ({v})" for k, v in objectives.items())
        + f". {len(trials)} trials, {len(rows)} trial-epochs, {stopped} stopped early by ASHA; "
        f"{len(front)} on the Pareto front (non-dominated among the trial-epochs with a "
        "checkpoint).</p>",
    ]
    for n in notes:
        parts.append(f"<p class='note'>{html.escape(n)}</p>")

    parts.append("<h2>Pareto front</h2>")
    if len(names) == 1:
        parts.append("<p class='note'>One objective: the front is its best trial-epoch.</p>")
    else:
        for a in range(len(names)):
            for b in range(a + 1, len(names)):
                parts.append(_front_plot(rows, front, names[a], names[b], objectives))

    parts.append("<h2>Hyperparameters against objectives</h2>")
    if params:
        parts.append(
            "<p class='note'>Every trial-epoch; the front in red. Space: "
            + ", ".join(f"<code>{html.escape(k)}</code> {html.escape(d)}" for k, d, _ in params)
            + "</p>"
        )
        parts.append(_param_plots(rows, front, [(k, log) for k, _, log in params], objectives))

    parts.append("<h2>The front</h2>")
    keys = [k for k, _, _ in params]
    by_id = {(t["trial_id"], t["epoch"]): t for t in pareto["trials"]}
    table = []
    for i in front:
        r = rows[i]
        t = by_id.get((r["trial_id"], r["epoch"]), {})
        table.append(
            [html.escape(str(r["trial_id"])), str(r["epoch"])]
            + [_fmt(r["config"].get(k)) for k in keys]
            + [_fmt(r["metrics"].get(n)) for n in names]
            + [f"<code>{html.escape(str(t.get('model_path') or ''))}</code>"]
        )
    parts.append(_table(["trial", "epoch", *map(html.escape, keys), *names, "model"], table, 2))

    parts.append("<h2>Trials</h2>")
    last = {}
    for r in rows:
        if r["trial_id"] not in last or r["epoch"] > last[r["trial_id"]]["epoch"]:
            last[r["trial_id"]] = r
    table = []
    for t in trials:
        r = last.get(t["trial_id"])
        table.append(
            [html.escape(str(t["trial_id"])), html.escape(str(t.get("status", "")))]
            + ["yes" if t.get("stopped_early") else "", str(r["epoch"] if r else 0)]
            + [_fmt(r["config"].get(k)) if r else "" for k in keys]
            + [_fmt(r["metrics"].get(n)) if r else "" for n in names]
        )
    parts.append(
        _table(
            ["trial", "status", "stopped early", "epochs", *map(html.escape, keys), *names],
            table,
            3,
        )
    )
    if commands:
        parts.append("<h2>Commands</h2><ul>")
        for label, line in commands.items():
            parts.append(f"<li>{html.escape(label)}: <code>{html.escape(line)}</code></li>")
        parts.append("</ul>")
    parts.append("<h2>What good looks like</h2><dl>")
    for n in names:
        base = n.split(".")[-1] if n not in METRICS else n
        metric = METRICS.get(base) or METRICS.get(n.removeprefix("abs_"))
        if metric is not None:
            parts.append(f"<dt>{html.escape(n)}</dt><dd>{html.escape(metric.good)}</dd>")
    parts.append("</dl></body></html>")
    return "\n".join(parts)


def write_sweep_report(path: str, storage_options: dict | None = None, **kwargs: Any) -> str:
    """Write sweep.html (``render_sweep``'s arguments); returns the path."""
    text = render_sweep(**kwargs)
    storage.write_bytes(path, text.encode("utf-8"), storage_options)
    return path
