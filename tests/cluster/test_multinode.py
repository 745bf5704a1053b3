"""A real multi-node Ray cluster on this machine (a head and worker nodes on 127.0.0.1, each a
raylet with its own object store and agents; tests/cluster/cluster_daemon.py), jobs submitted
with `unlearn submit` over HTTP to its Job API (token authentication on), data, model and
checkpoints on the moto S3 server. Then the faults, in one run that must end within RESUME_RTOL
(final forget and retain NLL, relative) and 1e-4 (final weights) of the uninterrupted run with the
same seed: a training worker killed, a worker node removed (the run waits for a replacement and
resumes), the job driver killed and the job resubmitted (each fault in a run of its own would add
a whole run to CI); and a model replica of the guarded API (serve/) killed under a bounded load.

Nothing here calls Ray in the test process: the cluster lives in its own process group and the
client is the `unlearn` command in a subprocess, so the session fixture ``ray_local`` (used by
other modules) and this cluster never meet. The head has no CPUs; each worker node has 1, and each
training worker asks for 1: two workers can only run on two nodes.
"""

from __future__ import annotations

import json
import os
import queue
import secrets
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from tests.cluster.helpers import assert_same_result, history, resumes, run_overrides, run_summary
from tests.conftest import free_port
from unlearn import storage

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
TIMEOUT = 600  # any one job, seconds
# 4 epochs of 2 steps: the fault run is held after each of epochs 1, 2 and 3 (one fault each)
EPOCHS = "train.epochs=4"


class LocalCluster:
    """The cluster daemon's client: add and remove nodes, the env every client command needs."""

    def __init__(self, root: Path, base_env: dict[str, str]):
        self.token = secrets.token_hex(16)
        gcs_port, dash_port = free_port(), free_port()
        self.env = {k: v for k, v in base_env.items() if not k.startswith("RAY_")}
        self.env.update(
            # Ray's multi-node harness keeps every node on 127.0.0.1 only with this switch off
            RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0",
            RAY_AUTH_MODE="token",  # as a Ray 2.60 cluster runs; the client must send it
            RAY_AUTH_TOKEN=self.token,
            # the cluster's own GCS for every process (detached actors otherwise pick the
            # latest of the machine's Ray instances)
            RAY_ADDRESS=f"127.0.0.1:{gcs_port}",
            RAY_USAGE_STATS_ENABLED="0",
            RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S="300",
            PATH=f"{BIN}{os.pathsep}{base_env.get('PATH', '')}",
            PYTHONPATH=str(ROOT),
            HF_HUB_OFFLINE="1",
            TOKENIZERS_PARALLELISM="false",
            UNLEARN_SUBMIT_TIMEOUT_S="30",
            # Serve records its replicas' tasks only with this (the test finds the busy replica)
            RAY_SERVE_ENABLE_TASK_EVENTS="1",
        )
        self.log = open(root / "daemon.log", "w")  # noqa: SIM115 (closed in shutdown)
        system_config = {"health_check_period_ms": 1000, "health_check_failure_threshold": 3}
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("cluster_daemon.py"))]
            + ["--gcs-port", str(gcs_port), "--dashboard-port", str(dash_port)]
            + ["--system-config", json.dumps(system_config)],
            env=self.env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            start_new_session=True,  # its own process group: killed as one if it must be
        )
        self.lines: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.head = self._reply(300)
        assert self.head.get("ok"), self.head
        self.url = self.head["dashboard"]
        assert self.head["gcs_address"] == f"127.0.0.1:{gcs_port}", self.head

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(json.loads(line))

    def _reply(self, timeout: float) -> dict:
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"cluster daemon silent for {timeout} s; see daemon.log") from None

    def call(self, timeout: float = 120, **req) -> dict:
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        out = self._reply(timeout)
        assert out.get("ok"), out
        return out

    def add_node(self, cpus: float = 1) -> str:
        return self.call(op="add_node", num_cpus=cpus)["node_id"]

    def remove_node(self, node_id: str) -> None:
        self.call(op="remove_node", node_id=node_id)

    def shutdown(self) -> None:
        try:
            if self.proc.poll() is None:
                self.call(op="shutdown", timeout=90)
                self.proc.wait(timeout=60)
        except (AssertionError, OSError, subprocess.TimeoutExpired, ValueError):
            pass  # a daemon that will not shut down cleanly is killed below
        finally:
            if self.proc.poll() is None:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=30)
            self.log.close()

    # --- the Job and State APIs, as any HTTP client sees them

    def get(self, path: str) -> dict:
        r = requests.get(
            f"{self.url}{path}", headers={"Authorization": f"Bearer {self.token}"}, timeout=30
        )
        r.raise_for_status()
        return r.json()

    def job(self, sid: str) -> dict:
        """The job's record; a transient HTTP error (the head busy restarting a group) retried."""
        for attempt in range(5):
            try:
                return self.get(f"/api/jobs/{sid}")
            except requests.RequestException:
                if attempt == 4:
                    raise
                time.sleep(2)
        raise AssertionError("unreachable")

    def actors(self, class_name: str) -> list[dict]:
        """Every actor of that class the cluster has seen (alive or dead), with node and pid."""
        q = f"?detail=1&limit=1000&filter_keys=class_name&filter_predicates=%3D&filter_values={class_name}"
        return self.get(f"/api/v0/actors{q}")["data"]["result"]["result"]

    def unlearn(self, *args: str, timeout: float = TIMEOUT, env: dict | None = None):
        """The `unlearn` command as a user runs it, from the checkout."""
        return subprocess.run(
            [str(BIN / "unlearn"), *args],
            cwd=ROOT,
            env={**self.env, **(env or {})},
            capture_output=True,
            text=True,
            timeout=timeout,
        )


