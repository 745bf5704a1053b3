"""Submit the platform's jobs to a Ray cluster through its Job API, follow them, manage them.

    unlearn submit run --address http://HEAD:8265 --config cfg.yaml [key=value ...] [--no-wait]
    unlearn submit {finetune|run|eval|sweep|demo} ... (the job's own arguments)
    unlearn jobs list|status|logs|stop [ID] --address http://HEAD:8265

What runs on the cluster is ``python -m jobs.<job> <the job's arguments>`` in a copy of this
checkout (the working dir, uploaded by Ray), exactly what

    ray job submit --address http://HEAD:8265 --working-dir . -- python -m jobs.unlearn --config cfg.yaml

runs. ``unlearn submit`` adds what a plain ``ray job submit`` cannot know:

* the job's arguments are checked here first, with the job's own parser and config loader (a bad
  key fails in a second, before anything is uploaded); paths the cluster cannot see (local files
  outside the working dir, or ignored by it; local outputs) get a warning naming the key;
* the submission id derives from the run's output path and config hash
  (``unlearn-run-<output hash>-<config hash>``): submitting the same run again while it runs
  follows it instead of starting a second one; after it failed or was stopped, a new attempt
  (``...-r2``) resumes it from its last checkpoint; once it succeeded there is nothing to do. A
  different config for an output another job wrote is refused (as locally), unless
  ``--overwrite``; a different config for an output a job is running on is always refused.
* an unreachable address fails within ``--timeout`` seconds with what to check.

Token authentication (on by default in Ray 2.60 clusters): the client sends the token Ray finds
in RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token when RAY_AUTH_MODE=token.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import hashlib
import importlib
import json
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from unlearn import storage
from unlearn.config import to_dict
from unlearn.errors import ConfigError, UnlearnError, run_command

DEFAULT_ADDRESS = "http://127.0.0.1:8265"
# never uploaded with the working dir (besides what .gitignore names)
DEFAULT_EXCLUDES = [".git", ".venv", "venv", "__pycache__", ".pytest_cache", ".ruff_cache", "runs"]
TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")
# env vars every job gets (log lines arrive as they are written; no tokenizer thread pools)
JOB_ENV = {"PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false"}


class ClusterError(UnlearnError):
    """The cluster cannot be reached, refuses the request, or does not know a job."""


# ---------------------------------------------------------------------------------------------
# What each job is: its module, how its arguments load, where it writes


@dataclass(frozen=True)
class JobKind:
    """A submittable job: ``python -m <module>`` with its own argument parser and config."""

    module: str
    # job argv -> the checked config (the job's own parser and loader: no side effects)
    load: Callable[[list[str]], Any]
    output: Callable[[Any], str]  # where the job writes
    inputs: Callable[[Any], dict[str, str | None]]  # key -> path the job reads
    # top-level config keys that do not change what is computed (where it goes, overwrite)
    volatile: tuple[str, ...]
    # argv of a new attempt after a failed one (None: the same arguments resume)
    resume_argv: Callable[[Any], list[str]] | None = None


def _run_config(module: str) -> Callable[[list[str]], Any]:
    def load(argv: list[str]) -> Any:
        from jobs.common import parse_job_args

        mod = importlib.import_module(module)
        _, cfg = parse_job_args(
            module, None, argv, fixed=getattr(mod, "FIXED", None), check=getattr(mod, "check", None)
        )
        return cfg

    return load


def _run_inputs(cfg: Any) -> dict[str, str | None]:
    return {
        "data.path": cfg.data.path,
        "model.path": cfg.model.path,
        "model.retain_model": cfg.model.retain_model,
    }


def _eval_load(argv: list[str]) -> Any:
    from jobs import eval as job

    return job.load_job_config(job.parser().parse_args(argv))


def _demo_load(argv: list[str]) -> Any:
    from jobs import demo as job

    return job.load_demo_config(job.parser().parse_args(argv))


def _sweep_module() -> Any:
    try:
        return importlib.import_module("jobs.sweep")
    except ModuleNotFoundError as exc:
        if exc.name != "jobs.sweep":
            raise
        raise ConfigError(
            "unlearn submit sweep: this checkout has no jobs/sweep.py (the sweep job)"
        ) from None


def _sweep_load(argv: list[str]) -> Any:
    job = _sweep_module()
    cfg, _ = job.load(job.parser().parse_args(argv))
    return cfg


def _sweep_inputs(cfg: Any) -> dict[str, str | None]:
    run = cfg.run or {}
    return {
        "run.data.path": (run.get("data") or {}).get("path"),
        "run.model.path": (run.get("model") or {}).get("path"),
        "run.model.retain_model": (run.get("model") or {}).get("retain_model"),
    }


KINDS: dict[str, JobKind] = {
    "finetune": JobKind(
        "jobs.finetune", _run_config("jobs.finetune"), lambda c: c.output.dir, _run_inputs,
        ("output",),
    ),
    "run": JobKind(
        "jobs.unlearn", _run_config("jobs.unlearn"), lambda c: c.output.dir, _run_inputs,
        ("output",),
    ),
    "eval": JobKind(
        "jobs.eval", _eval_load, lambda c: c.out,
        lambda c: {"model": c.model, "data": c.data, "retain_model": c.retain_model,
                   **{f"compare.{k}": v for k, v in c.compare.items()}},
        ("out", "overwrite"),
    ),
    "demo": JobKind(
        "jobs.demo", _demo_load, lambda c: c.out, lambda c: {"data": c.data, "model": c.model},
        ("out", "overwrite"),
    ),
    "sweep": JobKind(
        "jobs.sweep", _sweep_load, lambda c: c.out, _sweep_inputs, ("out", "overwrite"),
        resume_argv=lambda c: ["--resume", c.out],
    ),
}  # fmt: skip


def config_hash(kind: JobKind, cfg: Any) -> str:
    """sha256 of the resolved config without the keys that only say where results go."""
    plain = to_dict(cfg) if dataclasses.is_dataclass(cfg) else dict(cfg)
    kept = {k: v for k, v in plain.items() if k not in kind.volatile}
    return hashlib.sha256(json.dumps(kept, sort_keys=True, default=str).encode()).hexdigest()


def base_submission_id(command: str, output: str, digest: str) -> str:
    """``unlearn-<command>-<output hash>-<config hash>``: the same run always gets the same id."""
    where = hashlib.sha256(str(output).rstrip("/").encode()).hexdigest()[:10]
    return f"unlearn-{command}-{where}-{digest[:10]}"


# ---------------------------------------------------------------------------------------------
# What the cluster can see


def _ignored(path: Path, working_dir: Path, excludes: list[str]) -> str | None:
    """Why a path inside the working dir is not uploaded (an exclude or .gitignore), or None."""
    rel = path.resolve().relative_to(working_dir.resolve())
    for pattern in excludes:
        if rel.match(pattern) or any(part == pattern.strip("/") for part in rel.parts):
            return f"excluded ({pattern})"
    try:
        out = subprocess.run(
            ["git", "-C", str(working_dir), "check-ignore", "-q", str(rel)],
            capture_output=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return "ignored by .gitignore" if out.returncode == 0 else None


def visibility_warnings(
    kind: JobKind, cfg: Any, working_dir: Path | None, excludes: list[str]
) -> list[str]:
    """One line per path the cluster will not see where the job looks for it."""
    out = []
    for key, value in kind.inputs(cfg).items():
        if not value or storage.is_remote(value):
            continue
        if working_dir is None:
            out.append(
                f"{key}={value} is a local path and no working dir is uploaded: the cluster sees "
                "it only if the image or every node holds it there; use s3://"
            )
            continue
        local = Path(value) if Path(value).is_absolute() else working_dir / value
        try:
            local.resolve().relative_to(working_dir.resolve())
        except ValueError:
            out.append(
                f"{key}={value} is outside the working dir {working_dir}: the cluster cannot read "
                "it unless every node mounts it at that path; use s3:// or a path inside the "
                "working dir"
            )
            continue
        why = _ignored(local, working_dir, excludes)
        if why:
            out.append(
                f"{key}={value} is inside the working dir but not uploaded ({why}): the cluster "
                "cannot read it; use s3:// or stop excluding it"
            )
    output = kind.output(cfg)
    if output and not storage.is_remote(output):
        out.append(
            f"output {output} is a local path: the job writes it on the cluster node that runs "
            "the driver (inside its temporary copy of the working dir), not here, and a run "
            "on several nodes cannot keep checkpoints there; use s3://bucket/prefix"
        )
    return out


# ---------------------------------------------------------------------------------------------
# The cluster


def normalize_address(address: str | None) -> str:
    """``http://HOST:PORT`` of the dashboard (Job API); a bare ``HOST:PORT`` gets http://."""
    if not address:
        # RAY_ADDRESS is often a GCS address (HOST:6379), which the Job API is not
        env = os.environ.get("RAY_ADDRESS", "")
        address = os.environ.get("RAY_API_SERVER_ADDRESS") or (
            env if env.startswith(("http://", "https://")) else DEFAULT_ADDRESS
        )
    if address.startswith("ray://"):
        raise ClusterError(
            f"--address {address}: that is a Ray Client address; the Job API is the dashboard's "
            "http://HEAD:8265"
        )
    if "://" not in address:
        address = f"http://{address}"
    if not address.startswith(("http://", "https://")):
        raise ClusterError(f"--address {address}: expected http://HEAD:8265")
    return address.rstrip("/")


