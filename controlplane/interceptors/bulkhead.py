"""Bulkheads: cap the calls in flight to one target, so one slow dependency cannot take every thread or task.

Beyond the cap a call waits at most `max_wait` seconds for a free slot, then fails with RESOURCE_EXHAUSTED
without touching the network. A slot is held from the start of a call to its final status (for streams:
until the stream ends or is cancelled).
"""

from __future__ import annotations

import asyncio
import collections
import enum
import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import grpc

from controlplane.interceptors._aio_client import aio_client_chain
from controlplane.interceptors._config import from_mapping
from controlplane.interceptors._sync_client import ClientInterceptor
from controlplane.interceptors.breaker import breaker_key, call_target
from controlplane.interceptors.call import ClientConcern, Outcome, OutgoingCall, Rejection

__all__ = [
    "BULKHEAD_KEY",
    "Bulkhead",
    "BulkheadConcern",
    "BulkheadEvent",
    "BulkheadEventKind",
    "BulkheadFull",
    "BulkheadPolicy",
    "BulkheadRegistry",
    "BulkheadSnapshot",
    "aio_client_interceptors",
    "client_interceptor",
]

log = logging.getLogger(__name__)

BULKHEAD_KEY = "x-bulkhead"
"""Trailing metadata of a call refused by a full bulkhead: "full"."""


class BulkheadEventKind(enum.Enum):
    """What a `BulkheadEvent` reports (resilience4j's bulkhead events)."""

    PERMITTED = "permitted"  # a call took a slot
    REJECTED = "rejected"  # a call was refused: no slot in time
    FINISHED = "finished"  # a call that held a slot ended and gave it back


@dataclass(frozen=True)
class BulkheadEvent:
    bulkhead: str
    kind: BulkheadEventKind


BulkheadListener = Callable[[BulkheadEvent], None]


