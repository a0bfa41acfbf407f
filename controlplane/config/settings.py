"""Settings of the ConfigService part of the control plane. Sizes in bytes, durations in seconds."""

from __future__ import annotations

from dataclasses import dataclass

from controlplane.config.secrets import DEFAULT_ENV_PREFIX


@dataclass(frozen=True)
class ConfigSettings:
    # Largest layer (canonical JSON) or schema accepted. A layer write carries the content twice (the layer
    # and its history entry), base64-encoded, in one Consul transaction, which Consul caps at 512 KiB by
    # default (txn_max_req_len): 128 KiB keeps every write well inside it.
    max_layer_bytes: int = 128 * 1024
    # Consul's transaction size limit; raise together with the agent's txn_max_req_len.
    consul_txn_max_bytes: int = 512 * 1024
    # Environment variables the default secret provider reads: payment/api-key -> <prefix>PAYMENT_API_KEY.
    secret_env_prefix: str = DEFAULT_ENV_PREFIX
    # Longest a new WatchConfig stream waits for Consul's first answer before answering UNAVAILABLE.
    first_sync_timeout: float = 5.0
    # A service's watch nobody used for this long is stopped.
    idle_timeout: float = 300.0
    # Services whose config is watched at once (one Consul connection each); see WatchSet.
    max_watches: int = 128
    # Versions of a service's history kept (--config-history): each write removes the one this many
    # before it, so a service's history holds at most this many layers of up to max_layer_bytes each
    # (a loop of writes would otherwise grow Consul, which holds everything in memory, without bound).
    history: int = 1000