def _auth_headers() -> dict[str, str]:
    try:
        from ray._private.authentication.http_token_authentication import (
            get_auth_headers_if_auth_enabled,
        )
    except ImportError:  # a Ray without token authentication
        return {}
    return dict(get_auth_headers_if_auth_enabled({}))


def connect(address: str | None, timeout: float) -> tuple[Any, str]:
    """A JobSubmissionClient for ``address`` after a bounded check that a Ray dashboard answers
    there (the SDK's own requests have no timeout: an unreachable host would hang)."""
    import requests

    url = normalize_address(address)
    hint = (
        "is the cluster up and the address its dashboard? (`ray dashboard ray_cluster.yaml` "
        "forwards it to http://127.0.0.1:8265; on Kubernetes `kubectl port-forward "
        "service/unlearn-head-svc 8265:8265`)"
    )
    try:
        r = requests.get(f"{url}/api/version", timeout=(timeout, timeout), headers=_auth_headers())
    except requests.exceptions.ReadTimeout:
        raise ClusterError(
            f"{url} accepted the connection but sent no answer within {timeout:g} s: {hint}"
        ) from None
    except requests.exceptions.RequestException as exc:
        reason = type(exc).__name__
        raise ClusterError(f"cannot reach the Ray Job API at {url} ({reason}): {hint}") from None
    if r.status_code in (401, 403):
        raise ClusterError(
            f"{url} refused the request (HTTP {r.status_code}): the cluster uses token "
            "authentication; set RAY_AUTH_MODE=token and RAY_AUTH_TOKEN (or RAY_AUTH_TOKEN_PATH) "
            "to its token (`ray get-auth-token` on the head node)"
        )
    try:
        version = r.json()["ray_version"]
    except (ValueError, KeyError, TypeError):
        raise ClusterError(
            f"{url} answered HTTP {r.status_code} but is not a Ray dashboard: {hint}"
        ) from None
    import ray
    from ray.job_submission import JobSubmissionClient

    if version != ray.__version__:
        warn(f"the cluster runs Ray {version}, this client Ray {ray.__version__}")
    try:
        return JobSubmissionClient(url), url
    except Exception as exc:  # the SDK's own checks (auth, versions) in one line
        raise ClusterError(f"{url}: {str(exc).splitlines()[0]}") from None


