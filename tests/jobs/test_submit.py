"""`unlearn submit` / `unlearn jobs` without a cluster: the job's arguments are checked first, paths
the cluster cannot see are named, an unreachable or wrong address fails fast, submission ids are
stable, and the resubmission decision (follow, resume, refuse, nothing to do) is right. The same
commands against a real multi-node cluster: tests/cluster/test_multinode.py."""

from __future__ import annotations

import http.server
import socket
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from cli import main
from jobs import submit
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def in_checkout(monkeypatch):
    monkeypatch.chdir(ROOT)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.delenv("RAY_API_SERVER_ADDRESS", raising=False)


def run_args(tiny_data, nano_model_dir, out, *extra):
    return [
        "--config",
        "examples/npo_tiny.yaml",
        f"data.path={tiny_data}",
        f"model.path={nano_model_dir}",
        f"output.dir={out}",
        *extra,
    ]


def closed_port() -> int:
    return free_port()  # bound and released: nothing listens there


def test_unreachable_address_fails_within_seconds(in_checkout, tiny_data, nano_model_dir, capsys):
    port = closed_port()
    t0 = time.time()
    rc = main(
        ["submit", "run", "--address", f"http://127.0.0.1:{port}"]
        + run_args(tiny_data, nano_model_dir, "s3://b/runs/x")
    )
    elapsed = time.time() - t0
    err = capsys.readouterr().err
    assert rc == 2 and f"cannot reach the Ray Job API at http://127.0.0.1:{port}" in err
    assert "ray dashboard ray_cluster.yaml" in err  # says what to check
    assert elapsed < 10, elapsed


