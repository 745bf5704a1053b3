"""Sweep unlearning runs with Ray Tune: multi-objective Optuna search, ASHA early stopping, resume,
Pareto front, servable front models.

    unlearn sweep --config examples/sweep_tiny.yaml [key=value ...]
    unlearn sweep --resume runs/sweep-demo          # after an interrupted sweep (driver killed)
    ray job submit --working-dir . -- python -m jobs.sweep --config sweep.yaml out=s3://b/sweeps/x

Each trial is one Ray Train run through the same engine as ``unlearn run`` (the trial function
builds and fits a ``TorchTrainer``; metrics reach Tune through ``TuneReportCallback``), evaluated
after every epoch. Everything is checked before the first trial starts: the space against the
methods' configs, the objectives against what the evaluation produces, the resources against the
cluster. Output in ``out`` (local or s3://): ``trials/<trial_id>/`` (each trial's run dir),
``tune/`` (Tune's experiment, what ``--resume`` restores), ``trials.parquet``, ``pareto/<model
id>/`` (the front's models), ``sweep.html`` and ``pareto.json`` (written last: a sweep is finished
when it exists). See the README's Sweeps section and docs/architecture.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from ray.tune.schedulers import ASHAScheduler

from jobs.common import RaySession, absolute_paths
from unlearn import storage
from unlearn.config import load_config, require, to_dict
from unlearn.data import Dataset
from unlearn.engine.config import RunConfig
from unlearn.errors import ConfigError, DataError, OutputExistsError, run_command
from unlearn.methods import build_method
from unlearn.sweep import results
from unlearn.sweep.objectives import check_metric, derive, produced_numbers, resolve_objectives
from unlearn.sweep.pareto import pareto_front
from unlearn.sweep.space import SearchSpace

CONFIG_FILE = "sweep.yaml"
TUNE_DIR = "tune"
ASHA_STATE = "asha_rungs.json"
# keys Tune adds to every result (not the run's numbers)
TUNE_KEYS = {
    "timestamp", "checkpoint_dir_name", "done", "training_iteration", "trial_id", "date",
    "time_this_iter_s", "time_total_s", "pid", "hostname", "node_ip", "config",
    "time_since_restore", "iterations_since_restore", "checkpoint_path", "should_checkpoint",
    "experiment_tag",
}  # fmt: skip
# What ``--overwrite`` may replace: a sweep's output directory (sweep.yaml, written first, marks it).
KIND = storage.OutputKind(
    "sweep",
    (CONFIG_FILE,),
    (
        CONFIG_FILE,
        TUNE_DIR,
        ASHA_STATE,
        "trials",
        "guard",
        "pareto",
        results.TRIALS_FILE,
        results.PARETO_FILE,
        results.HTML_FILE,
    ),
)


@dataclass
class SearchConfig:
    """How trials are proposed: Optuna through Ray Tune."""

    # nsga2: NSGA-II (multi-objective genetic); motpe: multi-objective TPE; random
    algorithm: Literal["nsga2", "motpe", "random"] = "nsga2"
    num_samples: int = 8  # trials in all (points below included)
    seed: int = 0
    # NSGA-II generation size (default: half the trials, at least 2); the first generation is random
    population_size: int | None = None
    # known configurations evaluated first (mappings of space keys), e.g. a method's defaults
    points: list[dict[str, Any]] = field(default_factory=list)

    def check(self) -> None:
        """Positive sizes."""
        require(self.num_samples >= 1, "num_samples", f"must be >= 1, got {self.num_samples}")
        require(
            self.population_size is None or self.population_size >= 2,
            "population_size",
            f"must be >= 2, got {self.population_size}",
        )
        require(
            len(self.points) <= self.num_samples,
            "points",
            f"{len(self.points)} points but num_samples is {self.num_samples}",
        )


@dataclass
class AshaConfig:
    """Early stopping (ASHA) on one scalar, the epoch as its clock."""

    enabled: bool = True
    # The evaluation's best-checkpoint score by default: harmonic mean of forget quality and model
    # utility (eval.score), the forget truth ratio standing in without a retain model.
    metric: str = "score"
    mode: Literal["max", "min"] = "max"
    grace_period: int = 1  # epochs every trial runs before it can be stopped
    reduction_factor: float = 2.0  # keep the best 1/rf of the trials at each rung

    def check(self) -> None:
        """ASHA's own constraints."""
        require(self.grace_period >= 1, "grace_period", f"must be >= 1, got {self.grace_period}")
        require(
            self.reduction_factor > 1,
            "reduction_factor",
            f"must be > 1, got {self.reduction_factor}",
        )


