"""Interceptor benchmark: what each interceptor and the whole stack add to a loopback unary call.

Run: `make bench` or `.venv/bin/python bench/interceptors_bench.py` (about 30 s). Measures, in one run:

1. Round trip, sync and asyncio clients: each interceptor alone and the whole stack, as a ratio to a bare
   channel call. The server runs in a child process (as it would in production: its interceptors add
   latency, not CPU contention in the client). Rows are measured in interleaved rounds and each round's
   ratio is taken against that round's bare call, because these machines are noisy; the median is shown.
   Beside each row, the CPU one call costs the client process and the server process (all their
   threads, from /proc): where the time beyond the bare call goes.
2. CPU per call in the client, without a network (a finished fake call): the cost of our code alone.
3. How long an OPEN breaker takes to refuse a call, and pybreaker doing the same around a plain call.

Tracing uses the OpenTelemetry SDK with a batch processor and an exporter that drops spans, so the span
work is measured and no I/O is.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import subprocess
import sys
import time
import timeit
from collections.abc import Callable, Iterator
from concurrent import futures
from typing import Any

import grpc
import pybreaker
from opentelemetry.sdk.trace import TracerProvider, sampling
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from proc_cpu import cpu_seconds

from controlplane.interceptors import (
    BreakerPolicy,
    BreakerRegistry,
    BulkheadPolicy,
    ClientPolicy,
    aio_client_interceptors,
    client_interceptors,
    intercepted_aio_channel,
    intercepted_channel,
    server_interceptors,
)
from controlplane.interceptors import breaker as breaker_module
from controlplane.interceptors import bulkhead as bulkhead_module
from controlplane.interceptors import deadlines as deadlines_module
from controlplane.interceptors import tracing as tracing_module
from controlplane.interceptors._sync_client import CallDetails

METHOD = "/bench.Echo/Unary"
ROUNDS = 12
CALLS_PER_ROUND = 100
WARMUP = 200
TARGET_TRACED_RATIO = 1.2  # whole stack, every call traced
TARGET_SAMPLED_RATIO = 1.1  # whole stack, 10% of traces sampled
TARGET_REJECT_US = 20.0
STACK_VIA_GRPC = "whole stack, via grpc.intercept_channel"
AIO_STACK_VIA_GRPC = "whole stack, via grpc.aio interceptors=..."
SDK_ONLY = "SDK spans by hand, no interceptors"


class DropSpans(SpanExporter):
    def export(self, spans: Any) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def tracer_provider(sampler: sampling.Sampler | None = None) -> TracerProvider:
    provider = TracerProvider(sampler=sampler) if sampler else TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(DropSpans()))
    return provider


# --- the server process -----------------------------------------------------------------------------


def instrumented_server_interceptors(provider: TracerProvider) -> list[grpc.ServerInterceptor]:
    """The server stack as it was with opentelemetry-instrumentation-grpc's interceptor making the spans."""
    from controlplane.interceptors._server import ServerInterceptor
    from controlplane.interceptors.decoding import RefuseUndecodable

    return [RefuseUndecodable(), tracing_module.otel_server_interceptor(provider),
            ServerInterceptor([deadlines_module.DeadlineCapture()])]


def instrumented_client(policy: ClientPolicy, provider: TracerProvider, aio: bool) -> list[Any]:
    """The client stack with the instrumentation's spans outside our interceptor (how it was before)."""
    if aio:
        return [*tracing_module.otel_aio_client_interceptors(provider), *aio_client_interceptors(policy, tracing=False)]
    return [tracing_module.otel_client_interceptor(provider), *client_interceptors(policy, tracing=False)]


SERVERS = ("bare", "capture", "traced", "instrumented", "sdk")
SPAN_NAME = METHOD.lstrip("/")
SPAN_ATTRIBUTES = {"rpc.system": "grpc", "rpc.service": "bench.Echo", "rpc.method": "Unary"}


def echo_handler(behaviour: Callable[[Any, Any], Any]) -> grpc.GenericRpcHandler:
    return grpc.method_handlers_generic_handler("bench.Echo", {"Unary": grpc.unary_unary_rpc_method_handler(behaviour)})


