"""What the event store holds: events, their recorded form, and stream heads."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Event:
    """One transition: its type, when it happened (Unix seconds) and its JSON data."""

    type: str
    at: float
    data: Mapping[str, Any] = field(default_factory=dict)

    @property
    def step(self) -> int:
        return int(self.data.get("step", -1))

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type, "at": self.at, "data": dict(self.data)}

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> Event:
        return cls(type=raw["type"], at=float(raw["at"]), data=raw.get("data") or {})


@dataclass(frozen=True)
class RecordedEvent:
    """An event as stored: its stream, its version in the stream (1, 2, ...) and its global position.

    `position` is the Consul index of the transaction that wrote it: positions grow across all
    streams, so "everything after position P" is a meaningful subscription.
    """

    stream: str
    version: int
    event: Event
    position: int


@dataclass(frozen=True)
class StreamHead:
    """A stream's latest version, the version of its latest snapshot (0: none) and the head key's
    ModifyIndex, which appends compare-and-set on."""

    version: int
    snapshot_version: int
    modify_index: int


@dataclass(frozen=True)
class StreamSlice:
    """What resuming a stream needs: its head, its latest snapshot (or None) and the events after it."""

    head: StreamHead
    snapshot: dict[str, Any] | None
    events: list[RecordedEvent]
