"""Cluster launch files: ray_cluster.yaml against the Ray launcher's own schema (and the EC2 API
model for node configs), the KubeRay manifests against the CRD fields they use, and both against
the pinned Ray version and the jobs they run."""

from __future__ import annotations

import copy
import json
import re
import shlex
from pathlib import Path

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
KUBERAY = ROOT / "cluster" / "kuberay"
MANIFESTS = sorted(KUBERAY.glob("*.yaml"))
IMAGE_HOME = "/home/ray/unlearn"  # where cluster/Dockerfile puts the project


def pinned_ray() -> str:
    text = (ROOT / "pyproject.toml").read_text()
    found = re.search(r'"ray\[[^\]]*\]==([0-9.]+)"', text)
    assert found, "pyproject.toml pins no ray version"
    return found.group(1)


def launcher_config() -> dict:
    return yaml.safe_load((ROOT / "ray_cluster.yaml").read_text())


def launcher_schema() -> dict:
    import ray.autoscaler

    return json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())


def kuberay_schema() -> dict:
    return yaml.safe_load((Path(__file__).parent / "kuberay-v1.5.1.schema.yaml").read_text())


def validate_kuberay(doc: dict) -> None:
    """The whole schema, then the kind's own definition (for a precise error message)."""
    schema = kuberay_schema()
    kind = doc.get("kind")
    assert kind in ("RayCluster", "RayJob", "RayService"), kind
    own = {"$schema": schema["$schema"], "$defs": schema["$defs"], "$ref": f"#/$defs/{kind}"}
    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(own).iter_errors(doc))
    if error is not None:
        raise error
    jsonschema.validate(doc, schema, cls=jsonschema.Draft202012Validator)


# ---------------------------------------------------------------------------------------------
# ray_cluster.yaml


def test_launcher_config_passes_rays_own_schema_and_validation():
    from ray.autoscaler._private.util import prepare_config, validate_config

    cfg = launcher_config()
    jsonschema.validate(cfg, launcher_schema())
    validate_config(prepare_config(copy.deepcopy(cfg)))  # what `ray up` runs before launching


def test_the_launcher_schema_catches_a_misspelt_key():
    cfg = launcher_config()
    cfg["available_node_types"]["gpu_p4d"]["max_worker"] = 4
    with pytest.raises(jsonschema.ValidationError, match="max_worker"):
        jsonschema.validate(cfg, launcher_schema())


def _check_against_shape(value, shape, where: str) -> list[str]:
    """Keys and enum values of ``value`` against a botocore input shape (recursively)."""
    problems = []
    if shape.type_name == "structure":
        if not isinstance(value, dict):
            return [f"{where}: expected a mapping"]
        for key, sub in value.items():
            if key not in shape.members:
                problems.append(f"{where}.{key}: not a field of {shape.name}")
            else:
                problems += _check_against_shape(sub, shape.members[key], f"{where}.{key}")
    elif shape.type_name == "list":
        for i, item in enumerate(value):
            problems += _check_against_shape(item, shape.member, f"{where}[{i}]")
    elif shape.type_name == "string" and shape.enum and value not in shape.enum:
        problems.append(f"{where}: {value!r} is not one of {shape.name}")
    return problems


def test_node_configs_are_valid_ec2_run_instances_parameters():
    """AWS node_config goes to EC2 RunInstances as is: check it against botocore's EC2 model."""
    import botocore.session

    shape = (
        botocore.session.get_session()
        .get_service_model("ec2")
        .operation_model("RunInstances")
        .input_shape
    )
    problems = []
    for name, node in launcher_config()["available_node_types"].items():
        problems += _check_against_shape(node["node_config"], shape, name)
    assert problems == []
    bad = {"InstanceType": "p4d.24xlage", "InstanceMarketOptions": {"MarketTyp": "spot"}}
    assert len(_check_against_shape(bad, shape, "x")) == 2  # the check itself can fail


