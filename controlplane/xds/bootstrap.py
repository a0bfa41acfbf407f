"""The bootstrap a stock gRPC xDS client needs to use this control plane (GRPC_XDS_BOOTSTRAP[_CONFIG])."""

from __future__ import annotations

import json
from typing import Any

from controlplane.xds.ads import ENVIRONMENT_KEY


def bootstrap(server: str, node_id: str, *, cluster: str = "", zone: str = "controlplane",
              environment: str = "") -> dict[str, Any]:
    """A bootstrap pointing at the control plane `server` ("host:port").

    `zone` is always set: grpc-js fails without a node locality. `environment` names the config environment
    whose traffic policies this node follows (the default layer when empty).
    """
    node: dict[str, Any] = {"id": node_id, "cluster": cluster or node_id, "locality": {"zone": zone}}
    if environment:
        node["metadata"] = {ENVIRONMENT_KEY: environment}
    return {
        "xds_servers": [{"server_uri": server, "channel_creds": [{"type": "insecure"}],
                         "server_features": ["xds_v3"]}],
        "node": node,
    }


def bootstrap_json(server: str, node_id: str, **options: Any) -> str:
    return json.dumps(bootstrap(server, node_id, **options), indent=2, sort_keys=True)
