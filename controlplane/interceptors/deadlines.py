"""Deadline budgets: a default deadline for calls that set none, and propagation across hops.

gRPC Python does not propagate deadlines: a server that calls another service while handling a request
starts from scratch. Here the server side captures the deadline of the incoming request (`DeadlineCapture`
puts it in a context variable, on the handler's own thread or task), and every outgoing call made while
handling it gets the smaller of its own timeout and what is left of that budget, less a margin for the way
back. A call whose budget is already spent fails at once with DEADLINE_EXCEEDED, without touching the network.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import grpc

from controlplane.interceptors._aio_client import aio_client_chain
from controlplane.interceptors._config import from_mapping
from controlplane.interceptors._server import AioServerInterceptor as _AioServerInterceptor
from controlplane.interceptors._server import ServerInterceptor
from controlplane.interceptors._sync_client import ClientInterceptor
from controlplane.interceptors.call import (
    ClientConcern,
    Clock,
    IncomingCall,
    Outcome,
    OutgoingCall,
    Rejection,
    ServerConcern,
)

__all__ = [
    "DEADLINE_EXCEEDED_KEY",
    "Budget",
    "BudgetSpent",
    "DeadlineCapture",
    "DeadlineConcern",
    "DeadlinePolicy",
    "aio_client_interceptors",
    "aio_server_interceptor",
    "client_interceptor",
    "current_budget",
    "deadline_budget",
    "outgoing_timeout",
    "server_interceptor",
]

DEADLINE_EXCEEDED_KEY = "x-deadline-budget"
"""Trailing metadata on a call refused locally: "spent" when the caller's budget was used up."""

_NO_DEADLINE = 1e9  # seconds; gRPC's sync server reports "no deadline" as ~9.2e18 seconds remaining
_WIRE_ROUNDING = 1.01  # gRPC rounds the timeout it sends (grpc-timeout header) up, by up to 1%


@dataclass(frozen=True)
class DeadlinePolicy:
    """How long outgoing calls may take.

    default_timeout: seconds allowed to a call with one response whose caller set no timeout and that
        `timeouts` does not name; None leaves such calls without a deadline.
    stream_timeout: the same for calls with a response stream (Watch and the like, which may rightly
        last as long as their caller wants); default None: no deadline.
    timeouts: seconds per service ("pkg.Service") or per method ("pkg.Service/Method"), for calls that set
        no timeout; a method entry wins over its service's entry; None says "no deadline" for it.
    propagate: when handling a request, cap outgoing calls at what is left of that request's deadline.
    margin: seconds kept back from the remaining budget at each hop, for the reply to travel back
        (so the callee gives up slightly before the caller does).
    """

    default_timeout: float | None = 30.0
    timeouts: Mapping[str, float | None] = field(default_factory=dict)
    stream_timeout: float | None = None
    propagate: bool = True
    margin: float = 0.005

    def __post_init__(self) -> None:
        for name in ("default_timeout", "stream_timeout"):
            seconds = getattr(self, name)
            if seconds is not None and not 0 < seconds < math.inf:
                raise ValueError(f"{name} must be a finite number of seconds > 0, or None for none, got {seconds}")
        if not 0 <= self.margin < math.inf:
            raise ValueError(f"margin must be >= 0 seconds, got {self.margin}")
        normalized: dict[str, float | None] = {}
        for name, seconds in self.timeouts.items():
            if seconds is not None and not 0 < seconds < math.inf:
                raise ValueError(f"timeouts[{name!r}] must be a finite number of seconds > 0, or None for no "
                                 f"deadline, got {seconds}")
            normalized[name.strip("/")] = None if seconds is None else float(seconds)
        object.__setattr__(self, "timeouts", MappingProxyType(normalized))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DeadlinePolicy:
        """From e.g. `{"default_timeout": 5, "timeouts": {"pkg.Search": 2.5}, "margin": 0.01}`."""
        return from_mapping(cls, data)

    def timeout_for(self, method: str, streaming: bool = False) -> float | None:
        """Seconds a call to `method` ("/pkg.Service/Method") gets when its caller set no timeout (None:
        no deadline); `streaming`: the call has a response stream."""
        if self.timeouts:
            name = method.lstrip("/")
            for key in (name, name.partition("/")[0]):
                if key in self.timeouts:
                    return self.timeouts[key]
        return self.stream_timeout if streaming else self.default_timeout


class BudgetSpent(Exception):
    """Why a call was refused: the deadline budget of the request being handled was spent (the `.cause`
    of the caller's error). `remaining` and `margin` in seconds."""

    def __init__(self, method: str, remaining: float, margin: float) -> None:
        super().__init__(f"deadline budget spent before calling {method}: {remaining * 1000:.1f} ms left, "
                         f"{margin * 1000:.1f} ms margin")
        self.method = method
        self.remaining = remaining
        self.margin = margin


class Budget:
    """The deadline of the request being handled, as a point on a monotonic clock (seconds)."""

    __slots__ = ("clock", "deadline")

    def __init__(self, deadline: float, clock: Clock = time.monotonic) -> None:
        self.deadline = deadline
        self.clock = clock

    def remaining(self) -> float:
        """Seconds left; negative once spent."""
        return self.deadline - self.clock()

    def __repr__(self) -> str:
        return f"Budget(remaining={self.remaining():.3f}s)"