def sdk_spans_server(provider: TracerProvider) -> Callable[[Any, Any], Any]:
    """The least a traced server does with the SDK, by hand: extract the caller's context, one server span."""
    tracer, propagator = provider.get_tracer("bench"), TraceContextTextMapPropagator()

    def unary(request: Any, context: Any) -> Any:
        parent = propagator.extract(dict(context.invocation_metadata()))
        with tracer.start_as_current_span(SPAN_NAME, context=parent, kind=SpanKind.SERVER,
                                          attributes=SPAN_ATTRIBUTES) as span:
            span.set_attribute("rpc.grpc.status_code", 0)
            return request

    return unary


def sdk_spans_client(call: Callable[..., Any], provider: TracerProvider) -> Callable[[Any], Any]:
    """The least a traced client does with the SDK, by hand: one client span, its context injected."""
    tracer, propagator = provider.get_tracer("bench"), TraceContextTextMapPropagator()

    def spanned(request: Any) -> Any:
        with tracer.start_as_current_span(SPAN_NAME, kind=SpanKind.CLIENT, attributes=SPAN_ATTRIBUTES) as span:
            carrier: dict[str, str] = {}
            propagator.inject(carrier)
            response = call(request, metadata=tuple(carrier.items()))
            span.set_attribute("rpc.grpc.status_code", 0)
            return response

    return spanned


def sdk_spans_aio_client(call: Callable[..., Any], provider: TracerProvider) -> Callable[[Any], Any]:
    """`sdk_spans_client` for grpc.aio."""
    tracer, propagator = provider.get_tracer("bench"), TraceContextTextMapPropagator()

    async def spanned(request: Any) -> Any:
        with tracer.start_as_current_span(SPAN_NAME, kind=SpanKind.CLIENT, attributes=SPAN_ATTRIBUTES) as span:
            carrier: dict[str, str] = {}
            propagator.inject(carrier)
            response = await call(request, metadata=tuple(carrier.items()))
            span.set_attribute("rpc.grpc.status_code", 0)
            return response

    return spanned


def serve() -> None:
    """Child process: a bare server, one with deadline capture, one with the whole server stack, one with
    the whole stack making its spans with the instrumentation's interceptor, and one making SDK spans by
    hand without interceptors."""
    provider = tracer_provider()
    handler = echo_handler(lambda request, context: request)
    servers, ports = [], []
    for interceptors, served in (([], handler), (server_interceptors(tracing=False), handler),
                                 (server_interceptors(tracer_provider=provider), handler),
                                 (instrumented_server_interceptors(provider), handler),
                                 ([], echo_handler(sdk_spans_server(provider)))):
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), interceptors=interceptors)
        server.add_generic_rpc_handlers((served,))
        ports.append(server.add_insecure_port("127.0.0.1:0"))
        server.start()
        servers.append(server)
    print(*ports, flush=True)
    sys.stdin.read()  # until the parent closes our stdin
    for server in servers:
        server.stop(None)


# --- round trips --------------------------------------------------------------------------------------

Row = tuple[str, str, list[Any]]  # (name, which server, client interceptors)


def client_rows(aio: bool) -> list[Row]:
    full = ClientPolicy(bulkhead=BulkheadPolicy(max_concurrent=100))
    traced = tracer_provider()
    sampled = tracer_provider(sampling.ParentBased(sampling.TraceIdRatioBased(0.1)))
    if aio:
        return [
            ("bare channel", "bare", []),
            ("deadlines", "bare", deadlines_module.aio_client_interceptors()),
            ("circuit breaker", "bare", breaker_module.aio_client_interceptors()),
            ("bulkhead", "bare", bulkhead_module.aio_client_interceptors()),
            ("deadlines+bulkhead+breaker (both sides)", "capture", aio_client_interceptors(full, tracing=False)),
            ("tracing (client+server spans)", "traced", tracing_module.aio_client_interceptors(traced)),
            ("whole stack", "traced", aio_client_interceptors(full, tracer_provider=traced)),
            ("whole stack, 10% of traces sampled", "traced", aio_client_interceptors(full, tracer_provider=sampled)),
            ("whole stack, instrumentation's spans", "instrumented", instrumented_client(full, traced, aio=True)),
            (SDK_ONLY, "sdk", []),
        ]
    return [
        ("bare channel", "bare", []),
        ("deadlines", "bare", [deadlines_module.client_interceptor()]),
        ("circuit breaker", "bare", [breaker_module.client_interceptor()]),
        ("bulkhead", "bare", [bulkhead_module.client_interceptor()]),
        ("deadlines+bulkhead+breaker (both sides)", "capture", client_interceptors(full, tracing=False)),
        ("tracing (client+server spans)", "traced", tracing_module.client_interceptors(traced)),
        ("whole stack", "traced", client_interceptors(full, tracer_provider=traced)),
        ("whole stack, 10% of traces sampled", "traced", client_interceptors(full, tracer_provider=sampled)),
        ("whole stack, instrumentation's spans", "instrumented", instrumented_client(full, traced, aio=False)),
        (SDK_ONLY, "sdk", []),
    ]