def job_info(client: Any, url: str, submission_id: str) -> Any:
    """The job's details; an unknown id is a clear error."""
    try:
        return client.get_job_info(submission_id)
    except RuntimeError as exc:
        if "404" in str(exc) or "does not exist" in str(exc):
            raise ClusterError(
                f"no job {submission_id!r} on {url}; `unlearn jobs list --address {url}` lists "
                "the jobs there"
            ) from None
        raise ClusterError(f"{url}: {str(exc).splitlines()[0]}") from None


def warn(message: str) -> None:
    """One ``warning: ...`` line on stderr."""
    print(f"warning: {message}", file=sys.stderr)


def note(message: str) -> None:
    """A progress line on stderr (stdout carries the submission id and the job's logs)."""
    print(message, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# unlearn submit


def submit_parser() -> argparse.ArgumentParser:
    """``unlearn submit``'s own options; everything else goes to the job."""
    p = argparse.ArgumentParser(
        prog="unlearn submit",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
        epilog="The job's own arguments: `unlearn <job> --help` (e.g. `unlearn run --help`).",
    )
    p.add_argument("job", choices=sorted(KINDS), help="the job to run on the cluster")
    p.add_argument(
        "--address",
        help=f"the cluster's dashboard (Job API); default RAY_ADDRESS or {DEFAULT_ADDRESS}",
    )
    p.add_argument("--no-wait", action="store_true", help="print the submission id and return")
    p.add_argument(
        "--working-dir",
        help="uploaded and run in on the cluster (default: the current directory when it is this "
        "project's checkout; none with --image)",
    )
    p.add_argument(
        "--exclude",
        action="append",
        default=[],
        metavar="PATTERN",
        help=f"not uploaded with the working dir (besides .gitignore and {DEFAULT_EXCLUDES})",
    )
    p.add_argument(
        "--pip", action="append", default=[], metavar="REQ", help="pip requirement for the job"
    )
    p.add_argument(
        "--image",
        help="container image holding the project (runtime_env image_uri; no working dir, no pip)",
    )
    p.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="KEY[=VALUE]",
        help="environment variable of the job (KEY alone copies this shell's value); visible "
        "in the dashboard: do not pass secrets this way",
    )
    p.add_argument(
        "--entrypoint-cpus",
        type=float,
        default=0,
        help="CPUs reserved for the driver (> 0 places it on a worker node, not the head)",
    )
    p.add_argument(
        "--timeout",
        type=float,
        default=float(os.environ.get("UNLEARN_SUBMIT_TIMEOUT_S", "10")),
        help="seconds to wait for the cluster to answer (default %(default)s)",
    )
    return p


