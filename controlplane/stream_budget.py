"""The server's long-lived streams held within a budget, in all and per caller.

`--max-concurrent-rpcs` counts every call, and streams (Watch, WatchConfig, WatchSaga, ADS, health Watch,
reflection) stay open for as long as their clients like. Each servicer caps the streams of one
connection, but a client opening connection after connection could hold every slot, and then every call
of every client (heartbeats and registrations among them) would be RESOURCE_EXHAUSTED: instances would
go critical because one client watched too much. So streams of every method together take at most
`total` slots (by default three quarters of the concurrent calls: unary calls always find room), and
one caller (`identity.caller_of`: its identity, else its address) at most `per_caller` of them (by
default half), so one client's streams leave room for the others'. Past either, a new stream ends at
once with RESOURCE_EXHAUSTED naming the limit; streams already open are not touched.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import grpc.aio

from controlplane.held import Held
from controlplane.interceptors._server import HandlerCache, wrap_handler
from controlplane.interceptors.call import CallKind
from controlplane.security.identity import caller_of


class StreamBudget(grpc.aio.ServerInterceptor):
    """Counts the open streams of every streaming method; refuses new ones past `total` or `per_caller`.

    Put it inside the authorization interceptor (later in the server's list), so the caller's identity
    is known when a stream starts."""

    def __init__(self, total: int, per_caller: int) -> None:
        self.total = total
        self.per_caller = min(per_caller, total)
        self._held = Held()
        self._handlers = HandlerCache()

    @property
    def open(self) -> int:
        """Streams open now."""
        return self._held.total

    async def intercept_service(self, continuation: Callable[[Any], Any], handler_call_details: Any) -> Any:
        handler = await continuation(handler_call_details)
        if handler is None or not (handler.request_streaming or handler.response_streaming):
            return handler
        return self._handlers.get(handler, lambda found: wrap_handler(found, self._wrap))

    def _wrap(self, behavior: Callable[..., Any], kind: CallKind) -> Callable[..., Any]:
        if inspect.isasyncgenfunction(behavior):

            async def streaming(request: Any, context: Any) -> AsyncIterator[Any]:
                caller = await self._enter(context)
                try:
                    async for response in behavior(request, context):
                        yield response
                finally:
                    self._held.remove(caller)

            return streaming

        async def call(request: Any, context: Any) -> Any:  # handlers that write with `await context.write()`
            caller = await self._enter(context)
            try:
                result = behavior(request, context)
                return await result if inspect.isawaitable(result) else result
            finally:
                self._held.remove(caller)

        return call

    async def _enter(self, context: grpc.aio.ServicerContext) -> str:
        caller = caller_of(context)
        if self._held.total >= self.total:
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                f"this control plane holds {self.total} open streams, the most it may (--max-streams), "
                                "so that other calls find room; retry later or on another replica")
        if self._held.of(caller) >= self.per_caller:
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED,
                                f"this control plane holds {self.per_caller} open streams of this caller, the most one "
                                "caller may (--max-streams-per-caller); close some first")
        self._held.add(caller)
        return caller


def stream_budget(max_concurrent_rpcs: int, max_streams: int = 0, per_caller: int = 0) -> StreamBudget:
    """The budget from the settings: 0 for `max_streams` is three quarters of the concurrent calls (at
    least one), 0 for `per_caller` half of the streams (at least one)."""
    total = max_streams or max(1, max_concurrent_rpcs * 3 // 4)
    total = min(total, max_concurrent_rpcs)
    return StreamBudget(total, per_caller or max(1, total // 2))


__all__ = ["StreamBudget", "stream_budget"]