@pytest.fixture(scope="module")
def cluster(s3_server, tmp_path_factory):
    t0 = time.time()
    c = LocalCluster(tmp_path_factory.mktemp("cluster"), dict(os.environ))
    try:
        c.nodes = [c.add_node(), c.add_node()]
        print(f"cluster up in {time.time() - t0:.1f} s: head + {len(c.nodes)} nodes at {c.url}")
        yield c
    finally:
        c.shutdown()


@pytest.fixture(scope="module")
def s3_inputs(s3_server, tiny_data, nano_model_dir):
    """The dataset and the base model copied to a bucket the cluster reads."""
    import uuid

    import s3fs

    from unlearn.data import Dataset, write_dataset
    from unlearn.models import load_model, save_model

    bucket = f"s3://mn-{uuid.uuid4().hex[:8]}"
    s3fs.S3FileSystem(endpoint_url=s3_server, skip_instance_cache=True).mkdir(bucket[5:])
    ds = Dataset(tiny_data)
    write_dataset(
        f"{bucket}/data", {s: ds.read(s) for s in ds.splits}, source="copy", pairs=ds.info.pairs
    )
    model, tok = load_model(nano_model_dir)
    save_model(model, tok, f"{bucket}/base")
    return {"bucket": bucket, "data": f"{bucket}/data", "model": f"{bucket}/base"}


def submit_args(s3_inputs: dict, out: str, *extra: str) -> list[str]:
    return [
        "submit",
        "run",
        "--config",
        "examples/npo_tiny.yaml",
        *run_overrides(s3_inputs["data"], s3_inputs["model"], out, EPOCHS),
        "scaling.cpus_per_worker=1",
        *extra,
    ]


def sid_of(result) -> str:
    """The submission id `unlearn submit` prints as its first stdout line."""
    return result.stdout.splitlines()[0].strip()


def wait_for(what: str, check, timeout: float = TIMEOUT, every: float = 0.5):
    deadline = time.time() + timeout
    while time.time() < deadline:
        found = check()
        if found:
            return found
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def registered_epochs(out: str) -> list[int]:
    """Epochs of the checkpoints Ray Train registered (its snapshot in the run's storage)."""
    snap = storage.join(out, "checkpoints", "train", "checkpoint_manager_snapshot.json")
    try:  # Ray Train's controller rewrites the snapshot while we poll: a miss is "not yet"
        doc = json.loads(storage.read_bytes(snap))
        return [r["metrics"].get("epoch") for r in doc.get("checkpoint_results", [])]
    except (FileNotFoundError, OSError, ValueError, KeyError, TypeError, AttributeError):
        return []


