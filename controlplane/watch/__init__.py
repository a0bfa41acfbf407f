"""Watch fan-out: one Consul blocking query feeding many gRPC streams."""

from controlplane.watch.blocking_query import Backoff, BlockingQueryWatch, Fetch, Snapshot
from controlplane.watch.reachability import Reachability
from controlplane.watch.slots import FairSlots
from controlplane.watch.watch_set import WatchSet

__all__ = ["Backoff", "BlockingQueryWatch", "FairSlots", "Fetch", "Reachability", "Snapshot", "WatchSet"]
