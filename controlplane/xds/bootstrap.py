"""The bootstrap a stock gRPC xDS client needs to use this control plane (GRPC_XDS_BOOTSTRAP[_CONFIG])."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from controlplane.xds.ads import ENVIRONMENT_KEY


def bootstrap(servers: str | Sequence[str], node_id: str, *, cluster: str = "", zone: str = "controlplane",
              environment: str = "") -> dict[str, Any]:
    """A bootstrap pointing at the control plane: `servers`, one "host:port" or several replicas in order.

    `zone` is always set: grpc-js fails without a node locality. `environment` names the config environment
    whose traffic policies this node follows (the default layer when empty).
    """
    node: dict[str, Any] = {"id": node_id, "cluster": cluster or node_id, "locality": {"zone": zone}}
    if environment:
        node["metadata"] = {ENVIRONMENT_KEY: environment}
    servers = [servers] if isinstance(servers, str) else list(servers)
    return {
        "xds_servers": [{"server_uri": server, "channel_creds": [{"type": "insecure"}], "server_features": ["xds_v3"]}
                        for server in servers],
        "node": node,
    }


def bootstrap_json(servers: str | Sequence[str], node_id: str, **options: Any) -> str:
    return json.dumps(bootstrap(servers, node_id, **options), indent=2, sort_keys=True)
