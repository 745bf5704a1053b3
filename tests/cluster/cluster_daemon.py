"""A multi-node Ray cluster on this machine, in its own process, driven over stdin/stdout.

Ray refuses several ``ray start`` nodes on loopback (a worker node's 127.0.0.1 is rewritten to
the machine's network address unless RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0, and with that switch
``ray start`` refuses to join a head), but its own multi-node test harness,
``ray.cluster_utils.Cluster``, starts real nodes (a raylet, object store, dashboard agent and
runtime-env agent each) on 127.0.0.1 with the switch off. This process owns such a cluster so that
the test process never touches Ray itself (the session fixture ``ray_local`` keeps its own
instance): each request is one JSON line on stdin, each reply one JSON line on stdout.

    {"op": "add_node", "num_cpus": 1}        -> {"ok": true, "node_id": "..."}
    {"op": "remove_node", "node_id": "..."}  -> {"ok": true}   (SIGKILL: the node dies)
    {"op": "nodes"}                          -> {"ok": true, "nodes": [...]}
    {"op": "shutdown"}                       -> {"ok": true}   (then exits)

End of stdin also shuts the cluster down; Ray's reaper kills the node processes if this process
itself is killed.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import time
import traceback


def main() -> int:
    """Start the head, serve requests until shutdown."""
    p = argparse.ArgumentParser()
    p.add_argument("--gcs-port", type=int, required=True)
    p.add_argument("--dashboard-port", type=int, required=True)
    p.add_argument("--head-cpus", type=float, default=0)
    p.add_argument("--system-config", default="{}", help="JSON: Ray system config overrides")
    args = p.parse_args()
    # replies go to the original stdout; anything Ray prints goes to stderr
    global _OUT
    _OUT = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)

    from ray.cluster_utils import Cluster

    t0 = time.time()
    cluster = Cluster(
        initialize_head=True,
        connect=False,
        head_node_args={
            "num_cpus": args.head_cpus,
            "gcs_server_port": args.gcs_port,
            "node_ip_address": "127.0.0.1",
            "include_dashboard": True,
            "dashboard_host": "127.0.0.1",
            "dashboard_port": args.dashboard_port,
            # Ray's fixed default (52365) may be taken by another Ray on this machine
            "dashboard_agent_listen_port": free_port(),
            "object_store_memory": 100 * 1024 * 1024,
            "_system_config": json.loads(args.system_config),
        },
    )
    nodes = {cluster.head_node.node_id: cluster.head_node}
    reply(
        {
            "ok": True,
            "gcs_address": cluster.gcs_address,
            "dashboard": f"http://127.0.0.1:{args.dashboard_port}",
            "head_node_id": cluster.head_node.node_id,
            "start_s": round(time.time() - t0, 1),
        }
    )
    for line in sys.stdin:
        if not line.strip():
            continue
        req = json.loads(line)
        try:
            if req["op"] == "add_node":
                t = time.time()
                node = cluster.add_node(
                    num_cpus=req.get("num_cpus", 1),
                    resources=req.get("resources") or {},
                    node_ip_address="127.0.0.1",
                    object_store_memory=100 * 1024 * 1024,
                    dashboard_agent_listen_port=free_port(),
                )
                nodes[node.node_id] = node
                reply({"ok": True, "node_id": node.node_id, "start_s": round(time.time() - t, 1)})
            elif req["op"] == "remove_node":
                node = nodes.pop(req["node_id"])
                cluster.remove_node(node, allow_graceful=False)
                reply({"ok": True})
            elif req["op"] == "nodes":
                reply({"ok": True, "nodes": sorted(nodes)})
            elif req["op"] == "shutdown":
                break
            else:
                reply({"ok": False, "error": f"unknown op {req['op']!r}"})
        except Exception as exc:  # the test sees the failure; the cluster stays up
            reply(
                {
                    "ok": False,
                    "error": f"{type(exc).__name__}: {exc}",
                    "trace": traceback.format_exc(),
                }
            )
    cluster.shutdown()
    reply({"ok": True, "stopped": True})
    return 0


_OUT = sys.stdout


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def reply(obj: dict) -> None:
    """One JSON line on the reply channel (the process's original stdout)."""
    _OUT.write(json.dumps(obj) + "\n")
    _OUT.flush()


if __name__ == "__main__":
    sys.exit(main())
