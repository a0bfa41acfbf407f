"""Watch fan-out: one Consul blocking query feeding many gRPC streams."""

from controlplane.watch.blocking_query import Backoff, BlockingQueryWatch, Fetch, Snapshot
from controlplane.watch.watch_set import WatchSet

__all__ = ["Backoff", "BlockingQueryWatch", "Fetch", "Snapshot", "WatchSet"]