@dataclass(frozen=True)
class BulkheadPolicy:
    """max_concurrent: calls in flight per target; max_wait: seconds a call may wait for a slot (0: none);
    per: a bulkhead per "service" or per "method"."""

    max_concurrent: int = 100
    max_wait: float = 0.0
    per: Literal["service", "method"] = "service"

    def __post_init__(self) -> None:
        if self.max_concurrent < 1:
            raise ValueError(f"max_concurrent must be >= 1 call, got {self.max_concurrent}")
        if self.max_wait < 0:
            raise ValueError(f"max_wait must be >= 0 seconds, got {self.max_wait}")
        if self.per not in ("service", "method"):
            raise ValueError(f"per must be 'service' or 'method', got {self.per!r}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BulkheadPolicy:
        """From e.g. `{"max_concurrent": 20, "max_wait": 0.05}`."""
        return from_mapping(cls, data)


class BulkheadFull(Exception):
    """Why a call was refused: its bulkhead had no free slot (the `.cause` of the caller's error)."""

    def __init__(self, name: str, max_concurrent: int) -> None:
        super().__init__(f"bulkhead '{name}' is full: {max_concurrent} calls in flight")
        self.name = name
        self.max_concurrent = max_concurrent


@dataclass(frozen=True)
class BulkheadSnapshot:
    """in_flight: calls holding a slot; waiting: calls waiting for one; rejected: calls refused so far."""

    name: str
    in_flight: int
    waiting: int
    max_concurrent: int
    rejected: int


class Bulkhead:
    """Slots for the calls to one target; usable from threads and from asyncio tasks at the same time."""

    def __init__(self, name: str, policy: BulkheadPolicy | None = None) -> None:
        self.name = name
        self.policy = policy or BulkheadPolicy()
        self._limit = self.policy.max_concurrent
        self._in_flight = 0
        self._waiting = 0
        self._rejected = 0
        self._lock = threading.Lock()
        self._freed = threading.Condition(self._lock)
        self._async_waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._granted: set[asyncio.Future[None]] = set()  # waiters handed a slot they have not taken yet

    def try_acquire(self) -> bool:
        """Take a slot if one is free, without waiting."""
        with self._lock:
            if self._in_flight < self._limit:
                self._in_flight += 1
                return True
            self._rejected += 1
            return False

    def acquire(self, timeout: float) -> bool:
        """Take a slot, waiting at most `timeout` seconds (blocks the thread: not for asyncio code)."""
        with self._lock:
            self._waiting += 1
            try:
                free = self._freed.wait_for(lambda: self._in_flight < self._limit, timeout)
            finally:
                self._waiting -= 1
            if free:
                self._in_flight += 1
                return True
            self._rejected += 1
            return False

    async def acquire_async(self, timeout: float) -> bool:
        """Take a slot, waiting at most `timeout` seconds without blocking the event loop.

        Waiters are served first in, first out: a freed slot is handed to the oldest waiter (a newcomer
        cannot take it meanwhile), and a waiter cancelled after it was handed one passes it on.
        """
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._in_flight < self._limit and not self._async_waiters:
                self._in_flight += 1
                return True
            if timeout <= 0:
                self._rejected += 1
                return False
            waiter: asyncio.Future[None] = loop.create_future()
            self._async_waiters.append(waiter)
            self._waiting += 1
        cancelled = True
        try:
            await asyncio.wait((waiter,), timeout=timeout)
            cancelled = False
        finally:
            with self._lock:
                self._waiting -= 1
                granted = waiter in self._granted
                self._granted.discard(waiter)
                if waiter in self._async_waiters:
                    self._async_waiters.remove(waiter)
                if not granted and not cancelled:
                    self._rejected += 1
            if granted and cancelled:
                self.release()  # handed a slot it will not use: pass it on
        return granted

    def release(self) -> None:
        """Give a slot back (any thread): to the oldest asyncio waiter, else to a waiting thread."""
        with self._lock:
            if self._hand_to_waiter():  # the slot changes hands: in_flight stays
                return
            self._in_flight -= 1
            self._freed.notify()

    def _hand_to_waiter(self) -> bool:
        """Under the lock: grant a slot to the oldest asyncio waiter still waiting; False if there is none."""
        while self._async_waiters:
            waiter = self._async_waiters.popleft()
            if waiter.done():
                continue
            self._granted.add(waiter)
            waiter.get_loop().call_soon_threadsafe(_grant, waiter)
            return True
        return False

    def reconfigure(self, policy: BulkheadPolicy) -> None:
        """A new cap from now on: calls in flight keep their slots; a higher cap lets waiters in at once,
        a lower one lets new calls in only as calls end."""
        with self._lock:
            self.policy = policy
            self._limit = policy.max_concurrent
            while self._in_flight < self._limit and self._hand_to_waiter():
                self._in_flight += 1  # a new slot, not one handed on
            self._freed.notify_all()

    def snapshot(self) -> BulkheadSnapshot:
        with self._lock:
            return BulkheadSnapshot(self.name, self._in_flight, self._waiting, self._limit, self._rejected)


def _grant(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class BulkheadRegistry:
    """The bulkheads of a process (or of one client), one per target name, created on first use."""

    def __init__(self, policy: BulkheadPolicy | None = None, *, listeners: Iterable[BulkheadListener] = ()) -> None:
        self.policy = policy or BulkheadPolicy()
        self._bulkheads: dict[str, Bulkhead] = {}
        self._lock = threading.Lock()
        self.listeners: list[BulkheadListener] = list(listeners)

    def add_listener(self, listener: BulkheadListener) -> None:
        """Call `listener(BulkheadEvent)` for every call permitted, rejected or finished through this
        registry's bulkheads (on the thread or task of the call)."""
        self.listeners.append(listener)

    def emit(self, name: str, kind: BulkheadEventKind) -> None:
        event = BulkheadEvent(name, kind)
        for listener in self.listeners:
            try:
                listener(event)
            except Exception:
                log.exception("bulkhead listener %r failed", listener)

    def get(self, name: str) -> Bulkhead:
        bulkhead = self._bulkheads.get(name)
        if bulkhead is None:
            with self._lock:
                bulkhead = self._bulkheads.setdefault(name, Bulkhead(name, self.policy))
        return bulkhead

    def reconfigure(self, policy: BulkheadPolicy) -> None:
        """Every bulkhead, present and future, caps by `policy` from now on."""
        with self._lock:
            self.policy = policy
            bulkheads = list(self._bulkheads.values())
        for bulkhead in bulkheads:
            bulkhead.reconfigure(policy)

    def snapshot(self) -> dict[str, BulkheadSnapshot]:
        with self._lock:
            bulkheads = list(self._bulkheads.values())
        return {b.name: b.snapshot() for b in bulkheads}


class BulkheadConcern(ClientConcern):
    """Client side: holds a slot of the target's bulkhead for the whole call, or refuses the call."""

    def __init__(self, registry: BulkheadRegistry | None = None, instance: str | None = None, *,
                 live: bool = False) -> None:
        self.registry = registry or BulkheadRegistry()
        self._instance = instance
        self._max_wait = self.registry.policy.max_wait
        self.waits = live or self._max_wait > 0  # a live policy may start waiting later
        self.off = False
        self._bulkheads: dict[str, Bulkhead] = {}

    def follow(self, policy: Any) -> None:
        """Follow the `bulkhead` section of a changed `ClientPolicy` (see `LivePolicy`)."""
        self.update(policy.bulkhead)

    def update(self, policy: BulkheadPolicy | None) -> None:
        """Follow a changed policy (its registry is reconfigured by whoever owns it); None: no cap."""
        self.off = policy is None
        if policy is not None:
            self._max_wait = policy.max_wait

    def _bulkhead(self, call: OutgoingCall) -> Bulkhead:
        target = call_target(call, self.registry.policy.per)
        bulkhead = self._bulkheads.get(target)
        if bulkhead is None:
            bulkhead = self._bulkheads[target] = self.registry.get(breaker_key(target, self._instance))
        return bulkhead

    def start(self, call: OutgoingCall) -> _Slot | None:
        if self.off:
            return None
        bulkhead = self._bulkhead(call)
        acquired = bulkhead.try_acquire() if self._max_wait <= 0 else bulkhead.acquire(self._max_wait)
        return self._verdict(bulkhead, acquired)

    async def start_async(self, call: OutgoingCall) -> _Slot | None:
        if self.off:
            return None
        bulkhead = self._bulkhead(call)
        return self._verdict(bulkhead, await bulkhead.acquire_async(self._max_wait))

    def _verdict(self, bulkhead: Bulkhead, acquired: bool) -> _Slot:
        registry = self.registry
        if registry.listeners:
            registry.emit(bulkhead.name, BulkheadEventKind.PERMITTED if acquired else BulkheadEventKind.REJECTED)
        if acquired:
            return _Slot(bulkhead, registry)
        raise self._refusal(bulkhead)

    @staticmethod
    def _refusal(bulkhead: Bulkhead) -> Rejection:
        full = BulkheadFull(bulkhead.name, bulkhead.policy.max_concurrent)
        return Rejection(grpc.StatusCode.RESOURCE_EXHAUSTED, str(full), ((BULKHEAD_KEY, "full"),), cause=full)


class _Slot:
    """One call's slot in a bulkhead, given back when the call ends."""

    __slots__ = ("_bulkhead", "_registry")

    def __init__(self, bulkhead: Bulkhead, registry: BulkheadRegistry) -> None:
        self._bulkhead = bulkhead
        self._registry = registry

    def end(self, outcome: Outcome) -> None:
        self._bulkhead.release()
        if self._registry.listeners:
            self._registry.emit(self._bulkhead.name, BulkheadEventKind.FINISHED)


def client_interceptor(registry: BulkheadRegistry | None = None, instance: str | None = None) -> ClientInterceptor:
    """Bulkheads alone, for `grpc.intercept_channel(channel, client_interceptor(registry))`."""
    return ClientInterceptor([BulkheadConcern(registry, instance)])


def aio_client_interceptors(
    registry: BulkheadRegistry | None = None, instance: str | None = None
) -> list[grpc.aio.ClientInterceptor]:
    """Bulkheads alone, for `grpc.aio.insecure_channel(target, interceptors=...)`."""
    return aio_client_chain([BulkheadConcern(registry, instance)])
