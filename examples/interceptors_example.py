"""Tracing, deadline budgets and circuit breaking in a plain gRPC app, in a few lines.

Runs standalone: starts a server on a free loopback port, calls it through the interceptor stack, prints
the trace id the server returned, shows the breaker refusing calls to a dead address, and exits 0.
Spans go to .traces/<service>.jsonl (or $CONTROLPLANE_TRACE_DIR), or to OTLP if OTEL_EXPORTER_OTLP_ENDPOINT
is set.

    python examples/interceptors_example.py
"""

from __future__ import annotations

import logging
import socket
from concurrent import futures

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from controlplane.interceptors import (
    BreakerPolicy,
    ClientPolicy,
    DeadlinePolicy,
    TraceContextFilter,
    channel_options,
    client_interceptors,
    intercepted_channel,
    server_interceptors,
    setup_tracing,
    trace_id_of,
)

log = logging.getLogger("example")


def main() -> None:
    handler = logging.StreamHandler()
    handler.addFilter(TraceContextFilter())
    handler.setFormatter(logging.Formatter("%(levelname)s trace=%(trace_id)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler])

    provider = setup_tracing("example")

    # Server: one line more than usual (interceptors=...).
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4), interceptors=server_interceptors())
    hello = grpc.unary_unary_rpc_method_handler(lambda request, context: b"hello " + request)
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("example.Greeter", {"Hello": hello})])
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()

    # Client: policies (all optional) and two wrapped lines where the channel is built.
    policy = ClientPolicy(
        deadlines=DeadlinePolicy(default_timeout=2.0),
        breaker=BreakerPolicy(minimum_calls=3, window_size=10, wait_in_open=5.0),
    )
    channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=channel_options(policy))
    channel = intercepted_channel(channel, *client_interceptors(policy))

    reply, call = channel.unary_unary("/example.Greeter/Hello").with_call(b"world")
    print(reply.decode())
    print(f"trace id: {trace_id_of(call)}")

    # A dead address: after 3 failures the breaker opens and refuses calls without touching the network.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{sock.getsockname()[1]}"
    dead_stub = health_pb2_grpc.HealthStub(
        intercepted_channel(grpc.insecure_channel(dead), *client_interceptors(policy))
    )
    for attempt in range(1, 5):
        try:
            dead_stub.Check(health_pb2.HealthCheckRequest())
        except grpc.RpcError as error:
            metadata = dict(error.trailing_metadata() or ())
            state = metadata.get("x-breaker-state", "closed")
            print(f"dead call {attempt}: {error.code().name}, breaker {state}, trace id: {trace_id_of(error)}")

    channel.close()
    server.stop(None)
    provider.shutdown()  # flushes the spans


if __name__ == "__main__":
    main()
