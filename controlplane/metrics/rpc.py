"""RPC metrics as concerns of the interceptor chain: started, handled by code, latency, in flight."""

from __future__ import annotations

import time
from typing import Any

from controlplane.interceptors.call import (
    CallKind,
    ClientConcern,
    Clock,
    IncomingCall,
    Outcome,
    OutgoingCall,
    ServerConcern,
)
from controlplane.metrics.families import Metrics

__all__ = ["ClientMetrics", "ServerMetrics"]

_TYPES = {
    CallKind.UNARY_UNARY: "unary",
    CallKind.UNARY_STREAM: "server_stream",
    CallKind.STREAM_UNARY: "client_stream",
    CallKind.STREAM_STREAM: "bidi_stream",
}


class _Children:
    """The labelled children of one method's families, looked up once (labels() takes a lock each time)."""

    __slots__ = ("_handled", "_labels", "in_flight", "seconds", "started")

    def __init__(self, started: Any, handled: Any, seconds: Any, in_flight: Any, labels: tuple[str, str, str]) -> None:
        self.started = started.labels(*labels)
        self.seconds = seconds.labels(*labels)
        self.in_flight = in_flight.labels(*labels)
        self._handled = handled
        self._labels = labels

    def handled(self, code_name: str) -> Any:
        return self._handled.labels(*self._labels, code_name)


class _Timed:
    __slots__ = ("_children", "_clock", "_started")

    def __init__(self, children: _Children, clock: Clock) -> None:
        self._children = children
        self._clock = clock
        self._started = clock()
        children.started.inc()
        children.in_flight.inc()

    def end(self, outcome: Outcome) -> None:
        children = self._children
        children.in_flight.dec()
        children.seconds.observe(self._clock() - self._started)
        children.handled(outcome.code.name).inc()


class _RpcMetrics:
    def __init__(self, metrics: Metrics, side: str, clock: Clock) -> None:
        self._metrics = metrics
        self._side = side
        self._clock = clock
        self._children: dict[tuple[str, CallKind], _Children] = {}

    def _for(self, method: str, service: str, name: str, kind: CallKind) -> _Children:
        children = self._children.get((method, kind))
        if children is None:
            m = self._metrics
            families = ((m.server_started, m.server_handled, m.server_seconds, m.server_in_flight)
                        if self._side == "server" else
                        (m.client_started, m.client_handled, m.client_seconds, m.client_in_flight))
            children = _Children(*families, (_TYPES[kind], service, name))
            if len(self._children) < 10_000:
                self._children[(method, kind)] = children
        return children


class ServerMetrics(_RpcMetrics, ServerConcern):
    """Counts and times every RPC a server handles (first in the chain: the whole handling is timed)."""

    def __init__(self, metrics: Metrics, clock: Clock = time.perf_counter) -> None:
        super().__init__(metrics, "server", clock)

    def start(self, call: IncomingCall) -> _Timed:
        return _Timed(self._for(call.method, call.service, call.name, call.kind), self._clock)


class ClientMetrics(_RpcMetrics, ClientConcern):
    """Counts and times every RPC a channel makes, local refusals included (they end with their status)."""

    def __init__(self, metrics: Metrics, clock: Clock = time.perf_counter) -> None:
        super().__init__(metrics, "client", clock)

    def start(self, call: OutgoingCall) -> _Timed:
        return _Timed(self._for(call.method, call.service, call.name, call.kind), self._clock)