def summarize(per_round: dict[str, list[float]]) -> dict[str, tuple[float, float]]:
    """name -> (median µs per call, median of the per-round ratios to the bare call)."""
    bare = per_round["bare channel"]
    return {
        name: (statistics.median(times), statistics.median(t / b for t, b in zip(times, bare, strict=True)))
        for name, times in per_round.items()
    }


class CpuPerCall:
    """CPU per call of each row, in the client (this process) and the server process, summed over every
    round (a clock tick is 10 ms: a round alone is too short to read)."""

    def __init__(self, server_pid: int) -> None:
        self._server_pid = server_pid
        self._totals: dict[str, list[float]] = {}  # name -> [client s, server s, calls]

    @contextlib.contextmanager
    def measure(self, name: str) -> Iterator[None]:
        client, server = time.process_time(), self._server_cpu()
        yield
        totals = self._totals.setdefault(name, [0.0, 0.0, 0])
        totals[0] += time.process_time() - client
        totals[1] += self._server_cpu() - server
        totals[2] += CALLS_PER_ROUND

    def _server_cpu(self) -> float:
        used = cpu_seconds(self._server_pid)
        if used is None:
            raise RuntimeError(f"/proc cannot tell the CPU time of the server process {self._server_pid}")
        return used

    def per_call(self) -> dict[str, tuple[float, float]]:
        """name -> (client µs, server µs) of CPU per call."""
        return {name: (c / n * 1e6, s / n * 1e6) for name, (c, s, n) in self._totals.items()}


def _rotated(names: list[str], round_number: int) -> list[str]:
    """Each round starts at another row, so no row always runs right after the same neighbour."""
    shift = round_number % len(names)
    return names[shift:] + names[:shift]


def sync_round_trips(ports: dict[str, int], cpu: CpuPerCall) -> dict[str, tuple[float, float]]:
    # One connection per server, shared by every row that calls it: rows differ by interceptors only, not
    # by which TCP connection (and which server thread) they happened to get.
    channels = {server: grpc.insecure_channel(f"127.0.0.1:{ports[server]}") for server in SERVERS}
    calls: dict[str, Callable[..., Any]] = {}
    for name, server, interceptors in client_rows(aio=False):
        calls[name] = intercepted_channel(channels[server], *interceptors).unary_unary(METHOD)
        if name == SDK_ONLY:
            calls[name] = sdk_spans_client(calls[name], tracer_provider())
        if name == "whole stack":  # the same interceptor through grpcio's own interceptor layer
            calls[STACK_VIA_GRPC] = grpc.intercept_channel(channels[server], *interceptors).unary_unary(METHOD)
    for call in calls.values():
        for _ in range(WARMUP):
            call(b"x")
    per_round: dict[str, list[float]] = {name: [] for name in calls}
    for round_number in range(ROUNDS):
        for name in _rotated(list(calls), round_number):
            call = calls[name]
            with cpu.measure(name):
                started = time.perf_counter()
                for _ in range(CALLS_PER_ROUND):
                    call(b"x")
                per_round[name].append((time.perf_counter() - started) / CALLS_PER_ROUND * 1e6)
    for channel in channels.values():
        channel.close()
    return summarize(per_round)