def test_launcher_node_types_head_drivers_and_gpu_workers():
    cfg = launcher_config()
    types = cfg["available_node_types"]
    head = types[cfg["head_node_type"]]
    assert head["resources"] == {"CPU": 0}  # nothing trains on the head
    gpu = {k: v for k, v in types.items() if v["node_config"]["InstanceType"].startswith("p")}
    assert gpu, "no GPU (p4d/p5) node type"
    for node in gpu.values():
        assert node["min_workers"] == 0 and node["max_workers"] >= 1
        assert node["node_config"]["InstanceType"] in {
            "p4d.24xlarge",
            "p4de.24xlarge",
            "p5.48xlarge",
        }
    spot = [v for v in gpu.values() if "InstanceMarketOptions" in v["node_config"]]
    assert spot and spot[0]["node_config"]["InstanceMarketOptions"]["MarketType"] == "spot"
    cpu = [
        k for k, v in types.items() if k != cfg["head_node_type"] and k not in gpu
    ]  # job and trial drivers
    assert cpu and all(types[k]["min_workers"] == 0 for k in cpu)
    assert (
        sum(v.get("max_workers", 0) for k, v in types.items() if k != "head") >= cfg["max_workers"]
    )


def test_launcher_image_matches_the_pinned_ray_and_installs_this_project():
    cfg = launcher_config()
    version = pinned_ray()
    images = [cfg["docker"]["image"], cfg["docker"]["head_image"]]
    images += [
        v["docker"]["worker_image"]
        for v in cfg["available_node_types"].values()
        if "docker" in v and "worker_image" in v["docker"]
    ]
    for image in images:
        assert re.fullmatch(rf"rayproject/ray:{re.escape(version)}-py311-(cpu|cu12\d)", image), (
            image
        )
    # the checkout is mounted on every node and installed there
    (remote, local), *_ = cfg["file_mounts"].items()
    assert local == "." and (ROOT / "pyproject.toml").exists()
    assert any("pip install" in c and remote in c for c in cfg["setup_commands"])
    assert ".venv" in cfg["rsync_exclude"]
    head_start = " ".join(cfg["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head_start  # reached through `ray dashboard` (ssh)
    # token authentication on every node, with the token file every node gets
    token = next(remote for remote, local in cfg["file_mounts"].items() if "auth_token" in local)
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        start = next(c for c in cfg[key] if "ray start" in c)
        assert "RAY_AUTH_MODE=token" in start and f"RAY_AUTH_TOKEN_PATH={token}" in start


# ---------------------------------------------------------------------------------------------
# KubeRay manifests


def manifest(name: str) -> dict:
    return yaml.safe_load((KUBERAY / name).read_text())


def test_there_are_the_four_manifests():
    assert {p.name for p in MANIFESTS} == {
        "raycluster.yaml",
        "rayjob-unlearn.yaml",
        "rayjob-sweep.yaml",
        "rayservice.yaml",
    }


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_manifest_matches_the_kuberay_crd_fields(path):
    validate_kuberay(yaml.safe_load(path.read_text()))


@pytest.mark.parametrize(
    "name, mutate, message",
    [
        ("rayjob-unlearn.yaml", lambda d: d["spec"].update(shutdownAfterJobFinish=True), "shutdownAfterJobFinish"),
        ("raycluster.yaml", lambda d: d["spec"]["workerGroupSpecs"][0].update(minReplicas=-1), "-1 is less than the minimum"),
        ("rayservice.yaml", lambda d: d["spec"].update(serveConfig={}), "serveConfig"),
        ("raycluster.yaml", lambda d: d["spec"]["headGroupSpec"]["rayStartParams"].update({"num-cpus": 0}), "0 is not of type 'string'"),
    ],
    ids=["misspelt-field", "negative-replicas", "v1-serveConfig", "non-string-start-param"],
)  # fmt: skip
def test_the_schema_refuses_what_kuberay_would_refuse_or_drop(name, mutate, message):
    doc = manifest(name)
    mutate(doc)
    with pytest.raises(jsonschema.ValidationError, match=message):
        validate_kuberay(doc)


def cluster_specs(doc: dict) -> list[dict]:
    spec = doc["spec"]
    return [
        s
        for s in (spec, spec.get("rayClusterSpec"), spec.get("rayClusterConfig"))
        if s and "headGroupSpec" in s
    ]


def containers(spec: dict) -> list[dict]:
    groups = [spec["headGroupSpec"], *spec.get("workerGroupSpecs", [])]
    return [c for g in groups for c in g["template"]["spec"]["containers"]]


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_manifest_runs_the_pinned_ray_image_with_gpus_requested_as_limits(path):
    doc = yaml.safe_load(path.read_text())
    version = pinned_ray()
    (spec,) = cluster_specs(doc)
    assert spec["rayVersion"] == version
    assert spec["authOptions"]["mode"] == "token"  # Ray 2.60 clusters authenticate
    for c in containers(spec):
        assert f"-ray{version}-" in c["image"], c["image"]
        limits, requests = c["resources"]["limits"], c["resources"]["requests"]
        assert limits.get("nvidia.com/gpu") == requests.get("nvidia.com/gpu")
    assert spec["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    dockerfile = (ROOT / "cluster" / "Dockerfile").read_text()
    assert f"FROM rayproject/ray:{version}-py311-cu12" in dockerfile
    assert f"WORKDIR {IMAGE_HOME}" in dockerfile


def entrypoint(doc: dict) -> tuple[str, list[str]]:
    argv = shlex.split(doc["spec"]["entrypoint"])
    assert argv[:2] == ["python", "-m"], argv
    return argv[2], argv[3:]


def test_rayjob_unlearn_runs_a_valid_config_on_enough_gpus():
    """The entrypoint's arguments load with the job's own loader (the config shipped in the
    image), and the GPU group can hold the run's workers."""
    from ray.runtime_env import RuntimeEnv

    from jobs.common import parse_job_args
    from jobs.unlearn import check

    doc = manifest("rayjob-unlearn.yaml")
    module, argv = entrypoint(doc)
    assert module == "jobs.unlearn"
    argv = [a.replace(IMAGE_HOME, str(ROOT)) for a in argv]
    _, cfg = parse_job_args("jobs.unlearn", None, argv, check=check)
    assert cfg.output.dir.startswith("s3://") and cfg.data.path.startswith("s3://")
    spec = doc["spec"]
    assert spec["shutdownAfterJobFinishes"] is True and spec["backoffLimit"] >= 1
    RuntimeEnv(**yaml.safe_load(spec["runtimeEnvYAML"]))  # Ray accepts the runtime env
    gpus = sum(
        int(g["template"]["spec"]["containers"][0]["resources"]["limits"].get("nvidia.com/gpu", 0))
        * g["maxReplicas"]
        for g in spec["rayClusterSpec"]["workerGroupSpecs"]
    )
    assert cfg.scaling.use_gpu and gpus >= cfg.scaling.num_workers


def test_rayjob_sweep_runs_the_sweep_job():
    from ray.runtime_env import RuntimeEnv

    doc = manifest("rayjob-sweep.yaml")
    module, argv = entrypoint(doc)
    assert module == "jobs.sweep" and argv[0] == "--config"
    RuntimeEnv(**yaml.safe_load(doc["spec"]["runtimeEnvYAML"]))
    assert doc["spec"]["shutdownAfterJobFinishes"] is True
    groups = {g["groupName"] for g in doc["spec"]["rayClusterSpec"]["workerGroupSpecs"]}
    assert {"cpu-driver", "gpu-a100x8"} <= groups
    if (ROOT / "jobs" / "sweep.py").exists():  # the sweep job's own parser takes the arguments
        from jobs.sweep import parser

        args = parser().parse_args(argv)
        assert args.config.startswith("s3://")


def test_rayservice_serve_config_is_a_valid_serve_deploy_config():
    from ray.serve.schema import ServeDeploySchema

    doc = manifest("rayservice.yaml")
    serve_cfg = yaml.safe_load(doc["spec"]["serveConfigV2"])
    schema = ServeDeploySchema.parse_obj(serve_cfg)  # Ray Serve's own config schema
    (app,) = schema.applications
    module, _, attr = app.import_path.partition(":")
    assert module == "serve.app" and attr
    assert schema.http_options.host == "0.0.0.0"  # the pod's serve Service must reach it
    # the app's own checks: its arguments, the guards' user_config, every model guarded
    import importlib

    from serve.config import guards_config, parse_serve_config, unbound_models

    assert callable(getattr(importlib.import_module(module), attr))
    cfg = parse_serve_config(app.args)
    (ingress,) = [d for d in app.deployments if d.name == "OpenAIIngress"]
    guards = guards_config(ingress.user_config)
    assert cfg.models and unbound_models(list(cfg.models), guards) == []
    assert all(p.startswith("s3://") for p in cfg.models.values())
    assert cfg.model_num_gpus >= 1  # the GPU group serves the models
