"""A minimal Ray Serve application for the replica-failure test (serve/ has not landed on main
yet): one deployment scoring text with a real model, 2 replicas, deployed through the dashboard's
REST API from a Serve config file (``serve deploy``), as a RayService does."""

from __future__ import annotations

from typing import Any

from ray import serve
from ray.serve import Application
from starlette.requests import Request


@serve.deployment
class Scorer:
    """Mean token NLL of a text under the model (one forward pass)."""

    def __init__(self, model_dir: str):
        from unlearn.models import load_model

        self.model, self.tokenizer = load_model(model_dir)
        self.model.eval()

    async def __call__(self, request: Request) -> dict[str, Any]:
        """POST {"text": ...} -> {"nll": float, "tokens": int, "replica": id}."""
        import torch

        text = (await request.json())["text"]
        ids = self.tokenizer(text, return_tensors="pt").input_ids
        with torch.no_grad():
            loss = self.model(input_ids=ids, labels=ids).loss
        replica = serve.get_replica_context().replica_id.unique_id
        return {"nll": float(loss), "tokens": int(ids.shape[1]), "replica": replica}


def app_builder(args: dict[str, Any]) -> Application:
    """``import_path: tests.cluster.serve_app:app_builder``; args: model, replicas, cpus."""
    return Scorer.options(
        num_replicas=int(args.get("replicas", 2)),
        ray_actor_options={"num_cpus": float(args.get("cpus", 0.25))},
        health_check_period_s=1,
        health_check_timeout_s=10,
    ).bind(args["model"])