async def aio_round_trips(ports: dict[str, int], cpu: CpuPerCall) -> dict[str, tuple[float, float]]:
    channels, calls = [], {}
    for name, server, interceptors in client_rows(aio=True):
        channel = intercepted_aio_channel(f"127.0.0.1:{ports[server]}", interceptors)
        channels.append(channel)
        calls[name] = channel.unary_unary(METHOD)
        if name == SDK_ONLY:
            calls[name] = sdk_spans_aio_client(calls[name], tracer_provider())
        if name == "whole stack":  # the same interceptors through grpc.aio's own interceptor layer
            channel = grpc.aio.insecure_channel(f"127.0.0.1:{ports[server]}", interceptors=interceptors)
            channels.append(channel)
            calls[AIO_STACK_VIA_GRPC] = channel.unary_unary(METHOD)
    for call in calls.values():
        for _ in range(WARMUP):
            await call(b"x")
    per_round: dict[str, list[float]] = {name: [] for name in calls}
    for round_number in range(ROUNDS):
        for name in _rotated(list(calls), round_number):
            call = calls[name]
            with cpu.measure(name):
                started = time.perf_counter()
                for _ in range(CALLS_PER_ROUND):
                    await call(b"x")
                per_round[name].append((time.perf_counter() - started) / CALLS_PER_ROUND * 1e6)
    for channel in channels:
        await channel.close()
    return summarize(per_round)


# --- CPU per call without a network -------------------------------------------------------------------


class _FinishedCall(grpc.Call, grpc.Future):
    """A call that already ended OK: what a continuation returns, minus the network."""

    def done(self) -> bool:
        return True

    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.OK

    def result(self, timeout: float | None = None) -> bytes:
        return b"x"

    def add_done_callback(self, fn: Callable[[Any], None]) -> None:
        fn(self)

    def trailing_metadata(self) -> tuple:
        return ()

    def initial_metadata(self) -> tuple:
        return ()

    def details(self) -> str:
        return ""

    def is_active(self) -> bool:
        return False

    def time_remaining(self) -> None:
        return None

    def cancel(self) -> bool:
        return False

    def cancelled(self) -> bool:
        return False

    def running(self) -> bool:
        return False

    def exception(self, timeout: float | None = None) -> None:
        return None

    def traceback(self, timeout: float | None = None) -> None:
        return None

    def add_callback(self, callback: Callable[[], None]) -> bool:
        return False


def cpu_per_call() -> dict[str, float]:
    finished = _FinishedCall()
    details = CallDetails(METHOD, None, None, None, None, None)

    def continuation(details: Any, request: Any) -> Any:
        return finished

    full = ClientPolicy(bulkhead=BulkheadPolicy(max_concurrent=100))
    rows = {
        "deadlines": deadlines_module.client_interceptor(),
        "circuit breaker": breaker_module.client_interceptor(),
        "bulkhead": bulkhead_module.client_interceptor(),
        "deadlines+bulkhead+breaker": client_interceptors(full, tracing=False)[0],
        "client span, ours (SDK)": tracing_module.client_interceptors(tracer_provider())[0],
        "client span, ours (no SDK)": tracing_module.client_interceptors(None)[0],
        "client span, instrumentation's (SDK)": tracing_module.otel_client_interceptor(tracer_provider()),
        "client span, instrumentation's (no SDK)": tracing_module.otel_client_interceptor(None),
    }
    results = {}
    for name, interceptor in rows.items():
        number = 20_000

        def one(interceptor: Any = interceptor) -> None:
            interceptor.intercept_unary_unary(continuation, details, b"x")

        results[name] = min(timeit.repeat(one, number=number, repeat=5)) / number * 1e6
    results.update(server_span_cpu())
    return results


class _ServerContext:
    """What a server span reads of a sync servicer context, for a call whose caller sent `traceparent`."""

    def __init__(self, traceparent: str) -> None:
        self._metadata = (("traceparent", traceparent), ("user-agent", "grpc-python/1.85 grpc-c/52.0.0 (linux)"))
        self._trailers: tuple = ()

    def invocation_metadata(self) -> tuple:
        return self._metadata

    def peer(self) -> str:
        return "ipv4:127.0.0.1:45678"

    def set_trailing_metadata(self, trailers: tuple) -> None:
        self._trailers = trailers

    def trailing_metadata(self) -> tuple:
        return self._trailers


def server_span_cpu() -> dict[str, float]:
    """A server span's start and end around nothing (no network, no handler), the caller's span sampled or not."""
    from controlplane.interceptors.call import CallKind, IncomingCall, Outcome, method_of
    from controlplane.interceptors.spans import ServerSpans

    spans, method, ok = ServerSpans(tracer_provider()), method_of(METHOD), Outcome(grpc.StatusCode.OK)
    results = {}
    for label, flags in (("server span, ours (SDK)", "01"), ("server span, ours (SDK, caller not sampled)", "00")):
        context = _ServerContext(f"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-{flags}")

        def one(context: Any = context) -> None:
            scope = spans.start(IncomingCall(method, CallKind.UNARY_UNARY, context))
            assert scope is not None
            scope.end(ok)

        results[label] = _best_us(one, 20_000)
    return results


