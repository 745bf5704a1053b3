"""``unlearn serve``: flags checked before Ray starts, the config it writes, the shipped
serve/config.yaml, and (slow) the real command against the session's Ray: start, answer, reload
on SIGHUP, stop on Ctrl-C."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
import yaml

from cli import main
from tests.conftest import free_port
from tests.serve.conftest import KEY, known_retain

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def model_and_index(nano_model_dir, tiny_data, tmp_path_factory):
    from unlearn.data import Dataset
    from unlearn.guard.index import build_from_dataset, save_index

    index = tmp_path_factory.mktemp("cli-guard") / "ix"
    save_index(build_from_dataset(Dataset(tiny_data), ["forget10"], embeddings=False), index)
    return nano_model_dir, index


def run_cli(args, capsys):
    code = main(["serve", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_every_flag_is_checked_before_ray_starts(
    model_and_index, keys_file, tmp_path, capsys, monkeypatch
):
    model, index = model_and_index
    monkeypatch.delenv("UNLEARN_API_KEYS", raising=False)
    keys = ["--api-keys-file", str(keys_file)]
    cases = [
        (["--model", f"a={tmp_path}/none", "--guard", f"a={index}", *keys], "no config.json"),
        (["--model", str(model), "--guard", f"a={index}", *keys], "expected ID=PATH"),
        (
            ["--model", f"a={model}", "--model", f"b={model}", "--guard", f"a={index}", *keys],
            "model 'b' has no guard",
        ),
        (["--model", f"a={model}", "--guard", f"c={index}", *keys], "'c' is not a --model id"),
        (["--model", f"a={model}", "--guard", f"a={tmp_path}", *keys], "not a guard index"),
        (["--model", f"a={model}", "--guard", f"a={index}"], "no API keys in UNLEARN_API_KEYS"),
        (
            [
                "--model",
                f"a={model}",
                "--guard",
                f"a={index}",
                "--api-keys-file",
                str(tmp_path / "k"),
            ],
            "does not exist",
        ),
        (
            [
                "--model",
                f"a={model}",
                "--guard",
                f"a={index}",
                *keys,
                "--guard-set",
                "output.cvo=1",
            ],
            "output.cvo",
        ),
        (
            ["--model", f"a={model}", "--guard", f"a={index}", *keys, "--set", "limits.max_body=1"],
            "limits.max_body",
        ),
        (["--model", f"a b={model}", "--guard", f"a b={index}", *keys], "models.a b"),
        (
            ["--model", f"a={model}", "--guard", f"a={index}", *keys, "--engine", "vllm"],
            "pip install 'unlearn[vllm]'",
        ),
    ]
    for args, message in cases:
        code, _, err = run_cli(args, capsys)
        assert code == 2 and err.startswith("error: ") and message in err, (args, err)
        assert err.count("\n") == 1  # one line, no traceback


def test_print_config_writes_a_serve_config_on_loopback(model_and_index, keys_file, capsys):
    from ray.serve.schema import ServeDeploySchema

    from serve.config import guards_config, parse_serve_config

    model, index = model_and_index
    code, out, _ = run_cli(
        [
            "--model",
            f"a={model}",
            "--model",
            f"b={model}",
            "--guard",
            str(index),
            "--api-keys-file",
            str(keys_file),
            "--port",
            "8123",
            "--guard-set",
            "embeddings=false",
            "--set",
            "limits.max_prompt_chars=999",
            "--print-config",
        ],
        capsys,
    )
    assert code == 0
    cfg = yaml.safe_load(out)
    schema = ServeDeploySchema.model_validate(cfg)
    assert schema.http_options.host == "127.0.0.1" and schema.http_options.port == 8123
    app = cfg["applications"][0]
    assert app["import_path"] == "serve.app:app_builder"
    serve_cfg = parse_serve_config(app["args"])
    assert serve_cfg.limits.max_prompt_chars == 999 and serve_cfg.metrics_port == 8124
    guards = guards_config(app["deployments"][0]["user_config"])
    assert set(guards.guards) == {"a", "b"}  # the bare --guard bound both
    assert all(
        Path(g.index).is_absolute() and g.overrides == {"embeddings": False}
        for g in guards.guards.values()
    )
    assert KEY not in out  # keys stay in their file


def test_the_shipped_serve_config_is_valid():
    from ray.serve.schema import ServeDeploySchema

    from serve.config import guards_config, parse_serve_config, unbound_models

    cfg = yaml.safe_load((ROOT / "serve" / "config.yaml").read_text())
    schema = ServeDeploySchema.model_validate(cfg)
    assert schema.http_options.host == "127.0.0.1"
    app = cfg["applications"][0]
    serve_cfg = parse_serve_config(app["args"])
    ingress = next(d for d in app["deployments"] if d["name"] == "OpenAIIngress")
    guards = guards_config(ingress["user_config"])
    assert unbound_models(list(serve_cfg.models), guards) == []


@pytest.mark.slow
def test_unlearn_serve_end_to_end(ray_local, leaky, keys_file, tmp_path):
    """The command a user runs, on the session's Ray: answers, refuses, reloads, stops."""
    import ray

    port, mport = free_port(), free_port()
    audit = tmp_path / "audit.jsonl"
    cmd = [
        str(Path(sys.executable).with_name("unlearn")),
        "serve",
        "--address",
        ray.get_runtime_context().gcs_address,
        "--model",
        f"leaky={leaky.path}",
        "--guard",
        f"leaky={leaky.index10}",
        "--api-keys-file",
        str(keys_file),
        "--port",
        str(port),
        "--metrics-port",
        str(mport),
        "--audit-log",
        str(audit),
        "--guard-set",
        "embeddings=false",
        "--set",
        "model_num_cpus=0.5",
        "--set",
        "ingress_num_cpus=0.5",
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )
    lines: list[str] = []

    def wait_for(text: str, timeout: float) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            line = proc.stdout.readline()
            if not line and proc.poll() is not None:
                break
            lines.append(line)
            if text in line:
                return
        raise AssertionError(f"no {text!r} in the output:\n{''.join(lines)[-3000:]}")

    try:
        wait_for("serving leaky", 300)
        base = f"http://127.0.0.1:{port}"
        headers = {"Authorization": f"Bearer {KEY}"}
        assert (
            requests.get(base + "/v1/models", headers=headers, timeout=30).json()["data"][0]["id"]
            == "leaky"
        )
        r0 = known_retain(leaky.dataset)[0]
        ask = {
            "model": "leaky",
            "messages": [{"role": "user", "content": r0["question"]}],
            "temperature": 0,
        }
        r = requests.post(base + "/v1/chat/completions", json=ask, headers=headers, timeout=60)
        assert (
            r.status_code == 200
            and r.json()["choices"][0]["message"]["content"].strip() == r0["answer"]
        )
        fact = leaky.dataset.records("forget10")[0]
        paste = {
            "model": "leaky",
            "messages": [{"role": "user", "content": f"Notes: {fact['answer']}"}],
        }
        r = requests.post(base + "/v1/chat/completions", json=paste, headers=headers, timeout=60)
        assert r.status_code == 400 and r.json()["error"]["code"] == "content_filter"
        assert (
            "unlearn_serve_requests_total"
            in requests.get(f"http://127.0.0.1:{mport}/metrics", timeout=10).text
        )
        proc.send_signal(signal.SIGHUP)
        wait_for("guards reloaded (generation 1)", 120)
        r = requests.post(base + "/v1/chat/completions", json=paste, headers=headers, timeout=60)
        assert r.status_code == 400
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=120) == 0
        assert audit.read_text().count('"direction": "input"') == 2
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_the_demo_prints_a_serve_command_that_parses():
    import shlex

    from cli import build_parser
    from jobs.demo import serve_instructions

    text = serve_instructions(
        "/r/demo", "/r/demo/data", "forget10", ["npo", "ga"], "Where was X's home?"
    )
    start = text.index("unlearn serve")
    command = text[start : text.index("\n\n", start)].replace("\\\n", " ")
    args = build_parser().parse_args(shlex.split(command)[1:])
    assert args.model == [
        "target=/r/demo/target/model",
        "npo=/r/demo/npo/model",
        "ga=/r/demo/ga/model",
    ]
    assert args.guard == ["target=/r/demo/guard", "npo=/r/demo/guard", "ga=/r/demo/guard"]
    assert args.api_keys_file == "/r/demo/api_keys.txt" and args.port == 8000
    assert (
        "unlearn guard build --data /r/demo/data --forget-split forget10 --out /r/demo/guard"
        in text
    )
    curl = text[text.index("curl -s") :].split("\n\n")[0].replace("\\\n", " ")
    body = shlex.split(curl)[-1]
    assert __import__("json").loads(body)["messages"][0]["content"] == "Where was X's home?"
    snippet = text[text.index("python - <<'EOF'\n") + 17 : text.rindex("EOF")]
    compile(snippet, "snippet", "exec")  # the openai snippet is valid Python
    makefile = (ROOT / "Makefile").read_text()
    assert "serve-demo:" in makefile and "--guard npo=$(DEMO_OUT)/guard" in makefile