def hold_env(tmp_path: Path, *epochs: int) -> tuple[Path, list[str]]:
    """Workers wait at the end of epoch E+1 until ``release.E`` exists, for each E
    (jobs/common.py HOLD_*); default: E=0 (after epoch 0's checkpoint, before epoch 1's)."""
    release = tmp_path / "release"
    return release, [
        "--env",
        f"UNLEARN_HOLD_AFTER_EPOCH={','.join(str(e) for e in epochs or (0,))}",
        "--env",
        f"UNLEARN_HOLD_FILE={release}",
    ]


def held_ranks(release: Path, epoch: int = 0, world: int = 2) -> list[dict] | None:
    """What each rank held after epoch ``epoch``'s checkpoint wrote (pid, node), once all are."""
    files = [Path(f"{release}.{epoch}.rank{r}") for r in range(world)]
    if all(f.exists() for f in files):
        return [json.loads(f.read_text()) for f in files]
    return None


def go(release: Path, epoch: int = 0) -> None:
    """Let the held workers go on."""
    Path(f"{release}.{epoch}").write_text("go")


@pytest.fixture(scope="module")
def uninterrupted(cluster, s3_inputs):
    """One run submitted over HTTP and followed to the end: the reference of the fault tests."""
    out = f"{s3_inputs['bucket']}/runs/uninterrupted"
    t0 = time.time()
    r = cluster.unlearn(*submit_args(s3_inputs, out), "--address", cluster.url)
    elapsed = time.time() - t0
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    print(f"uninterrupted multi-node run: {elapsed:.1f} s")
    return {"sid": sid_of(r), "out": out, "result": r, "summary": run_summary(out)}


def test_a_run_submitted_over_http_trains_on_both_nodes(
    cluster, uninterrupted, tiny_data, nano_model_dir, tmp_path
):
    r, out, sid = uninterrupted["result"], uninterrupted["out"], uninterrupted["sid"]
    assert sid.startswith("unlearn-run-") and f"submitted {sid} to {cluster.url}" in r.stderr
    assert "python -m jobs.unlearn --config examples/npo_tiny.yaml" in r.stderr
    assert f"job {sid} succeeded" in r.stderr
    info = cluster.job(sid)
    assert info["status"] == "SUCCEEDED" and info["metadata"]["unlearn_output"] == out
    # the two training workers of this job ran on the two worker nodes (not on the head)
    workers = [a for a in cluster.actors("RayTrainWorker") if a["job_id"] == info["job_id"]]
    assert {a["node_id"] for a in workers} == set(cluster.nodes), workers
    # the expected metrics: a single-process run of the same config ends the same (1e-4)
    from unlearn.config import load_config
    from unlearn.data import Dataset
    from unlearn.engine import run_dir
    from unlearn.engine.config import RunConfig
    from unlearn.engine.loop import data_hashes, train
    from unlearn.engine.session import LocalSession

    single = load_config(
        RunConfig,
        ROOT / "examples" / "npo_tiny.yaml",
        run_overrides(tiny_data, nano_model_dir, str(tmp_path / "single"), EPOCHS)
        + ["backend.kind=torch", "scaling.num_workers=1"],
    )
    run_dir.prepare(single, data_hashes(single, Dataset(tiny_data)))
    expected = train(single, LocalSession(tmp_path / "ckpt"))["loss_after"]
    summary = uninterrupted["summary"]
    assert summary["status"] == "finished" and summary["num_workers"] == 2
    for key in ("forget_nll", "retain_nll"):
        assert summary["loss_after"][key] == pytest.approx(expected[key], rel=1e-4), key
    assert summary["loss_after"]["forget_nll"] > summary["loss_before"]["forget_nll"]  # NPO
    assert registered_epochs(out)[-1] == 3  # checkpoints on S3, the last epoch's registered