# --- OPEN breaker -------------------------------------------------------------------------------------


def breaker_rejections(ports: dict[str, int]) -> dict[str, float]:
    """µs per refused call: our breaker (bare, sync channel, asyncio channel) and pybreaker."""
    policy = BreakerPolicy(minimum_calls=1, window_size=1, wait_in_open=3600)
    results = {}

    # The state machine alone.
    registry = BreakerRegistry(policy)
    bare_breaker = registry.get("bench")
    bare_breaker.record(bare_breaker.acquire(), failed=True)

    def acquire() -> None:
        with contextlib.suppress(breaker_module.BreakerOpen):
            bare_breaker.acquire()

    results["CircuitBreaker.acquire() (state machine alone)"] = _best_us(acquire, 50_000)

    # Through a sync channel: the caller gets an RpcError without the network being touched.
    dead = "127.0.0.1:1"
    sync_registry = BreakerRegistry(policy)
    channel = intercepted_channel(grpc.insecure_channel(dead), breaker_module.client_interceptor(sync_registry))
    call = channel.unary_unary(METHOD)

    def refused_sync() -> None:
        with contextlib.suppress(grpc.RpcError):
            call(b"x", timeout=5)

    refused_sync()  # opens the breaker (UNAVAILABLE from the dead address)
    assert sync_registry.snapshot()["bench.Echo"].state.value == "open"
    results["open breaker, sync channel (caller sees RpcError)"] = _best_us(refused_sync, 20_000)
    channel.close()

    # Through an asyncio channel.
    async def aio_refusals() -> float:
        aio_registry = BreakerRegistry(policy)
        async with grpc.aio.insecure_channel(
            dead, interceptors=breaker_module.aio_client_interceptors(aio_registry)
        ) as aio_channel:
            aio_call = aio_channel.unary_unary(METHOD)

            async def refused() -> None:
                with contextlib.suppress(grpc.RpcError):
                    await aio_call(b"x", timeout=5)

            await refused()
            best = float("inf")
            for _ in range(5):
                started = time.perf_counter()
                for _ in range(5_000):
                    await refused()
                best = min(best, (time.perf_counter() - started) / 5_000 * 1e6)
            return best

    results["open breaker, asyncio channel (caller sees AioRpcError)"] = asyncio.run(aio_refusals())

    # pybreaker around a plain call.
    peer = pybreaker.CircuitBreaker(fail_max=1, reset_timeout=3600)
    plain = grpc.insecure_channel(dead).unary_unary(METHOD)
    with contextlib.suppress(grpc.RpcError, pybreaker.CircuitBreakerError):
        peer.call(plain, b"x", timeout=5)
    assert peer.current_state == "open"

    def refused_peer() -> None:
        with contextlib.suppress(pybreaker.CircuitBreakerError):
            peer.call(plain, b"x", timeout=5)

    results["pybreaker, open, around a plain sync call"] = _best_us(refused_peer, 20_000)
    return results


def pybreaker_round_trip(port: int) -> tuple[float, float]:
    """pybreaker (CLOSED) around a plain loopback call, as a ratio to the same plain call."""
    peer = pybreaker.CircuitBreaker(fail_max=5, reset_timeout=60)
    plain = grpc.insecure_channel(f"127.0.0.1:{port}").unary_unary(METHOD)
    ours = intercepted_channel(
        grpc.insecure_channel(f"127.0.0.1:{port}"), breaker_module.client_interceptor()
    ).unary_unary(METHOD)
    rows: dict[str, Callable[[], Any]] = {
        "bare channel": lambda: plain(b"x"),
        "pybreaker": lambda: peer.call(plain, b"x"),
        "ours": lambda: ours(b"x"),
    }
    per_round: dict[str, list[float]] = {name: [] for name in rows}
    for fn in rows.values():
        for _ in range(WARMUP):
            fn()
    for _ in range(ROUNDS):
        for name, fn in rows.items():
            started = time.perf_counter()
            for _ in range(CALLS_PER_ROUND):
                fn()
            per_round[name].append((time.perf_counter() - started) / CALLS_PER_ROUND * 1e6)
    summary = summarize(per_round)
    return summary["pybreaker"][1], summary["ours"][1]