class _Silent:
    """Accepts TCP connections and never answers (a wrong port, a hung proxy)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]

    def close(self):
        self.sock.close()


def test_an_address_that_never_answers_times_out(in_checkout, tiny_data, nano_model_dir, capsys):
    silent = _Silent()
    try:
        t0 = time.time()
        rc = main(
            ["submit", "run", "--address", f"127.0.0.1:{silent.port}", "--timeout", "1"]
            + run_args(tiny_data, nano_model_dir, "s3://b/runs/x")
        )
        elapsed = time.time() - t0
    finally:
        silent.close()
    err = capsys.readouterr().err
    assert rc == 2 and "accepted the connection but sent no answer within 1 s" in err
    assert elapsed < 8, elapsed


def _http_server(status: int, body: bytes) -> tuple[http.server.HTTPServer, int]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's name)
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, server.server_address[1]


@pytest.mark.parametrize(
    "status, body, message",
    [
        (200, b"<html>grafana</html>", "is not a Ray dashboard"),
        (401, b"unauthorized", "token authentication; set RAY_AUTH_MODE=token and RAY_AUTH_TOKEN"),
    ],
    ids=["not-ray", "no-token"],
)
def test_a_server_that_is_not_the_job_api_is_named(in_checkout, capsys, status, body, message):
    server, port = _http_server(status, body)
    try:
        assert main(["jobs", "list", "--address", f"http://127.0.0.1:{port}"]) == 2
    finally:
        server.shutdown()
    assert message in capsys.readouterr().err


def test_ray_client_and_other_schemes_are_refused(in_checkout, capsys):
    assert main(["jobs", "list", "--address", "ray://head:10001"]) == 2
    assert "Ray Client address" in capsys.readouterr().err
    assert submit.normalize_address("head:8265") == "http://head:8265"
    assert submit.normalize_address("https://head/") == "https://head"


def test_gcs_ray_address_in_the_environment_is_not_taken_for_the_job_api(monkeypatch):
    monkeypatch.delenv("RAY_API_SERVER_ADDRESS", raising=False)
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.1:6379")
    assert submit.normalize_address(None) == submit.DEFAULT_ADDRESS
    monkeypatch.setenv("RAY_ADDRESS", "http://10.0.0.1:8265")
    assert submit.normalize_address(None) == "http://10.0.0.1:8265"


def test_bad_job_arguments_fail_before_any_network(in_checkout, tiny_data, nano_model_dir, capsys):
    base = ["submit", "run", "--address", "http://127.0.0.1:9"]
    args = run_args(tiny_data, nano_model_dir, "s3://b/o")
    assert main([*base, *args, "train.epoch=2"]) == 2
    assert "unknown config key train.epoch" in capsys.readouterr().err
    ft = ["--config", "examples/finetune_tiny.yaml", *args[2:]]
    assert main([*base, *ft]) == 2  # the job's own check
    assert "not an unlearning method" in capsys.readouterr().err
    assert main(["submit", "finetune", "--address", "http://127.0.0.1:9", *args]) == 2
    assert "this command sets it to 'finetune'" in capsys.readouterr().err


def test_paths_the_cluster_cannot_see_are_named(in_checkout, tiny_data, nano_model_dir, capsys):
    rc = main(
        ["submit", "run", "--address", f"http://127.0.0.1:{closed_port()}"]
        + run_args(tiny_data, nano_model_dir, "runs/out")
    )
    err = capsys.readouterr().err
    assert rc == 2  # unreachable; the warnings came first
    assert f"data.path={tiny_data} is outside the working dir {ROOT}" in err
    assert "use s3:// or a path inside the working dir" in err
    assert f"model.path={nano_model_dir} is outside the working dir" in err
    assert "output runs/out is a local path" in err and "use s3://bucket/prefix" in err
    # inside the working dir but not uploaded (runs/ is ignored)
    rc = main(
        ["submit", "run", "--address", f"http://127.0.0.1:{closed_port()}"]
        + ["--config", "examples/npo_tiny.yaml"]
    )
    err = capsys.readouterr().err
    assert "data.path=runs/demo/data is inside the working dir but not uploaded" in err
    # on S3: no warning at all
    rc = main(
        ["submit", "run", "--address", f"http://127.0.0.1:{closed_port()}"]
        + run_args("s3://b/data", "s3://b/model", "s3://b/out")
    )
    assert "warning" not in capsys.readouterr().err


def test_a_config_the_cluster_cannot_read_is_refused(in_checkout, tmp_path, capsys):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text((ROOT / "examples" / "npo_tiny.yaml").read_text())
    rc = main(["submit", "run", "--address", "http://127.0.0.1:9", "--config", str(cfg)])
    assert rc == 2
    assert f"--config {cfg} is outside the working dir {ROOT}" in capsys.readouterr().err
    rc = main(
        ["submit", "run", "--image", "img:1", "--address", "http://127.0.0.1:9"]
        + ["--config", "examples/npo_tiny.yaml"]
    )
    assert rc == 2 and "put the config on s3://" in capsys.readouterr().err


def plan(*argv: str):
    args, job_argv = submit.submit_parser().parse_known_args(list(argv))
    return submit.plan_submission(args, job_argv)


def test_the_cluster_runs_what_ray_job_submit_would(
    in_checkout, tiny_data, nano_model_dir, monkeypatch
):
    monkeypatch.setenv("MY_TOKEN_FOR_TEST", "abc")
    p = plan(
        "run",
        "--env",
        "MY_TOKEN_FOR_TEST",
        "--env",
        "A=1",
        "--pip",
        "rich",
        *run_args("s3://b/data", "s3://b/model", "s3://b/out", "train.epochs=2"),
    )
    assert p.entrypoint() == (
        "python -m jobs.unlearn --config examples/npo_tiny.yaml data.path=s3://b/data "
        "model.path=s3://b/model output.dir=s3://b/out train.epochs=2"
    )
    env = p.runtime_env
    assert env["working_dir"] == str(ROOT) and {".venv", ".git"} <= set(env["excludes"])
    assert env["env_vars"]["MY_TOKEN_FOR_TEST"] == "abc" and env["env_vars"]["A"] == "1"
    assert env["env_vars"]["PYTHONUNBUFFERED"] == "1" and env["pip"] == ["rich"]
    assert p.output == "s3://b/out" and p.cfg.train.epochs == 2
    s3_only = [
        "data.path=s3://b/d",
        "model.path=s3://b/m",
        "output.dir=s3://b/o",
        "method.name=npo",
    ]
    image = plan("run", "--image", "reg/unlearn:1", *s3_only)
    assert image.runtime_env.keys() == {"env_vars", "image_uri"}  # no working dir, no pip
    assert image.entrypoint() == f"python -m jobs.unlearn {' '.join(s3_only)}"
    with pytest.raises(submit.ConfigError, match="do not combine"):
        plan("run", "--image", "i", "--pip", "x", *run_args("s3://d", "s3://m", "s3://o"))
    with pytest.raises(submit.ConfigError, match="not set in this shell"):
        plan("run", "--env", "SURELY_NOT_SET_123", *run_args("s3://d", "s3://m", "s3://o"))


def test_a_local_config_becomes_relative_to_the_working_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    p = plan(
        "run",
        "--working-dir",
        str(ROOT),
        f"--config={ROOT / 'examples' / 'npo_tiny.yaml'}",
        "output.dir=s3://b/o",
    )
    assert p.argv[0] == "--config=examples/npo_tiny.yaml"
    with pytest.raises(submit.ConfigError, match="not this project's checkout"):
        plan("run", "--config", str(ROOT / "examples" / "npo_tiny.yaml"))


def test_submission_ids_follow_output_and_config(in_checkout):
    base = ("run", *run_args("s3://b/d", "s3://b/m", "s3://b/out"))
    a, again = plan(*base), plan(*base)
    assert a.base_id == again.base_id and a.base_id.startswith("unlearn-run-")
    assert plan(*base, "train.lr=2e-3").base_id != a.base_id  # another config
    moved = plan("run", *run_args("s3://b/d", "s3://b/m", "s3://b/other"))
    assert moved.digest == a.digest and moved.base_id != a.base_id  # same config elsewhere
    # how it is resumed or kept does not change what it computes
    assert plan(*base, "output.keep_checkpoints=5", "--overwrite").base_id == a.base_id
    ft = ["--config", "examples/finetune_tiny.yaml", "data.path=s3://b/d", "model.path=s3://b/m"]
    assert plan("finetune", *ft, "output.dir=s3://b/out").base_id.startswith("unlearn-finetune-")


def job(sid, status, base, digest="c" * 64, output="s3://b/out", start=1):
    meta = {
        "unlearn_job": "run",
        "unlearn_output": output,
        "unlearn_config_hash": digest,
        "unlearn_base_id": base,
    }
    return SimpleNamespace(
        submission_id=sid, status=status, metadata=meta, start_time=start, entrypoint="x"
    )


def test_resubmission_follows_resumes_or_refuses(in_checkout):
    p = plan("run", *run_args("s3://b/d", "s3://b/m", "s3://b/out"))
    b = p.base_id
    assert submit.decide(p, [], False) == ("submit", b, 1)
    assert submit.decide(p, [job(b, "RUNNING", b)], False) == ("follow", b, 1)
    assert submit.decide(p, [job(b, "PENDING", b)], True) == ("follow", b, 1)
    # failed or stopped: a new attempt resumes from the checkpoints
    assert submit.decide(p, [job(b, "FAILED", b)], False) == ("submit", f"{b}-r2", 2)
    two = [job(b, "FAILED", b, start=1), job(f"{b}-r2", "STOPPED", b, start=2)]
    assert submit.decide(p, two, False) == ("submit", f"{b}-r3", 3)
    assert submit.decide(p, [job(b, "SUCCEEDED", b)], False) == ("done", b, 1)
    assert submit.decide(p, [job(b, "SUCCEEDED", b)], True) == ("submit", f"{b}-r2", 2)
    other = "unlearn-run-x-y"
    with pytest.raises(submit.ClusterError, match="is writing s3://b/out with another config"):
        submit.decide(p, [job(other, "RUNNING", other)], True)
    with pytest.raises(submit.ClusterError, match="pass --overwrite to replace it"):
        submit.decide(p, [job(other, "FAILED", other)], False)
    assert submit.decide(p, [job(other, "SUCCEEDED", other)], True) == ("submit", b, 1)


def test_sweep_and_eval_and_demo_arguments_are_the_jobs_own(in_checkout, capsys):
    e = plan("eval", "--model", "s3://b/m", "--data", "s3://b/d", "--out", "s3://b/e")
    assert e.entrypoint().startswith("python -m jobs.eval --model s3://b/m")
    assert e.output == "s3://b/e"
    d = plan("demo", "--out", "s3://b/demo")
    assert d.entrypoint() == "python -m jobs.demo --out s3://b/demo" and d.output == "s3://b/demo"
    sweep = [
        "--config",
        "examples/sweep_tiny.yaml",
        "out=s3://b/sweep",
        "run.data.path=s3://b/d",
        "run.model.path=s3://b/m",
        "run.model.retain_model=runs/retain",
    ]
    s = plan("sweep", *sweep)
    assert (
        s.entrypoint() == f"python -m jobs.sweep {' '.join(sweep)}" and s.output == "s3://b/sweep"
    )
    assert s.base_id.startswith("unlearn-sweep-")
    # a new attempt after a failed one is `--resume OUT` (Tune restores the experiment)
    assert s.entrypoint(s.kind.resume_argv(s.cfg)) == "python -m jobs.sweep --resume s3://b/sweep"
    assert "run.model.retain_model=" in capsys.readouterr().err  # a local path is named


def test_a_cluster_still_starting_is_waited_for(monkeypatch, capsys):
    """The Job API answers HTTP 500 "No available agent" until a node's agent registers."""
    monkeypatch.setattr(submit.time, "sleep", lambda s: None)

    class Starting:
        calls = 0

        def submit_job(self, **kwargs):
            self.calls += 1
            if self.calls < 3:
                raise RuntimeError(
                    "Request failed with status code 500: No available agent to submit job"
                )
            return kwargs["submission_id"]

    client = Starting()
    assert submit.submit_job(client, submission_id="x", entrypoint="e") == "x"
    assert client.calls == 3 and "no job agent up yet" in capsys.readouterr().err
    monkeypatch.setattr(submit, "AGENT_WAIT_S", 0.0)
    with pytest.raises(RuntimeError, match="No available agent"):
        submit.submit_job(Starting(), submission_id="x", entrypoint="e")