_budget: contextvars.ContextVar[Budget | None] = contextvars.ContextVar("controlplane_deadline_budget", default=None)


def current_budget() -> Budget | None:
    """The budget of the request being handled on this thread or task, if it came with a deadline."""
    return _budget.get()


@contextlib.contextmanager
def deadline_budget(seconds: float | None, clock: Clock = time.monotonic) -> Iterator[Budget | None]:
    """Run a block under a budget of `seconds` (None: no budget), as if handling a request with that deadline.

    For work that is not a gRPC request (a batch job, a CLI command): every call made inside shares it.
    """
    budget = None if seconds is None else Budget(clock() + seconds, clock)
    token = _budget.set(budget)
    try:
        yield budget
    finally:
        _budget.reset(token)


def outgoing_timeout(own: float | None, default: float | None, remaining: float | None, margin: float) -> float | None:
    """The timeout (seconds) of an outgoing call; <= 0 means the budget is spent.

    own: the timeout the caller passed; default: the policy's timeout for the method, used when own is None;
    remaining: seconds left of the incoming request's deadline (None: no budget); margin: seconds kept back.
    """
    timeout = own if own is not None else default
    if remaining is not None:
        capped = remaining - margin
        if timeout is None or capped < timeout:
            timeout = capped
    return timeout


class DeadlineConcern(ClientConcern):
    """Client side: applies the default deadline and the propagated budget; refuses spent calls."""

    def __init__(self, policy: DeadlinePolicy | None = None) -> None:
        self.policy: DeadlinePolicy | None = policy or DeadlinePolicy()

    def follow(self, policy: Any) -> None:
        """Follow the `deadlines` section of a changed `ClientPolicy` (see `LivePolicy`)."""
        self.update(policy.deadlines)

    def update(self, policy: DeadlinePolicy | None) -> None:
        """Follow a changed policy; None: leave calls' timeouts as their callers set them."""
        self.policy = policy

    def start(self, call: OutgoingCall) -> None:
        policy = self.policy
        if policy is None:
            return
        timeout = call.timeout if call.timeout is not None else policy.timeout_for(call.method, call.streaming)
        budget = _budget.get() if policy.propagate else None
        if budget is not None:
            remaining = budget.remaining()
            timeout = outgoing_timeout(timeout, None, remaining, policy.margin)
            if timeout is not None and timeout <= 0:
                spent = BudgetSpent(call.method, remaining, policy.margin)
                raise Rejection(grpc.StatusCode.DEADLINE_EXCEEDED, str(spent), ((DEADLINE_EXCEEDED_KEY, "spent"),),
                                cause=spent)
        call.timeout = timeout


class DeadlineCapture(ServerConcern):
    """Server side: makes the incoming request's deadline the budget of the calls its handler makes.

    gRPC sends deadlines as a timeout rounded up by up to 1%, so a server sees slightly more time than
    its caller allowed; the budget takes that 1% back, so calls made downstream never outlive the caller.
    """

    def __init__(self, clock: Clock = time.monotonic) -> None:
        self._clock = clock

    def start(self, call: IncomingCall) -> _BudgetScope:
        remaining = call.context.time_remaining()
        if remaining is None or remaining > _NO_DEADLINE:
            return _BudgetScope(_budget.set(None))
        return _BudgetScope(_budget.set(Budget(self._clock() + remaining / _WIRE_ROUNDING, self._clock)))


class _BudgetScope:
    """The budget of one handler: gone when the handler ends."""

    __slots__ = ("_token",)

    def __init__(self, token: contextvars.Token[Budget | None]) -> None:
        self._token = token

    def end(self, outcome: Outcome) -> None:
        # ValueError: reset from another context (a generator resumed elsewhere); nothing leaks there.
        with contextlib.suppress(ValueError):
            _budget.reset(self._token)


def client_interceptor(policy: DeadlinePolicy | None = None) -> ClientInterceptor:
    """Deadlines alone, for `grpc.intercept_channel(channel, client_interceptor(policy))`."""
    return ClientInterceptor([DeadlineConcern(policy)])


def aio_client_interceptors(policy: DeadlinePolicy | None = None) -> list[grpc.aio.ClientInterceptor]:
    """Deadlines alone, for `grpc.aio.insecure_channel(target, interceptors=aio_client_interceptors())`."""
    return aio_client_chain([DeadlineConcern(policy)])


def server_interceptor(clock: Clock = time.monotonic) -> ServerInterceptor:
    """Deadline capture for `grpc.server(..., interceptors=[server_interceptor()])`."""
    return ServerInterceptor([DeadlineCapture(clock)])


def aio_server_interceptor(clock: Clock = time.monotonic) -> grpc.aio.ServerInterceptor:
    """Deadline capture for `grpc.aio.server(interceptors=[aio_server_interceptor()])`."""
    return _AioServerInterceptor([DeadlineCapture(clock)])
