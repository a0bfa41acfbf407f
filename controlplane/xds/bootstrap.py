"""The bootstrap a stock gRPC xDS client needs to use this control plane (GRPC_XDS_BOOTSTRAP[_CONFIG])."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from controlplane.security.tls import ClientTLS
from controlplane.xds.ads import ENVIRONMENT_KEY


def bootstrap(servers: str | Sequence[str], node_id: str, *, cluster: str = "", zone: str = "controlplane",
              environment: str = "", tls: ClientTLS | None = None) -> dict[str, Any]:
    """A bootstrap pointing at the control plane: `servers`, one "host:port" or several replicas in order.

    `zone` is always set: grpc-js fails without a node locality. `environment` names the config environment
    whose traffic policies this node follows (the default layer when empty). `tls`: the ADS stream uses TLS
    (and mTLS with a certificate) with these files, gRFC A65's "tls" channel credentials.
    """
    node: dict[str, Any] = {"id": node_id, "cluster": cluster or node_id, "locality": {"zone": zone}}
    if environment:
        node["metadata"] = {ENVIRONMENT_KEY: environment}
    servers = [servers] if isinstance(servers, str) else list(servers)
    creds: dict[str, Any] = {"type": "insecure"}
    if tls is not None:
        files = {"ca_certificate_file": tls.ca, "certificate_file": tls.cert, "private_key_file": tls.key}
        creds = {"type": "tls", "config": {key: str(Path(value).resolve()) for key, value in files.items() if value}}
    return {
        "xds_servers": [{"server_uri": server, "channel_creds": [creds], "server_features": ["xds_v3"]}
                        for server in servers],
        "node": node,
    }


def bootstrap_json(servers: str | Sequence[str], node_id: str, **options: Any) -> str:
    return json.dumps(bootstrap(servers, node_id, **options), indent=2, sort_keys=True)