@dataclass
class Plan:
    """A checked submission: what runs, where, under which id."""

    job: str
    kind: JobKind
    cfg: Any
    argv: list[str]  # the job's arguments as the cluster sees them
    output: str
    digest: str
    base_id: str
    runtime_env: dict[str, Any]
    entrypoint_cpus: float

    def entrypoint(self, argv: list[str] | None = None) -> str:
        """The shell command the cluster runs (also what `ray job submit -- ...` would run)."""
        return shlex.join(
            ["python", "-m", self.kind.module, *(self.argv if argv is None else argv)]
        )

    def metadata(self, attempt: int) -> dict[str, str]:
        """Stored with the job; later submissions find their runs by it."""
        return {
            "unlearn_job": self.job,
            "unlearn_output": self.output,
            "unlearn_config_hash": self.digest,
            "unlearn_base_id": self.base_id,
            "unlearn_attempt": str(attempt),
        }


def _working_dir(args: argparse.Namespace) -> Path | None:
    if args.working_dir:
        wd = Path(args.working_dir).resolve()
        if not wd.is_dir():
            raise ConfigError(f"--working-dir {args.working_dir}: not a directory")
        return wd
    if args.image:
        return None
    cwd = Path.cwd()
    if (cwd / "jobs" / "__init__.py").exists() and (cwd / "unlearn" / "__init__.py").exists():
        return cwd
    raise ConfigError(
        f"{cwd} is not this project's checkout: run from it, pass --working-dir CHECKOUT, or "
        "--image IMAGE with the project installed"
    )


