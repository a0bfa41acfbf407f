"""A small append-only event store on Consul KV, with group commit and blocking-query subscriptions."""

from controlplane.saga.eventstore.group_commit import GroupCommitter
from controlplane.saga.eventstore.model import Event, RecordedEvent, StreamHead, StreamSlice
from controlplane.saga.eventstore.store import EventStore, EventStoreError

__all__ = ["Event", "EventStore", "EventStoreError", "GroupCommitter", "RecordedEvent", "StreamHead", "StreamSlice"]
