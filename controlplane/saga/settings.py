"""The saga orchestrator's settings: every interval a test may want to shorten is here."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from controlplane.flags import seconds, whole
from controlplane.saga.eventstore.txn import MAX_OPS
from controlplane.watch import Backoff

MAX_WATCHES = 10_000  # each one a connection to the agent: far past any agent's per-client limit


@dataclass(frozen=True)
class SagaSettings:
    """How the saga orchestrator runs. Durations are in seconds."""

    # Every saga key lives under this Consul KV prefix (ends with '/').
    kv_prefix: str = "controlplane/saga/"
    # Names this replica's Consul session and liveness check; "" derives it from host name and port.
    # Must be unique among live replicas: a replica starting with an id reclaims that id's old session.
    replica_id: str = ""
    # TTL of the replica's Consul session (Consul accepts 10..86400); renewed every third of it.
    session_ttl: float = 10.0
    # TTL of an agent check bound to the session, passed every third of it on the local agent (no
    # leader needed, so elections cost no session). A replica that stops passing it loses its session,
    # and so its saga locks, within about this long: the time other replicas take over a dead replica's
    # sagas, and the longest pause of the Consul agent a session survives. 0: TTL only (Consul then
    # takes up to twice `session_ttl` to notice a dead replica).
    liveness_ttl: float = 15.0
    # Group commit: appends arriving within this window share one Consul transaction...
    group_commit_window: float = 0.002
    # ...of at most this many operations (Consul allows 64)...
    group_commit_max_ops: int = 60
    # ...with at most this many transactions in flight.
    group_commit_max_inflight: int = 4
    # A snapshot of the saga state is written every this many events, bounding what a resume reads.
    snapshot_every: int = 16
    # Besides reacting to session changes, look for sagas without a live driver this often.
    takeover_interval: float = 5.0
    # Longest a saga subscription's Consul blocking query waits before asking again.
    watch_wait: float = 30.0
    # ...and a subscription to one saga (WatchSaga on a replica that does not drive it): see EventStore.
    stream_watch_wait: float = 2.0
    # Saga subscriptions' blocking queries (one Consul connection each) open at once. More wait their turn
    # here rather than go past the agent's connections per client, which would refuse the event store's own
    # connections too (docs/saga.md, "Limits and open points").
    max_watches: int = 128
    # Pauses between retries of a Consul request that failed (e.g. Consul restarting).
    consul_backoff: Backoff = field(default_factory=lambda: Backoff(initial=0.05, maximum=1.0))
    # A YAML or JSON file of saga definitions registered at start (when they differ from the latest).
    definitions_file: str = ""
    # ...and registered again this often (seconds), so definitions Consul lost come back by themselves.
    definitions_reassert: float = 10.0
    # JSON of controlplane.interceptors.ClientPolicy for calls to participants; "" = its defaults.
    participant_policy: str = ""
    # A compensation refused by an open circuit breaker (the call never left this process) waits until
    # the breaker lets a trial call through instead of spending an attempt, for at most this many
    # seconds in all; refusals after that count as failed attempts. 0: refusals always count.
    compensation_breaker_wait: float = 60.0
    # Sagas one replica drives at once (each holds its state in memory, up to a few hundred KiB): past it
    # StartSaga is RESOURCE_EXHAUSTED and orphaned sagas are left for replicas with room, so a flood of
    # sagas whose participants hang cannot fill this process's memory.
    max_driving: int = 5000
    # ...of which at most this many started by one caller (its authenticated identity, else its address),
    # so one client's flood leaves room for the others' sagas. 0: half of max_driving.
    max_driving_per_caller: int = 0
    # Completed and compensated sagas are removed this long after they ended (0: kept for ever); StartSaga
    # is idempotent by saga id for as long as a saga is kept. Sagas needing attention are always kept.
    # A 3-step saga is about a dozen Consul keys: rate x retention x 12 must fit what Consul holds.
    retention: float = 86400.0
    # ...looked for this often.
    sweep_interval: float = 60.0

    @property
    def caller_share(self) -> int:
        """Sagas one caller may have driven here at once."""
        share = self.max_driving_per_caller or max(1, self.max_driving // 2)
        return min(share, self.max_driving)

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser, env: Mapping[str, str]) -> None:
        """The `--saga-*` flags of `controlplane serve`, each with a CONTROLPLANE_SAGA_* variable."""
        d = SagaSettings()

        def flag(name: str, kind: Callable[[str], object], default: object, text: str) -> None:
            var = "CONTROLPLANE_SAGA_" + name.upper().replace("-", "_")
            # A value from the environment is a string, which argparse parses as it parses the flag's.
            parser.add_argument(f"--saga-{name}", type=kind, default=env.get(var, default),
                                help=f"{text} [env {var}, default %(default)s]")

        flag("kv-prefix", str, d.kv_prefix, "Consul KV prefix of saga state")
        flag("replica-id", str, d.replica_id, "unique name of this replica (default host:port)")
        flag("session-ttl", seconds(10), d.session_ttl, "seconds of the replica's Consul session TTL (>= 10)")
        flag("liveness-ttl", seconds(0.1, zero=True), d.liveness_ttl,
             "seconds after which a silent replica loses its sagas (0: off)")
        flag("group-commit-window", seconds(0, 1), d.group_commit_window, "seconds appends wait to share a transaction")
        flag("group-commit-max-ops", whole(1, MAX_OPS), d.group_commit_max_ops,
             "operations per Consul transaction (<= 64)")
        flag("group-commit-max-inflight", whole(1, 1000), d.group_commit_max_inflight,
             "Consul transactions in flight at once")
        flag("snapshot-every", whole(1, 100_000), d.snapshot_every, "events between saga snapshots")
        flag("takeover-interval", seconds(0.001), d.takeover_interval, "seconds between scans for orphaned sagas")
        flag("max-watches", whole(1, MAX_WATCHES), d.max_watches,
             "Consul blocking queries of the saga service open at once")
        flag("retry-max", seconds(0.001, 3600), d.consul_backoff.maximum,
             "longest pause, in seconds, between Consul retries")
        flag("definitions", str, d.definitions_file, "YAML/JSON file of saga definitions to register at start")
        flag("definitions-reassert", seconds(0.1), d.definitions_reassert,
             "seconds between registrations of the definitions file (restores what Consul lost)")
        flag("participant-policy", str, d.participant_policy, "JSON ClientPolicy for calls to participants")
        flag("compensation-breaker-wait", seconds(0), d.compensation_breaker_wait,
             "seconds a compensation may wait in all for open circuit breakers before refusals count as failures")
        flag("max-driving", whole(1, 1_000_000), d.max_driving,
             "sagas this replica drives at once; past it StartSaga is RESOURCE_EXHAUSTED")
        flag("max-driving-per-caller", whole(0, 1_000_000), d.max_driving_per_caller,
             "sagas started by one caller (identity, else address) this replica drives at once (0: half of "
             "--saga-max-driving)")
        flag("retention", seconds(1, 3650 * 86400, zero=True), d.retention,
             "seconds completed and compensated sagas are kept after they end (0: for ever)")
        flag("sweep-interval", seconds(0.1), d.sweep_interval, "seconds between sweeps for sagas past their retention")

    @classmethod
    def from_namespace(cls, args: argparse.Namespace) -> SagaSettings:
        return cls(
            kv_prefix=args.saga_kv_prefix,
            replica_id=args.saga_replica_id,
            session_ttl=args.saga_session_ttl,
            liveness_ttl=args.saga_liveness_ttl,
            group_commit_window=args.saga_group_commit_window,
            group_commit_max_ops=args.saga_group_commit_max_ops,
            group_commit_max_inflight=args.saga_group_commit_max_inflight,
            snapshot_every=args.saga_snapshot_every,
            takeover_interval=args.saga_takeover_interval,
            max_watches=args.saga_max_watches,
            consul_backoff=Backoff(initial=min(0.05, args.saga_retry_max), maximum=args.saga_retry_max),
            definitions_file=args.saga_definitions,
            definitions_reassert=args.saga_definitions_reassert,
            participant_policy=args.saga_participant_policy,
            compensation_breaker_wait=args.saga_compensation_breaker_wait,
            max_driving=args.saga_max_driving,
            max_driving_per_caller=args.saga_max_driving_per_caller,
            retention=args.saga_retention,
            sweep_interval=args.saga_sweep_interval,
        )