def _cluster_argv(job_argv: list[str], working_dir: Path | None) -> list[str]:
    """The job's arguments with a local --config made relative to the working dir."""
    out = list(job_argv)
    for i, arg in enumerate(out):
        flag, eq, value = arg.partition("=")
        if flag != "--config":
            continue
        if not eq:
            if i + 1 >= len(out):
                break
            value = out[i + 1]
        if storage.is_remote(value):
            continue
        local = Path(value).resolve()
        if working_dir is None:
            raise ConfigError(
                f"--config {value}: a local file, and --image uploads no working dir; put the "
                "config on s3://"
            )
        try:
            rel = local.relative_to(working_dir)
        except ValueError:
            raise ConfigError(
                f"--config {value} is outside the working dir {working_dir}: the cluster cannot "
                "read it; put it inside the working dir or on s3://"
            ) from None
        if eq:
            out[i] = f"--config={rel.as_posix()}"
        else:
            out[i + 1] = rel.as_posix()
    return out


def _env_vars(items: list[str]) -> dict[str, str]:
    env = dict(JOB_ENV)
    for item in items:
        key, eq, value = item.partition("=")
        if not key:
            raise ConfigError(f"--env {item!r}: expected KEY=VALUE or KEY")
        if not eq:
            if key not in os.environ:
                raise ConfigError(f"--env {key}: not set in this shell (give KEY=VALUE)")
            value = os.environ[key]
        env[key] = value
    return env


def plan_submission(args: argparse.Namespace, job_argv: list[str]) -> Plan:
    """Check the job's arguments as the job itself would, and work out the submission."""
    kind = KINDS[args.job]
    if args.image and args.pip:
        raise ConfigError("--image and --pip do not combine (Ray runs an image_uri job as is)")
    working_dir = _working_dir(args)
    cfg = kind.load(job_argv)  # the job's own parser and loader: same errors as a local run
    output = kind.output(cfg)
    digest = config_hash(kind, cfg)
    excludes = [*DEFAULT_EXCLUDES, *args.exclude]
    for line in visibility_warnings(kind, cfg, working_dir, excludes):
        warn(line)
    runtime_env: dict[str, Any] = {"env_vars": _env_vars(args.env)}
    if working_dir is not None:
        runtime_env.update(working_dir=str(working_dir), excludes=excludes)
    if args.pip:
        runtime_env["pip"] = list(args.pip)
    if args.image:
        runtime_env["image_uri"] = args.image
    from ray.runtime_env import RuntimeEnv

    try:
        RuntimeEnv(**runtime_env)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"runtime env: {exc}") from None
    return Plan(
        job=args.job,
        kind=kind,
        cfg=cfg,
        argv=_cluster_argv(job_argv, working_dir),
        output=output,
        digest=digest,
        base_id=base_submission_id(args.job, output, digest),
        runtime_env=runtime_env,
        entrypoint_cpus=args.entrypoint_cpus,
    )


def previous_jobs(client: Any, output: str) -> list[Any]:
    """Jobs this command submitted for ``output``, oldest first."""
    found = [
        j
        for j in client.list_jobs()
        if (j.metadata or {}).get("unlearn_output") == output and j.submission_id
    ]
    return sorted(found, key=lambda j: j.start_time or 0)


def decide(plan: Plan, jobs: list[Any], overwrite: bool) -> tuple[str, str, int]:
    """("follow" | "done" | "submit", submission id, attempt) from the jobs already on the cluster."""
    ours = [j for j in jobs if j.metadata.get("unlearn_base_id") == plan.base_id]
    others = [j for j in jobs if j.metadata.get("unlearn_base_id") != plan.base_id]
    running = [j for j in others if str(j.status) not in TERMINAL]
    if running:
        j = running[-1]
        raise ClusterError(
            f"job {j.submission_id} ({j.status}) is writing {plan.output} with another config; "
            f"stop it (`unlearn jobs stop {j.submission_id}`) or choose another output"
        )
    active = [j for j in ours if str(j.status) not in TERMINAL]
    if active:
        return "follow", active[-1].submission_id, len(ours)
    if others and not overwrite:
        j = others[-1]
        raise ClusterError(
            f"{plan.output} was written by job {j.submission_id} ({j.status}) with another config "
            f"(hash {j.metadata.get('unlearn_config_hash', '?')[:10]}, this one "
            f"{plan.digest[:10]}): pass --overwrite to replace it, or choose another output"
        )
    if ours and str(ours[-1].status) == "SUCCEEDED" and not overwrite:
        return "done", ours[-1].submission_id, len(ours)
    attempt = len(ours) + 1
    return "submit", plan.base_id if attempt == 1 else f"{plan.base_id}-r{attempt}", attempt