@dataclass
class ResourcesConfig:
    """What a trial holds besides its training workers (``run.scaling``)."""

    # the trial function only drives a trainer: a sliver of a CPU ({"CPU": 0} is refused by Tune)
    trial_cpus: float = 0.01
    # trials at once; default: as many as the cluster holds (never more: they would wait on each
    # other's placement groups)
    max_concurrent_trials: int | None = None

    def check(self) -> None:
        """Positive values."""
        require(self.trial_cpus > 0, "trial_cpus", f"must be > 0, got {self.trial_cpus}")
        require(
            self.max_concurrent_trials is None or self.max_concurrent_trials >= 1,
            "max_concurrent_trials",
            f"must be >= 1, got {self.max_concurrent_trials}",
        )


@dataclass
class TrackingConfig:
    """Dashboards: TensorBoard event files per trial; MLflow when a tracking URI is given."""

    tensorboard: bool = True
    mlflow_tracking_uri: str | None = None  # needs the mlflow extra: pip install 'unlearn[mlflow]'
    mlflow_experiment: str = "unlearn-sweep"


@dataclass
class GuardSpec:
    """The guard index the front's models are served with (``unlearn serve --guard``)."""

    build: bool = True  # compile one from the forget split into OUT/guard
    index: str | None = None  # or use this existing index
    embeddings: Literal["auto", "on", "off"] = "off"