def _best_us(fn: Callable[[], None], number: int) -> float:
    return min(timeit.repeat(fn, number=number, repeat=5)) / number * 1e6


# --- report -------------------------------------------------------------------------------------------


def print_round_trips(title: str, summary: dict[str, tuple[float, float]], cpu: CpuPerCall) -> None:
    print(f"\n{title}")
    print(f"  {'client interceptors':44s} {'µs/call':>9s} {'vs bare':>9s}   CPU µs/call: client  server  "
          "(beyond the bare call)")
    used = cpu.per_call()
    bare_client, bare_server = used["bare channel"]
    for name, (micros, ratio) in summary.items():
        client, server = used[name]
        print(f"  {name:44s} {micros:9.1f} {ratio:8.3f}x   {client:18.0f}  {server:6.0f}  "
              f"({client - bare_client:+.0f} / {server - bare_server:+.0f})")


def _verdict(ratio: float, aim: float) -> str:
    return "met" if ratio <= aim else "NOT met"


def main() -> int:
    started = time.monotonic()
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None
        ports = dict(zip(SERVERS, map(int, server.stdout.readline().split()), strict=True))
        print(f"interceptors bench: loopback unary calls, {ROUNDS} rounds x {CALLS_PER_ROUND} calls per row")
        sync_cpu, aio_cpu = CpuPerCall(server.pid), CpuPerCall(server.pid)
        sync = sync_round_trips(ports, sync_cpu)
        print_round_trips("Round trip, sync client (intercepted_channel)", sync, sync_cpu)
        aio = asyncio.run(aio_round_trips(ports, aio_cpu))
        print_round_trips("Round trip, asyncio client (intercepted_aio_channel)", aio, aio_cpu)
        peer_ratio, our_ratio = pybreaker_round_trip(ports["bare"])
        print("\nCircuit breaker in CLOSED state around a loopback call (ratio to bare, same rounds)")
        print(f"  {'ours (interceptor)':44s} {our_ratio:18.3f}x")
        print(f"  {'pybreaker.call(plain call)':44s} {peer_ratio:18.3f}x")
        print("\nCPU per call without a network, in a tight loop (µs; our code, then OpenTelemetry's).")
        print("The same work in a real call costs several times this (cold caches beside gRPC's own work):")
        print("compare the CPU columns above.")
        for name, micros in cpu_per_call().items():
            print(f"  {name:44s} {micros:9.2f}")
        rejections = breaker_rejections(ports)
        print("\nOPEN breaker: time to refuse one call (µs)")
        for name, micros in rejections.items():
            print(f"  {name:56s} {micros:7.2f}")
    finally:
        if server.stdin is not None:
            server.stdin.close()
        server.wait(10)

    reject = rejections["open breaker, sync channel (caller sees RpcError)"]
    print("\nAgainst the aims (ratios to a bare call in the same rounds)")
    for label, summary in (("sync", sync), ("asyncio", aio)):
        traced = summary["whole stack"][1]
        sampled = summary["whole stack, 10% of traces sampled"][1]
        before = summary["whole stack, instrumentation's spans"][1]
        resilience = summary["deadlines+bulkhead+breaker (both sides)"][1]
        floor = summary[SDK_ONLY][1]
        print(
            f"  {label:8s} whole stack traced {traced:.3f}x "
            f"(aim <= {TARGET_TRACED_RATIO}x: {_verdict(traced, TARGET_TRACED_RATIO)}; "
            f"the SDK's spans alone, by hand: {floor:.3f}x); "
            f"10% sampled {sampled:.3f}x (aim <= {TARGET_SAMPLED_RATIO}x: {_verdict(sampled, TARGET_SAMPLED_RATIO)}); "
            f"without tracing {resilience:.3f}x; with the instrumentation's spans {before:.3f}x"
        )
    verdict = "met" if reject < TARGET_REJECT_US else "NOT met"
    print(f"  open breaker refuses a sync call in {reject:.1f} µs (aim < {TARGET_REJECT_US:.0f} µs: {verdict})")
    print(f"done in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    if sys.argv[1:] == ["--serve"]:
        serve()
    else:
        sys.exit(main())