def submit_main(argv: list[str] | None = None) -> int:
    """``unlearn submit JOB [options] [the job's arguments]``."""
    args, job_argv = submit_parser().parse_known_args(argv)
    plan = plan_submission(args, job_argv)
    overwrite = "--overwrite" in job_argv or any(
        a.replace(" ", "") in ("output.overwrite=true", "overwrite=true") for a in job_argv
    )
    client, url = connect(args.address, args.timeout)
    action, sid, attempt = decide(plan, previous_jobs(client, plan.output), overwrite)
    if action == "done":
        note(f"job {sid} already finished this run ({plan.output}); nothing to submit")
        print(sid)
        return 0
    if action == "follow":
        note(f"job {sid} is already running this run ({plan.output}); not submitting another")
    else:
        # a new attempt after a failed one resumes; one after --overwrite starts over
        retry = attempt > 1 and not overwrite
        resume = plan.kind.resume_argv(plan.cfg) if plan.kind.resume_argv and retry else None
        entrypoint = plan.entrypoint(resume)
        try:
            submit_job(
                client,
                entrypoint=entrypoint,
                submission_id=sid,
                runtime_env=plan.runtime_env,
                metadata=plan.metadata(attempt),
                entrypoint_num_cpus=plan.entrypoint_cpus or None,
            )
        except RuntimeError as exc:
            if "already exists" not in str(exc):
                raise ClusterError(f"{url} refused the job: {str(exc).splitlines()[0]}") from None
            note(f"job {sid} was just submitted by someone else; following it")
        else:
            what = f"attempt {attempt}: resumes the run in" if attempt > 1 else "writes"
            note(f"submitted {sid} to {url} ({what} {plan.output})\n  $ {entrypoint}")
    print(sid, flush=True)
    if args.no_wait:
        note(f"follow it: unlearn jobs logs {sid} --follow --address {url}")
        return 0
    return follow(client, url, sid)


# A cluster that just started has no job agent registered yet (HTTP 500 "No available agent");
# the same request succeeds once the nodes' agents are up.
AGENT_WAIT_S = float(os.environ.get("UNLEARN_SUBMIT_AGENT_WAIT_S", "120"))


def submit_job(client: Any, **kwargs: Any) -> str:
    """``client.submit_job``, retried while the cluster has no job agent up yet."""
    deadline = time.time() + AGENT_WAIT_S
    delay = 1.0
    while True:
        try:
            return client.submit_job(**kwargs)
        except RuntimeError as exc:
            if "No available agent" not in str(exc) or time.time() + delay > deadline:
                raise
            note(f"the cluster has no job agent up yet (it is starting); retrying in {delay:g} s")
            time.sleep(delay)
            delay = min(delay * 2, 10.0)


def follow(client: Any, url: str, sid: str) -> int:
    """Stream the job's logs until it ends; 0 if it succeeded, 1 if it failed or was stopped."""

    async def tail() -> None:
        async for chunk in client.tail_job_logs(sid):
            sys.stdout.write(chunk)
            sys.stdout.flush()

    try:
        asyncio.run(tail())
        deadline = time.time() + 60
        info = job_info(client, url, sid)
        while str(info.status) not in TERMINAL and time.time() < deadline:
            time.sleep(1)
            info = job_info(client, url, sid)
    except KeyboardInterrupt:
        note(
            f"\nstopped following; the job goes on: unlearn jobs logs {sid} --follow --address {url}"
        )
        return 130
    if str(info.status) == "SUCCEEDED":
        note(f"job {sid} succeeded")
        return 0
    message = (info.message or "").strip().splitlines()
    print(
        f"error: job {sid} ended {info.status}: {message[0] if message else ''} "
        f"(logs: unlearn jobs logs {sid} --address {url}; submitting the same command again "
        "resumes it)",
        file=sys.stderr,
    )
    return 1