@dataclass
class SweepConfig:
    """A sweep (examples/sweep_tiny.yaml): the base run, the space, objectives, search, ASHA."""

    out: str = ""
    # the base run config, sections as for `unlearn run` (output.dir is set per trial)
    run: dict[str, Any] = field(default_factory=dict)
    space: dict[str, Any] = field(default_factory=dict)
    # {metric: max|min}; default forget_quality and model_utility (max), see unlearn.sweep.objectives
    objectives: dict[str, str] = field(default_factory=dict)
    search: SearchConfig = field(default_factory=SearchConfig)
    asha: AshaConfig = field(default_factory=AshaConfig)
    resources: ResourcesConfig = field(default_factory=ResourcesConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    guard: GuardSpec = field(default_factory=GuardSpec)
    # training checkpoints each trial keeps (Pareto candidates are epochs with one); null = all
    keep_checkpoints: int | None = None
    export_models: bool = True  # export the front's models as servable HF dirs
    overwrite: bool = False
    storage_options: dict[str, Any] | None = None  # s3fs options for out

    def check(self) -> None:
        """An output dir and a run section."""
        require(bool(self.out), "out", "is required (the sweep's directory, local or s3://)")
        require(bool(self.run), "run", "is required (the base run config)")
        require(
            self.keep_checkpoints is None or self.keep_checkpoints >= 1,
            "keep_checkpoints",
            f"must be >= 1 or null, got {self.keep_checkpoints}",
        )


@dataclass
class Plan:
    """A checked sweep: everything the driver and the trials need, built before Ray starts."""

    cfg: SweepConfig
    space: SearchSpace
    objectives: dict[str, str]
    required: tuple[str, ...]  # metrics every report must carry (Tune's strict checking)
    max_epochs: int
    notes: list[str]
    points: list[dict[str, Any]]


# ---------------------------------------------------------------------------------------------
# Checking (no Ray)


def base_run(cfg: SweepConfig) -> dict[str, Any]:
    """The base run config with what a sweep sets itself (output, per-epoch eval)."""
    run = resolve_paths(cfg.run)
    output = run.get("output") or {}
    if "dir" in output:
        raise ConfigError("run.output.dir: the sweep sets it (OUT/trials/<trial id>)")
    if output.get("checkpoint_every", 1) != 1:
        raise ConfigError(
            "run.output.checkpoint_every: a sweep reports and checkpoints every epoch"
        )
    run["output"] = {
        **output,
        "dir": storage.join(cfg.out, "trials", "_check"),
        "checkpoint_every": 1,
        "storage_options": output.get("storage_options", cfg.storage_options),
    }
    ev = run.get("eval")
    ev = {} if ev is None else ev
    if ev.get("every_n_epochs", 1) != 1:
        raise ConfigError("run.eval.every_n_epochs: a sweep evaluates every epoch (1)")
    run["eval"] = {**ev, "every_n_epochs": 1}
    return run


def resolve_paths(run: dict[str, Any]) -> dict[str, Any]:
    """A copy of the run section with local data / model paths made absolute (on the driver:
    Tune runs each trial in a directory of its own)."""
    run = json.loads(json.dumps(run))  # a deep copy of plain YAML data
    for section, key in (("data", "path"), ("model", "path"), ("model", "retain_model")):
        value = (run.get(section) or {}).get(key)
        if isinstance(value, str) and value and not storage.is_remote(value):
            run[section][key] = str(Path(value).resolve())
    return run


def trial_config(plan: Plan, point: dict[str, Any], trial_id: str) -> RunConfig:
    """A trial's run config: the base, the point's values, its own run dir."""
    from unlearn.config import build

    raw = plan.space.raw_config(point)
    raw["output"] = {
        **raw["output"],
        "dir": storage.join(plan.cfg.out, "trials", trial_id),
        "keep_checkpoints": plan.cfg.keep_checkpoints or plan.max_epochs,
    }
    return absolute_paths(build(RunConfig, raw))


def make_plan(cfg: SweepConfig) -> Plan:
    """Check the whole sweep against the methods, the dataset and the evaluation (no Ray)."""
    space = SearchSpace(cfg.space, base_run(cfg))
    notes: list[str] = []
    produced: dict[str, str | None] = {}
    for method in space.methods:
        run = space.run_config(space.first_point(method))
        m = build_method(run.method)
        if method == "finetune":
            raise ConfigError("space.method: finetune is not an unlearning method")
        if m.one_shot:
            raise ConfigError(
                f"space.method: {method} edits the weights once (no epochs to evaluate or stop); "
                "run it with `unlearn run`"
            )
        for path, what in (
            (run.model.path, "run.model.path"),
            (run.model.retain_model, "run.model.retain_model"),
        ):
            if path and not storage.exists(
                storage.join(path, "config.json"), run.model.storage_options
            ):
                raise DataError(f"{what}: {path} holds no model (config.json)")
        dataset = Dataset(run.data.path, run.data.storage_options)
        for name, why in produced_numbers(run, dataset).items():
            produced[name] = produced.get(name) or why
        has_retain = run.model.retain_model is not None
    objectives, note = resolve_objectives(cfg.objectives or None, produced, has_retain)
    if note:
        notes.append(note)
    required = list(objectives)
    if cfg.asha.enabled:
        check_metric(cfg.asha.metric, cfg.asha.mode, produced, "asha.metric")
        required.append(cfg.asha.metric)
    points = [space.check_point(p, f"search.points[{i}]") for i, p in enumerate(cfg.search.points)]
    if cfg.tracking.mlflow_tracking_uri and importlib.util.find_spec("mlflow") is None:
        raise ConfigError(
            "tracking.mlflow_tracking_uri is set but mlflow is not installed "
            "(pip install 'unlearn[mlflow]')"
        )
    if cfg.guard.index is not None and not storage.exists(
        storage.join(cfg.guard.index, "manifest.json"), cfg.storage_options
    ):
        raise DataError(f"guard.index: {cfg.guard.index} is not a guard index (no manifest.json)")
    return Plan(
        cfg=cfg,
        space=space,
        objectives=objectives,
        required=tuple(dict.fromkeys(required)),
        max_epochs=space.max_epochs(),
        notes=notes,
        points=points,
    )


def trial_resources(plan: Plan) -> dict[str, float]:
    """What one trial holds: its own sliver plus its training workers."""
    run = plan.space.run_config(plan.space.first_point(plan.space.methods[0]))
    s = run.scaling
    out = {"CPU": plan.cfg.resources.trial_cpus + s.num_workers * s.cpus_per_worker}
    if s.use_gpu:
        out["GPU"] = float(s.num_workers)
    return out


def check_resources(plan: Plan, cluster: dict[str, float]) -> int:
    """Refuse a trial larger than the cluster; return how many trials run at once."""
    need = trial_resources(plan)
    fit = math.inf
    for key, amount in need.items():
        have = float(cluster.get(key, 0.0))
        if amount > have + 1e-9:
            raise ConfigError(
                f"a trial needs {amount:g} {key} (resources.trial_cpus + run.scaling.num_workers x "
                f"cpus_per_worker{' / GPUs' if key == 'GPU' else ''}) but the cluster has {have:g}: "
                "lower run.scaling or add nodes"
            )
        fit = min(fit, math.floor(have / amount + 1e-9))
    wanted = plan.cfg.resources.max_concurrent_trials
    if wanted is not None and wanted > fit:
        raise ConfigError(
            f"resources.max_concurrent_trials={wanted}: only {int(fit)} trials of {need} fit in "
            f"the cluster ({cluster.get('CPU', 0):g} CPUs); more would wait on each other's "
            "placement groups"
        )
    return int(min(wanted or fit, plan.cfg.search.num_samples))


# ---------------------------------------------------------------------------------------------
# The trials (run inside Ray)


class SweepSession(RaySession):
    """The engine's Session in a trial's workers: each epoch's report gains the derived numbers,
    a NaN for any required metric the evaluation left null (Tune's strict metric checking), and
    counts epochs from 1 (``epoch`` = epochs completed: ASHA's clock)."""

    def __init__(self, board: Any = None, required: tuple[str, ...] = ()):
        super().__init__(board)
        self.required = tuple(required)

    def report(self, metrics: dict[str, Any], checkpoint_dir: Path | None = None) -> None:
        """Report through Ray Train (TuneReportCallback forwards rank 0's metrics to Tune)."""
        # eval_epoch / at_step repeat epoch and step (0-based epoch: dropped, to keep one count)
        out = {k: v for k, v in derive(metrics).items() if k not in ("eval_epoch", "at_step")}
        for k in self.required:
            if not isinstance(out.get(k), int | float):
                out[k] = float("nan")
        out["epoch"] = int(metrics["epoch"]) + 1
        super().report(out, checkpoint_dir)


def run_trial(config: dict[str, Any], plan: Plan) -> None:
    """Tune's trainable: one unlearning run on Ray Train, reporting to Tune every epoch."""
    from ray import tune
    from ray.tune.integration.ray_train import TuneReportCallback

    from jobs.common import TensorBoardCallback, make_trainer, prepare_run
    from unlearn.engine import run_dir

    trial_id = tune.get_context().get_trial_id()
    cfg = trial_config(plan, dict(config), trial_id)
    run_file = run_dir.path(cfg, run_dir.RUN_FILE)
    opts = cfg.output.storage_options
    if (
        storage.exists(run_file, opts)
        and run_dir.read_json(run_file, opts).get("status") == "finished"
    ):
        return  # finished just before an interruption: every epoch was reported already
    prepare_run(cfg)  # a restarted trial resumes from its last checkpoint
    callbacks: list[Any] = []
    if plan.cfg.tracking.tensorboard:
        # first: once Tune has the report, ASHA may stop the trial before later callbacks run
        logdir = storage.join(cfg.output.dir, "tensorboard")
        callbacks.append(TensorBoardCallback(logdir, cfg.output.storage_options, epoch_offset=0))
    callbacks.append(TuneReportCallback())
    trainer = make_trainer(
        cfg,
        callbacks=callbacks,
        session=SweepSession,
        session_args={"required": plan.required},
        tensorboard=False,
    )
    trainer.fit()


# ---------------------------------------------------------------------------------------------
# The driver


def tune_storage(out: str, storage_options: dict | None) -> tuple[str, Any]:
    """Tune's storage (path, pyarrow filesystem) for the sweep dir; s3:// through s3fs."""
    if not storage.is_remote(out):
        return str(Path(out).resolve()), None
    import pyarrow.fs

    fs, inner = storage.filesystem(out, storage_options)
    return inner, pyarrow.fs.PyFileSystem(pyarrow.fs.FSSpecHandler(fs))


def make_sampler(cfg: SearchConfig) -> Any:
    """The Optuna sampler the config names."""
    import optuna

    if cfg.algorithm == "nsga2":
        size = cfg.population_size or max(2, min(50, cfg.num_samples // 2))
        return optuna.samplers.NSGAIISampler(population_size=size, seed=cfg.seed)
    if cfg.algorithm == "motpe":
        return optuna.samplers.TPESampler(
            seed=cfg.seed, multivariate=True, group=True, constant_liar=True
        )
    return optuna.samplers.RandomSampler(seed=cfg.seed)


def trainable(plan: Plan) -> Any:
    """The wrapped trial function (the same one ``Tuner.restore`` needs)."""
    from ray import tune

    return tune.with_resources(
        tune.with_parameters(run_trial, plan=plan), {"CPU": plan.cfg.resources.trial_cpus}
    )


class PersistentASHA(ASHAScheduler):
    """ASHA whose rungs (each rung's recorded trial scores) survive ``--resume``: Tune checkpoints
    the searcher but not the scheduler, so a restored sweep would start with empty rungs and no
    trial could be stopped against the ones that finished before the interruption. The rungs are
    written to ``OUT/asha_rungs.json`` after every decision and read back on first use."""

    def __init__(self, *args: Any, state_path: str, storage_options: dict | None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._state_path = state_path
        self._state_options = storage_options
        self._loaded = False

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        if not storage.exists(self._state_path, self._state_options):
            return
        saved = json.loads(storage.read_bytes(self._state_path, self._state_options))
        for bracket, rungs in zip(self._brackets, saved["brackets"]):
            by_milestone = {float(m): rec for m, rec in rungs}
            for milestone, recorded in bracket._rungs:
                recorded.update(by_milestone.get(float(milestone), {}))

    def _save(self) -> None:
        state = {"brackets": [[[m, rec] for m, rec in b._rungs] for b in self._brackets]}
        storage.write_bytes(self._state_path, json.dumps(state).encode(), self._state_options)

    def on_trial_add(self, tune_controller: Any, trial: Any) -> None:
        """Assign a bracket (restored trials too)."""
        self._load()
        super().on_trial_add(tune_controller, trial)

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        """ASHA's decision, then the rungs are saved."""
        self._load()
        if trial.trial_id not in self._trial_info:  # restored without on_trial_add
            super().on_trial_add(tune_controller, trial)
        action = super().on_trial_result(tune_controller, trial, result)
        self._save()
        return action

    def on_trial_complete(self, tune_controller: Any, trial: Any, result: dict) -> None:
        """Record the final result, then save."""
        self._load()
        if trial.trial_id not in self._trial_info:
            return
        super().on_trial_complete(tune_controller, trial, result)
        self._save()

    def on_trial_remove(self, tune_controller: Any, trial: Any) -> None:
        """Forget the trial's bracket (tolerates trials restored without one)."""
        self._trial_info.pop(trial.trial_id, None)


def make_tuner(plan: Plan, concurrent: int) -> Any:
    """The Tuner: Optuna (multi-objective) proposes, ASHA stops, Tune runs ``run_trial``."""
    from ray import tune
    from ray.tune.schedulers import FIFOScheduler
    from ray.tune.search.optuna import OptunaSearch

    cfg = plan.cfg
    searcher = OptunaSearch(
        space=plan.space,  # define-by-run: method first, then its parameters
        metric=list(plan.objectives),
        mode=list(plan.objectives.values()),
        sampler=make_sampler(cfg.search),
        points_to_evaluate=plan.points or None,
    )
    if cfg.asha.enabled:
        scheduler: Any = PersistentASHA(
            state_path=storage.join(cfg.out, ASHA_STATE),
            storage_options=cfg.storage_options,
            time_attr="epoch",  # epochs completed (a restored trial continues its count)
            metric=cfg.asha.metric,
            mode=cfg.asha.mode,
            max_t=plan.max_epochs,
            grace_period=min(cfg.asha.grace_period, plan.max_epochs),
            reduction_factor=cfg.asha.reduction_factor,
        )
    else:
        scheduler = FIFOScheduler()
    return tune.Tuner(
        trainable(plan),
        tune_config=tune.TuneConfig(
            search_alg=searcher,
            scheduler=scheduler,
            num_samples=cfg.search.num_samples,
            max_concurrent_trials=concurrent,
        ),
        run_config=run_config(plan),
    )


def run_config(plan: Plan) -> Any:
    """Tune's RunConfig: the sweep dir's ``tune/``, MLflow when configured."""
    from ray import tune

    path, fs = tune_storage(plan.cfg.out, plan.cfg.storage_options)
    callbacks = []
    if plan.cfg.tracking.mlflow_tracking_uri:
        from ray.air.integrations.mlflow import MLflowLoggerCallback

        callbacks.append(
            MLflowLoggerCallback(
                tracking_uri=plan.cfg.tracking.mlflow_tracking_uri,
                experiment_name=plan.cfg.tracking.mlflow_experiment,
                save_artifact=False,
            )
        )
    return tune.RunConfig(
        name=TUNE_DIR,
        storage_path=path,
        storage_filesystem=fs,
        callbacks=callbacks,
        failure_config=tune.FailureConfig(max_failures=0),  # Train retries workers itself
        verbose=1,
    )


def checkpoint_url(path: str | None, out: str) -> str | None:
    """A reported checkpoint path as a URL the sweep's storage reads (s3:// restored)."""
    if not path:
        return None
    return f"s3://{path.lstrip('/')}" if storage.is_remote(out) else path


def collect_rows(grid: Any, plan: Plan) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(rows, trials) from the Tune results: one row per trial and epoch (the last report of an
    epoch wins: a resumed trial may report an epoch twice), and one status per trial."""
    opts = plan.cfg.storage_options
    keys = [p.name for p in plan.space.params]
    rows: list[dict[str, Any]] = []
    trials = []
    for result in grid:
        fs = result.filesystem
        with fs.open_input_stream(f"{result.path}/result.json") as f:
            text = f.readall().decode()
        records = [json.loads(line) for line in text.splitlines() if line.strip()]
        if not records:
            continue
        trial_id = records[-1]["trial_id"]
        by_epoch: dict[int, dict[str, Any]] = {}
        for rec in records:
            by_epoch[int(rec["epoch"])] = rec
        config = {k: v for k, v in (records[-1].get("config") or {}).items() if k in keys}
        for epoch in sorted(by_epoch):
            rec = by_epoch[epoch]
            ckpt = checkpoint_url(rec.get("checkpoint_path"), plan.cfg.out)
            if ckpt and not storage.exists(ckpt, opts):
                ckpt = None  # pruned (keep_checkpoints)
            metrics = {
                k: v
                for k, v in rec.items()
                if k not in TUNE_KEYS
                and k != "epoch"
                and (v is None or isinstance(v, int | float))
                and not isinstance(v, bool)
            }
            rows.append(
                {
                    "trial_id": trial_id,
                    "epoch": epoch,
                    "checkpoint": ckpt,
                    "config": config,
                    "metrics": metrics,
                }
            )
        epochs = plan.space.run_config({**config}).train.epochs
        last = max(by_epoch)
        status = "ERROR" if result.error else "TERMINATED"
        trials.append(
            {
                "trial_id": trial_id,
                "status": status,
                "epochs": last,
                "planned_epochs": epochs,
                "stopped_early": result.error is None and last < epochs,
                "error": None if result.error is None else str(result.error).splitlines()[0],
            }
        )
    return rows, trials


def write_results(plan: Plan, rows: list[dict[str, Any]], trials: list[dict[str, Any]]) -> dict:
    """Export the front's models, then trials.parquet, sweep.html and pareto.json (last)."""
    from unlearn.sweep.export import export_checkpoint
    from unlearn.sweep.report import write_sweep_report

    cfg = plan.cfg
    opts = cfg.storage_options
    front = pareto_front(rows, plan.objectives)
    models: dict[int, str] = {}
    if cfg.export_models:
        for i in front:
            r = rows[i]
            dest = storage.join(cfg.out, "pareto", results.model_id(r))
            run = trial_config(plan, r["config"], r["trial_id"])
            export_checkpoint(run, r["checkpoint"], dest, opts)
            models[i] = dest
    doc = add_serve_args(results.pareto_document(rows, front, plan.objectives, models), plan)
    results.write_trials(storage.join(cfg.out, results.TRIALS_FILE), rows, opts)
    write_sweep_report(
        storage.join(cfg.out, results.HTML_FILE),
        opts,
        rows=rows,
        front=front,
        pareto=doc,
        params=[
            (p.name, p.describe(), p.kind == "loguniform" or p.log) for p in plan.space.sampled
        ],
        trials=trials,
        title=f"unlearn sweep: {cfg.out}",
        notes=plan.notes,
        commands={
            **({"serve the front": doc["serve_command"]} if doc["serve_command"] else {}),
            "TensorBoard (loss, lr, forget quality, utility per epoch)": (
                f"tensorboard --logdir {storage.join(cfg.out, 'trials')}"
            ),
            "trials table": f"python -c \"import pandas; print(pandas.read_parquet('{storage.join(cfg.out, results.TRIALS_FILE)}'))\"",
            "resume an interrupted sweep": f"unlearn sweep --resume {cfg.out}",
        },
    )
    results.write_pareto(storage.join(cfg.out, results.PARETO_FILE), doc, opts)
    return doc


def add_serve_args(doc: dict[str, Any], plan: Plan) -> dict[str, Any]:
    """pareto.json's ``unlearn serve`` arguments: per trial ``serve_args`` (``--model ID=PATH
    --guard ID=INDEX``), and ``serve_args`` / ``serve_command`` serving the whole front."""
    import shlex

    guard = guard_index(plan)
    every: list[str] = []
    for t in doc["trials"]:
        args: list[str] = []
        if t["model_path"]:
            args = ["--model", f"{t['model_id']}={t['model_path']}"]
            if guard is not None:
                args += ["--guard", f"{t['model_id']}={guard}"]
        t["serve_args"] = args
        every += args
    doc["guard_index"] = guard
    doc["serve_args"] = every
    doc["serve_command"] = shlex.join(["unlearn", "serve", *every]) if every else None
    return doc


def guard_index(plan: Plan) -> str | None:
    """The guard index the front is served with (built into OUT/guard when configured)."""
    cfg = plan.cfg
    if cfg.guard.index is not None:
        return cfg.guard.index
    if not cfg.guard.build:
        return None
    return storage.join(cfg.out, "guard")


def build_guard(plan: Plan) -> None:
    """Compile the guard index from the run's forget (and retain) split, once."""
    from unlearn.guard.index import build_from_dataset, save_index

    path = guard_index(plan)
    if path is None or plan.cfg.guard.index is not None:
        return
    if storage.exists(storage.join(path, "manifest.json"), plan.cfg.storage_options):
        return
    run = plan.space.run_config(plan.space.first_point(plan.space.methods[0]))
    ds = Dataset(run.data.path, run.data.storage_options)
    emb = {"auto": None, "on": True, "off": False}[plan.cfg.guard.embeddings]
    parts = build_from_dataset(ds, [run.data.forget_split], run.data.retain_split, embeddings=emb)
    save_index(parts, path, plan.cfg.storage_options, overwrite=False)


def check_out(cfg: SweepConfig) -> None:
    """Refuse to clobber a finished sweep or to start over an unfinished one by accident."""
    opts = cfg.storage_options
    if cfg.overwrite:
        # only a sweep's own output is removed (anything else there is refused, naming it)
        if storage.check_output(cfg.out, KIND, opts, overwrite=True):
            fs, inner = storage.filesystem(cfg.out, opts)
            fs.rm(inner, recursive=True)
        return
    if storage.exists(storage.join(cfg.out, results.PARETO_FILE), opts):
        raise OutputExistsError(
            f"{cfg.out} holds a finished sweep; pass --overwrite or choose another out"
        )
    if storage.exists(storage.join(cfg.out, CONFIG_FILE), opts):
        raise OutputExistsError(
            f"{cfg.out} holds an unfinished sweep: continue it with `unlearn sweep --resume "
            f"{cfg.out}`, or pass --overwrite to start over"
        )


def drive(plan: Plan, *, resume: bool, address: str | None) -> int:
    """Start Ray (with its dashboard), check resources, run or restore the Tuner, write results."""
    import ray
    from ray import tune

    from jobs.common import dashboard_url, init_ray

    cfg = plan.cfg
    init_ray(address, dashboard=True)
    url = dashboard_url()
    if url is None:
        raise ConfigError(
            "Ray is running without its dashboard: Train's placement-group cleaner needs its "
            "State API, or trials stopped early leak their workers (start the cluster with the "
            "dashboard on)"
        )
    concurrent = check_resources(plan, ray.cluster_resources())
    print(f"Ray dashboard: http://{url}  (jobs, actors, placement groups)")
    print(
        f"sweep: {cfg.search.num_samples} trials ({cfg.search.algorithm}), {concurrent} at once, "
        f"objectives {plan.objectives}, ASHA {'on ' + cfg.asha.metric if cfg.asha.enabled else 'off'}"
    )
    for note in plan.notes:
        print(f"note: {note}")
    build_guard(plan)
    path, fs = tune_storage(cfg.out, cfg.storage_options)
    tune_path = f"{path}/{TUNE_DIR}"
    if resume and not tune.Tuner.can_restore(tune_path, storage_filesystem=fs):
        print(f"{cfg.out}: interrupted before any trial started; starting the sweep")
        resume = False
    if resume:
        tuner = tune.Tuner.restore(
            tune_path,
            trainable=trainable(plan),
            resume_unfinished=True,
            resume_errored=True,
            storage_filesystem=fs,
        )
    else:
        tuner = make_tuner(plan, concurrent)
    grid = tuner.fit()
    done = grid.num_terminated + grid.num_errors
    if done < len(grid) or len(grid) < cfg.search.num_samples:
        print(
            f"sweep interrupted: {done} of {cfg.search.num_samples} trials finished; continue with "
            f"`unlearn sweep --resume {cfg.out}`",
            file=sys.stderr,
        )
        return 1
    rows, trials = collect_rows(grid, plan)
    if not rows:
        errors = [t["error"] for t in trials if t["error"]] or [
            str(r.error) for r in grid if r.error
        ]
        raise DataError(f"no trial reported an epoch; first error: {errors[0] if errors else '?'}")
    doc = write_results(plan, rows, trials)
    failed = [t for t in trials if t["status"] == "ERROR"]
    stopped = sum(t["stopped_early"] for t in trials)
    print(
        f"\n{len(trials)} trials, {len(rows)} trial-epochs, {stopped} stopped early by ASHA, "
        f"{len(failed)} failed; {len(doc['trials'])} on the Pareto front:"
    )
    for t in doc["trials"]:
        nums = " ".join(f"{k}={t['metrics'].get(k):.4g}" for k in plan.objectives)
        print(f"  {t['model_id']}: {nums}  {json.dumps(t['config'])}")
    if doc["serve_command"]:
        print(f"\nserve the front: {doc['serve_command']}")
    print(f"report: {storage.join(cfg.out, results.HTML_FILE)}")
    return 0


def parser() -> argparse.ArgumentParser:
    """``unlearn sweep`` / ``python -m jobs.sweep``."""
    p = argparse.ArgumentParser(
        prog="unlearn sweep",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--config", help="the sweep's YAML (local or s3://)")
    p.add_argument("--resume", metavar="DIR", help="continue the interrupted sweep in DIR")
    p.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS or a local Ray)")
    p.add_argument("--overwrite", action="store_true", help="replace a sweep in out")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="e.g. search.num_samples=12")
    return p


def load(args: argparse.Namespace) -> tuple[SweepConfig, bool]:
    """The sweep's config: --config + overrides for a new sweep, DIR/sweep.yaml for --resume."""
    if args.resume:
        if args.config or args.overrides or args.overwrite:
            raise ConfigError("--resume DIR takes no --config, --overwrite or overrides")
        saved = storage.join(args.resume, CONFIG_FILE)
        if not storage.exists(saved):
            raise DataError(f"{args.resume} holds no sweep ({CONFIG_FILE} is missing)")
        cfg = load_config(SweepConfig, saved)
        out = args.resume if storage.is_remote(args.resume) else str(Path(args.resume).resolve())
        return dataclasses.replace(cfg, out=out, overwrite=False), True
    if not args.config:
        raise ConfigError("give --config SWEEP.yaml (or --resume DIR)")
    extra = ["overwrite=true"] if args.overwrite else []
    cfg = load_config(SweepConfig, args.config, [*args.overrides, *extra])
    if not storage.is_remote(cfg.out):
        cfg = dataclasses.replace(cfg, out=str(Path(cfg.out).resolve()))
    cfg = dataclasses.replace(cfg, run=resolve_paths(cfg.run))  # saved so in OUT/sweep.yaml
    if cfg.guard.index and not storage.is_remote(cfg.guard.index):
        guard = dataclasses.replace(cfg.guard, index=str(Path(cfg.guard.index).resolve()))
        cfg = dataclasses.replace(cfg, guard=guard)
    return cfg, False


def main(argv: list[str] | None = None) -> int:
    """Check the sweep, run it (or resume it), write its results."""
    args = parser().parse_args(argv)
    cfg, resume = load(args)
    plan = make_plan(cfg)
    if resume:
        if storage.exists(storage.join(cfg.out, results.PARETO_FILE), cfg.storage_options):
            print(f"{cfg.out}: the sweep is finished ({results.PARETO_FILE})")
            return 0
    else:
        check_out(cfg)
        saved = {**to_dict(cfg), "overwrite": False}
        storage.write_bytes(
            storage.join(cfg.out, CONFIG_FILE),
            yaml.safe_dump(saved, sort_keys=False).encode(),
            cfg.storage_options,
        )
    return drive(plan, resume=resume, address=args.address)


if __name__ == "__main__":
    sys.exit(run_command(main))