def test_resubmitting_finds_the_run_and_other_configs_are_refused(
    cluster, uninterrupted, s3_inputs
):
    out, sid = uninterrupted["out"], uninterrupted["sid"]
    again = cluster.unlearn(*submit_args(s3_inputs, out), "--address", cluster.url)
    assert again.returncode == 0 and sid_of(again) == sid
    assert "already finished this run" in again.stderr
    other = cluster.unlearn(*submit_args(s3_inputs, out, "train.lr=2e-3"), "--address", cluster.url)
    assert other.returncode == 2
    assert f"was written by job {sid} (SUCCEEDED) with another config" in other.stderr
    listed = cluster.unlearn("jobs", "list", "--address", cluster.url)
    assert listed.returncode == 0 and sid in listed.stdout and out in listed.stdout
    status = cluster.unlearn("jobs", "status", sid, "--address", cluster.url)
    assert "status: SUCCEEDED" in status.stdout and f"output: {out}" in status.stdout
    logs = cluster.unlearn("jobs", "logs", sid, "--address", cluster.url)
    assert '"status": "finished"' in logs.stdout  # the job printed its run summary
    unknown = cluster.unlearn("jobs", "status", "unlearn-run-nope", "--address", cluster.url)
    assert unknown.returncode == 2 and "no job 'unlearn-run-nope'" in unknown.stderr
    stop = cluster.unlearn("jobs", "stop", "nope", "--address", cluster.url)
    assert stop.returncode == 2 and "no job 'nope'" in stop.stderr
    wrong = cluster.unlearn("jobs", "list", "--address", cluster.url, env={"RAY_AUTH_TOKEN": "x"})
    assert wrong.returncode == 2 and "error:" in wrong.stderr  # a wrong token is refused


@pytest.mark.skipif(
    not os.environ.get("UNLEARN_CLUSTER_FAULTS"),
    reason="not yet reliable on a shared 2-core machine (failed 2 of its last 4 runs: once right "
    "after fault 1, once waiting 600 s for the group on the replacement node); run it with "
    "UNLEARN_CLUSTER_FAULTS=1 (issue 13 stays open until it is)",
)
def test_a_run_survives_a_killed_worker_a_removed_node_and_a_killed_driver(
    cluster, uninterrupted, s3_inputs, tmp_path
):
    """Three faults in one run, each at a known point (each would otherwise cost a whole run):

    1. end of epoch 1: a training worker SIGKILLed -> FailureConfig restarts the worker group from
       epoch 0's checkpoint, within the job;
    2. end of epoch 2: the node of a worker removed (raylet, object store, agents: SIGKILL) ->
       with a fixed world size (scaling.num_workers=2) and 1 CPU left the group waits, the job
       does not fail; a replacement node joins and the group resumes from epoch 1's checkpoint;
    3. end of epoch 3: the job's driver SIGKILLed -> the job fails; the same `unlearn submit`
       command again is attempt 2, which resumes from epoch 2's checkpoint.

    The run ends as the uninterrupted one does (NLLs within RESUME_RTOL, weights within 1e-4)."""
    out = f"{s3_inputs['bucket']}/runs/three-faults"
    release, env = hold_env(tmp_path, 0, 1, 2)
    args = [*submit_args(s3_inputs, out, "scaling.max_failures=2"), *env, "--address", cluster.url]
    t0 = time.time()
    r = cluster.unlearn(*args, "--no-wait")
    assert r.returncode == 0, r.stderr
    sid = sid_of(r)

    # 1. a worker process dies
    first = wait_for("both workers at the end of epoch 1", lambda: held_ranks(release, 0))
    job_id = cluster.job(sid)["job_id"]  # set once the driver runs
    wait_for("epoch 0's checkpoint registered", lambda: 0 in registered_epochs(out))
    os.kill(first[1]["pid"], signal.SIGKILL)  # rank 1's process
    go(release, 0)
    second = wait_for("both workers at the end of epoch 2", lambda: held_ranks(release, 1))
    assert {x["pid"] for x in second}.isdisjoint({x["pid"] for x in first})  # a new group
    assert wait_for("the job still running", lambda: cluster.job(sid)["status"] == "RUNNING", 30)
    t1 = time.time()
    print(f"fault 1 (worker killed) recovered: {t1 - t0:.1f} s")

    # 2. a whole node goes
    wait_for("epoch 1's checkpoint registered", lambda: 1 in registered_epochs(out))
    lost = second[1]["node_id"]
    assert lost in cluster.nodes and second[0]["node_id"] != lost
    cluster.remove_node(lost)
    cluster.nodes.remove(lost)
    go(release, 1)
    time.sleep(10)  # no capacity for 2 workers: the job waits, it does not fail
    assert cluster.job(sid)["status"] == "RUNNING"
    assert held_ranks(release, 2) is None  # and nothing trained on in the meantime
    replacement = cluster.add_node()
    cluster.nodes.append(replacement)
    third = wait_for("both workers at the end of epoch 3", lambda: held_ranks(release, 2))
    assert replacement in {x["node_id"] for x in third}
    t2 = time.time()
    print(f"fault 2 (node removed, replaced) recovered: {t2 - t1:.1f} s")

    # 3. the driver dies; the job is submitted again
    wait_for("epoch 2's checkpoint registered", lambda: 2 in registered_epochs(out))
    driver = cluster.job(sid)["driver_info"]
    os.kill(int(driver["pid"]), signal.SIGKILL)
    wait_for("the job to fail", lambda: cluster.job(sid)["status"] == "FAILED", timeout=120)
    assert not storage.exists(storage.join(out, "run.json"))
    go(release, 2)
    resumed = cluster.unlearn(*args)  # the same command: a new attempt that resumes
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-2000:]
    print(f"fault 3 (driver killed, resubmitted) recovered: {time.time() - t2:.1f} s")
    print(f"three-fault run: {time.time() - t0:.1f} s")
    assert sid_of(resumed) == f"{sid}-r2" and "attempt 2: resumes the run in" in resumed.stderr
    assert "resuming the unfinished run" in resumed.stdout

    workers = [a for a in cluster.actors("RayTrainWorker") if a["job_id"] == job_id]
    assert {lost, replacement} <= {a["node_id"] for a in workers}  # before and after the loss
    assert resumes(out) == [
        {"resumed_at_step": 2, "resumed_at_epoch": 1},  # the group restarted after the worker
        {"resumed_at_step": 4, "resumed_at_epoch": 2},  # ... on the replacement node
        {"resumed_at_step": 6, "resumed_at_epoch": 3},  # the resubmitted job
    ]
    assert [x["step"] for x in history(out) if "step" in x] == [1, 2, 3, 4, 5, 6, 7, 8]
    assert_same_result(run_summary(out), out, uninterrupted["summary"], uninterrupted["out"])