# ---------------------------------------------------------------------------------------------
# unlearn jobs


def jobs_parser() -> argparse.ArgumentParser:
    """``unlearn jobs list|status|logs|stop``."""
    p = argparse.ArgumentParser(prog="unlearn jobs", description="Jobs on a Ray cluster.")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--address", help=f"the cluster's dashboard (default {DEFAULT_ADDRESS})")
    common.add_argument(
        "--timeout", type=float, default=float(os.environ.get("UNLEARN_SUBMIT_TIMEOUT_S", "10"))
    )
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    ls = sub.add_parser("list", parents=[common], help="the platform's jobs (--all: every job)")
    ls.add_argument("--all", action="store_true", help="also jobs not submitted by unlearn")
    st = sub.add_parser("status", parents=[common], help="one job's status and details")
    st.add_argument("id")
    lg = sub.add_parser("logs", parents=[common], help="a job's logs")
    lg.add_argument("id")
    lg.add_argument("--follow", "-f", action="store_true", help="stream until the job ends")
    sp = sub.add_parser("stop", parents=[common], help="stop a job (resubmitting resumes it)")
    sp.add_argument("id")
    sp.add_argument("--wait", action="store_true", help="until it has stopped")
    return p


def _when(ms: int | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ms / 1000)) if ms else "-"


def jobs_main(argv: list[str] | None = None) -> int:
    """``unlearn jobs ACTION [ID]``."""
    args = jobs_parser().parse_args(argv)
    client, url = connect(args.address, args.timeout)
    if args.action == "list":
        rows = sorted(client.list_jobs(), key=lambda j: j.start_time or 0)
        if not args.all:
            rows = [j for j in rows if (j.metadata or {}).get("unlearn_job")]
        print(f"{'SUBMISSION ID':44} {'STATUS':10} {'STARTED':19}  OUTPUT / ENTRYPOINT")
        for j in rows:
            meta = j.metadata or {}
            what = meta.get("unlearn_output") or j.entrypoint
            print(
                f"{j.submission_id or j.job_id:44} {j.status!s:10} {_when(j.start_time):19}  {what}"
            )
        return 0
    info = job_info(client, url, args.id)
    if args.action == "status":
        meta = info.metadata or {}
        fields = {
            "submission_id": info.submission_id,
            "status": str(info.status),
            "message": info.message,
            "entrypoint": info.entrypoint,
            "started": _when(info.start_time),
            "ended": _when(info.end_time),
            "output": meta.get("unlearn_output"),
            "attempt": meta.get("unlearn_attempt"),
            "driver_node": getattr(info, "driver_node_id", None),
        }
        for k, v in fields.items():
            if v is not None:
                print(f"{k}: {v}")
        return 0
    if args.action == "logs":
        if args.follow:
            return follow(client, url, args.id)
        sys.stdout.write(client.get_job_logs(args.id))
        return 0
    if str(info.status) in TERMINAL:
        note(f"job {args.id} already ended ({info.status})")
        return 0
    client.stop_job(args.id)
    note(f"stopping {args.id}")
    if args.wait:
        deadline = time.time() + 120
        while str(job_info(client, url, args.id).status) not in TERMINAL:
            if time.time() > deadline:
                raise ClusterError(f"job {args.id} did not stop within 120 s")
            time.sleep(1)
        note(f"job {args.id} stopped")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m jobs.submit JOB ...`` is ``unlearn submit JOB ...``."""
    return submit_main(argv)


if __name__ == "__main__":
    sys.exit(run_command(main))
