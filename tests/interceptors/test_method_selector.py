"""Method selectors: which methods a concern applies to, instead of special cases in the concerns."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from controlplane.interceptors import CallKind, ClientConcern, MethodSelector, OutgoingCall, server_interceptors
from controlplane.interceptors._sync_client import ClientInterceptor
from controlplane.interceptors.spans import traced_methods

from .servers import SERVER_STREAM, UNARY, Behavior, sync_served


def test_patterns_name_every_method_a_service_or_one_method() -> None:
    selector = MethodSelector(include=("pkg.A", "pkg.B/Get"), exclude=("pkg.A/Secret",))
    assert selector.accepts("/pkg.A/List") and selector.accepts("pkg.A/List")
    assert selector.accepts("/pkg.B/Get") and not selector.accepts("/pkg.B/Put")
    assert not selector.accepts("/pkg.A/Secret")
    assert MethodSelector().everything and not selector.everything


@pytest.mark.parametrize("pattern", ["", "pkg.*", "a/b/c", "*/Get"])
def test_malformed_patterns_are_refused(pattern: str) -> None:
    with pytest.raises(ValueError, match="method pattern"):
        MethodSelector(include=(pattern,))


def test_default_tracing_leaves_out_health_checks_and_the_excluded_services() -> None:
    selector = traced_methods({"OTEL_PYTHON_GRPC_EXCLUDED_SERVICES": "pkg.Noisy, pkg.Chatty"})
    assert not selector.accepts("/grpc.health.v1.Health/Check")
    assert not selector.accepts("/pkg.Noisy/Ping") and not selector.accepts("/pkg.Chatty/Ping")
    assert selector.accepts("/pkg.Orders/Place")


class Counting(ClientConcern):
    def __init__(self, methods: MethodSelector) -> None:
        self.methods = methods
        self.seen: list[str] = []

    def start(self, call: OutgoingCall) -> None:
        self.seen.append(call.method)


def test_a_concern_runs_only_for_the_methods_its_selector_accepts(behavior: Behavior) -> None:
    concern = Counting(MethodSelector.excluding(SERVER_STREAM))
    with sync_served(behavior, [ClientInterceptor([concern])]) as channel:
        channel.unary_unary(UNARY)(b"x", timeout=5)
        list(channel.unary_stream(SERVER_STREAM)(b"x", timeout=5))
    assert concern.seen == [UNARY]


def test_server_spans_follow_their_selector(behavior: Behavior) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    server = server_interceptors(tracer_provider=provider, traced_methods=MethodSelector.excluding(UNARY))
    with sync_served(behavior, [], server) as channel:
        channel.unary_unary(UNARY)(b"x", timeout=5)
        list(channel.unary_stream(SERVER_STREAM)(b"x", timeout=5))
    assert [span.name for span in exporter.get_finished_spans()] == [SERVER_STREAM]


def test_call_kinds_say_which_side_streams() -> None:
    assert CallKind.of(False, True) is CallKind.UNARY_STREAM
    assert CallKind.UNARY_STREAM.response_streaming and not CallKind.UNARY_STREAM.request_streaming
    assert OutgoingCall("/pkg.S/Watch", CallKind.UNARY_STREAM, None).streaming
    assert not OutgoingCall("/pkg.S/Get", CallKind.STREAM_UNARY, None).streaming