def test_a_killed_serve_replica_loses_at_most_one_percent_of_a_bounded_load(
    cluster, tiny_data, nano_model_dir, tmp_path
):
    """The guarded OpenAI-compatible app (serve/) with 2 model replicas, deployed with `serve
    deploy` to the dashboard (as a RayService does); 400 chat completions from 4 clients; the
    model replica that is serving them SIGKILLed after 100. Failed requests are counted (target
    <= 1%) and the deployment recovers (a new replica, every request answered again)."""
    import yaml

    from serve.app import deploy_config
    from serve.config import guards_config, parse_serve_config
    from unlearn.data import Dataset
    from unlearn.guard.index import build_from_dataset, save_index

    index, keys, key = tmp_path / "guard", tmp_path / "keys.txt", "sk-cluster-test-0123456789"
    save_index(build_from_dataset(Dataset(tiny_data), ["forget10"], embeddings=False), index)
    keys.write_text(f"{key}\n")
    port = free_port()
    cfg = parse_serve_config(
        {
            "models": {"nano": str(nano_model_dir)},
            "api_keys_file": str(keys),
            "metrics_port": None,
            "engine_options": {"device": "cpu", "torch_threads": 1},
            "model_replicas": 2,
            "model_num_cpus": 0.25,
            "ingress_num_cpus": 0.25,
        }
    )
    guards = guards_config(
        {"guards": {"nano": {"index": str(index), "overrides": {"embeddings": False}}}}
    )
    cfg_file = tmp_path / "serve.yaml"
    cfg_file.write_text(yaml.safe_dump(deploy_config(cfg, guards, port=port)))
    deploy = subprocess.run(
        [str(BIN / "serve"), "deploy", str(cfg_file), "--address", cluster.url],
        env=cluster.env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert deploy.returncode == 0, deploy.stderr[-2000:]
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    headers = {"Authorization": f"Bearer {key}"}

    def ask(session: requests.Session, i: int) -> requests.Response:
        body = {
            "model": "nano",
            "messages": [{"role": "user", "content": f"What is the weather like today, {i}?"}],
            "max_tokens": 4,
            "temperature": 0,
        }
        return session.post(url, json=body, headers=headers, timeout=60)

    def replicas() -> list[dict]:
        found = cluster.actors("ServeReplica:unlearn:UnlearnModel")
        return [a for a in found if a["state"] == "ALIVE"]

    def served_by() -> dict[str, int]:
        """Requests each model replica executed so far (its actor tasks, State API)."""
        alive = {a["actor_id"] for a in replicas()}
        q = "?detail=1&limit=10000&filter_keys=type&filter_predicates=%3D&filter_values=ACTOR_TASK"
        tasks = cluster.get(f"/api/v0/tasks{q}")["data"]["result"]["result"]
        counts: dict[str, int] = {}
        for t in tasks:
            if t.get("actor_id") in alive and "handle_request" in t.get("func_or_class_name", ""):
                counts[t["actor_id"]] = counts.get(t["actor_id"], 0) + 1
        return counts

    try:
        wait_for("2 model replicas", lambda: len(replicas()) == 2, timeout=300)
        session = requests.Session()
        wait_for("the app answering", lambda: _ok(lambda: ask(session, -1)), timeout=300)
        total, clients, kill_after = 400, 4, 100
        results: list[tuple[int, float, str]] = []
        lock = threading.Lock()
        counter = iter(range(total))
        killed: dict = {}

        def client() -> None:
            own = requests.Session()
            for i in counter:
                t = time.time()
                try:
                    resp = ask(own, i)
                    outcome = (
                        resp.status_code,
                        time.time() - t,
                        "" if resp.ok else resp.text[:120],
                    )
                except requests.RequestException as exc:
                    outcome = (0, time.time() - t, type(exc).__name__)
                with lock:
                    results.append(outcome)
                    if len(results) == kill_after and not killed:
                        # the replica that served the most of this load so far
                        counts = served_by()
                        victim = max(replicas(), key=lambda a: counts.get(a["actor_id"], 0))
                        killed.update(victim, served=counts.get(victim["actor_id"], 0))
                        os.kill(victim["pid"], signal.SIGKILL)

        t0 = time.time()
        threads = [threading.Thread(target=client) for _ in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=900)
        elapsed = time.time() - t0
        failed = [r for r in results if r[0] != 200]
        rate = len(failed) / len(results)
        print(
            f"serve: {len(results)} requests in {elapsed:.1f} s, {len(failed)} failed "
            f"({rate:.2%}); the killed replica had served {killed.get('served')}: {failed[:5]}"
        )
        assert killed and killed["served"] > 0 and len(results) == total
        assert rate <= 0.01, failed
        # after the kill the load went on: the survivor served it (loading the model on demand)
        assert all(r[0] == 200 for r in results[-100:]), results[-100:]
        # the deployment recovers: Serve replaces the killed replica and reports healthy
        wait_for(
            "a replacement replica",
            lambda: (
                len(replicas()) == 2
                and killed["actor_id"] not in {a["actor_id"] for a in replicas()}
            ),
            timeout=300,
        )

        def healthy() -> bool:
            app = cluster.get("/api/serve/applications/")["applications"].get("unlearn", {})
            model = app.get("deployments", {}).get("UnlearnModel", {})
            running = [r for r in model.get("replicas", []) if r.get("state") == "RUNNING"]
            return (
                app.get("status") == "RUNNING"
                and model.get("status") == "HEALTHY"
                and len(running) == model.get("target_num_replicas") == 2
            )

        wait_for("the deployment healthy again", healthy, timeout=180)
        with ThreadPoolExecutor(8) as pool:
            after = list(pool.map(lambda i: ask(requests.Session(), i), range(40)))
        assert all(a.status_code == 200 for a in after), [a.text[:120] for a in after]
    finally:
        subprocess.run(
            [str(BIN / "serve"), "shutdown", "--address", cluster.url, "-y"],
            env=cluster.env, capture_output=True, timeout=120,
        )  # fmt: skip


def _ok(request) -> bool:
    try:
        return request().status_code == 200
    except requests.RequestException:
        return False
