"""Config requests that once froze the control plane, broke a later call or could not be stored."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Iterator

import grpc
import pytest

from controlplane.client import connect
from controlplane.config.wire import to_struct
from controlplane.errors import field_violations
from controlplane.v1 import config_pb2, config_pb2_grpc, registry_pb2, registry_pb2_grpc
from tests.config.conftest import set_config
from tests.helpers import ControlPlaneProcess, operator_tokens


def set_schema(stub, service: str, schema, expected: int = 0) -> config_pb2.SetSchemaResponse:
    return stub.SetSchema(config_pb2.SetSchemaRequest(service=service, schema=to_struct(schema),
                                                      expected_version=expected), timeout=30)


def refused(call, request) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as failure:
        call(request, timeout=30)
    return failure.value


def kv(consul, prefix: str) -> list:
    try:
        with urllib.request.urlopen(f"http://{consul.http_addr}/v1/kv/{prefix}?recurse", timeout=5) as answer:
            return json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        assert exc.code == 404
        return []


class Prober:
    """Discover calls on another channel, every 20 ms, while a test runs: the longest any one took (s)."""

    def __init__(self, address: str) -> None:
        self._channel = grpc.insecure_channel(address)
        self._stub = registry_pb2_grpc.RegistryServiceStub(self._channel)
        self._stop = threading.Event()
        self.worst = 0.0
        self.calls = 0
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            started = time.monotonic()
            self._stub.Discover(registry_pb2.DiscoverRequest(service="prober"), timeout=10)
            self.worst = max(self.worst, time.monotonic() - started)
            self.calls += 1

    def __enter__(self) -> Prober:
        self._stub.Discover(registry_pb2.DiscoverRequest(service="prober"), timeout=10)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        deadline = time.monotonic() + 10
        while self.calls < 10 and time.monotonic() < deadline:  # a few probes at least, whatever the test did
            time.sleep(0.01)
        self._stop.set()
        self._thread.join(10)
        self._channel.close()


# A blocked loop shows as a Discover stalled for the whole check (seconds for a catastrophic pattern on a
# backtracking engine); the worker thread's share of the GIL and a busy 2-CPU machine add tens of ms.
STALL = 0.5  # seconds


def test_a_catastrophic_backtracking_pattern_neither_stalls_the_loop_nor_passes_a_bad_value(
        config, control_plane, service) -> None:
    set_schema(config, service, {"type": "object", "properties": {"name": {"type": "string", "pattern": "^(a+)+$"}}})
    with Prober(control_plane.address) as prober:
        for _ in range(20):
            error = refused(config.SetConfig, config_pb2.SetConfigRequest(
                service=service, content=to_struct({"name": "a" * 40 + "!"})))
        set_config(config, service, {"name": "a" * 40})
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in field_violations(error)] == ["content.name"]
    assert prober.calls > 0 and prober.worst < STALL


def saga_sessions(consul, control_plane) -> set[str]:
    """The saga sessions of this test's control plane (replica id host:port), not of others that shared
    the session-scoped Consul earlier and may expire meanwhile."""
    with urllib.request.urlopen(f"http://{consul.http_addr}/v1/session/list", timeout=5) as answer:
        return {s["ID"] for s in json.loads(answer.read())
                if s["Name"].startswith("controlplane-saga") and s["Name"].endswith(f":{control_plane.port}")}


def test_a_schema_at_the_size_cap_is_checked_off_the_event_loop(config, consul, control_plane, service) -> None:
    sessions = saga_sessions(consul, control_plane)
    assert sessions
    schema = {"type": "object", "properties": {f"p{i:04d}": {"type": "integer", "minimum": 0} for i in range(1998)}}
    content = {f"p{i:04d}": i for i in range(1998)}
    with Prober(control_plane.address) as prober:
        set_schema(config, service, schema)
        version = 0
        for _ in range(3):
            version = set_config(config, service, content, expected=version).version
    assert prober.calls > 0 and prober.worst < STALL
    assert saga_sessions(consul, control_plane) == sessions  # the replica's session lived through it


def test_a_schema_with_more_nodes_than_the_cap_is_refused(config, consul, service) -> None:
    schema = {"type": "object", "properties": {f"p{i}": {"type": "integer"} for i in range(2500)}}
    error = refused(config.SetSchema, config_pb2.SetSchemaRequest(service=service, schema=to_struct(schema)))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "at most 2000" in field_violations(error)[0].description
    assert kv(consul, f"controlplane/config/{service}") == []


@pytest.mark.parametrize("schema", [
    {"$schema": ["a"]}, {"$schema": {"a": 1}}, {"$schema": True}, {"$schema": 7}, {"$schema": "https://x.invalid/s"},
    {"properties": {"a": {"pattern": "(?<=a)b"}}},
    {"patternProperties": {"(" * 1000 + "a" + ")" * 1000: {}}},
    {"$anchor": "a", "$ref": "#a"},
    {"$defs": {"a": {"$dynamicAnchor": "m", "$dynamicRef": "#m"}}, "$ref": "#/$defs/a"},
    {"$defs": {"x": {"$ref": "#/$defs/y"}, "y": {"allOf": [{"$ref": "#/$defs/x"}]}}, "$ref": "#/$defs/x"},
])
def test_schemas_that_cannot_be_used_are_invalid_and_not_stored(config, consul, service, schema) -> None:
    error = refused(config.SetSchema, config_pb2.SetSchemaRequest(service=service, schema=to_struct(schema)))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
    assert field_violations(error)
    assert kv(consul, f"controlplane/config/{service}") == []


@pytest.mark.parametrize(("request_fields", "field"), [
    ({"environment": "dev\n"}, "environment"),
    ({"environment": "Dev"}, "environment"),
    ({"author": "mallory\u202e"}, "author"),
    ({"author": "a\nb"}, "author"),
])
def test_names_and_authors_outside_the_grammar_are_refused(config, consul, service, request_fields, field) -> None:
    error = refused(config.SetConfig, config_pb2.SetConfigRequest(service=service, content=to_struct({"a": 1}),
                                                                  **request_fields))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in {v.field for v in field_violations(error)}
    assert kv(consul, f"controlplane/config/{service}") == []


def test_watch_config_of_a_name_with_a_newline_answers_at_once(config) -> None:
    stream = config.WatchConfig(config_pb2.WatchConfigRequest(service="order\n"), timeout=5)
    with pytest.raises(grpc.RpcError) as failure:
        next(stream)
    assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.parametrize("token", ["²", "\u0661", "-1", "1" * 40, "x"])
def test_list_versions_refuses_page_tokens_it_never_issued(config, service, token) -> None:
    set_config(config, service, {"a": 1})
    error = refused(config.ListVersions, config_pb2.ListVersionsRequest(service=service, page_token=token))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT


@pytest.fixture(scope="module")
def callers(consul, tmp_path_factory) -> Iterator[tuple[ControlPlaneProcess, dict[str, str]]]:
    """A control plane telling callers apart by identity (bearer tokens: all tests call from one address)."""
    folder = tmp_path_factory.mktemp("callers")
    tokens = operator_tokens(folder / "authz.yaml", "flooder", "other")
    process = ControlPlaneProcess(consul.http_addr, log_path=folder / "cp.log",
                                  extra_args=["--authz-policy", str(folder / "authz.yaml")]).start()
    yield process, tokens
    process.kill()


def test_a_caller_flooding_schema_checks_does_not_crowd_out_another_callers_write(callers, service) -> None:
    # Each check of this schema holds the check thread for a while (about 0.2 s here); 40 at once from one
    # caller filled the whole queue (32), and every other caller's write was RESOURCE_EXHAUSTED.
    process, tokens = callers
    schema = to_struct({"type": "object",
                        "properties": {f"p{i:03d}": {"type": "integer", "minimum": 0} for i in range(300)}})
    with connect(process.address, token=tokens["flooder"]).channel() as flood_channel, \
            connect(process.address, token=tokens["other"]).channel() as other_channel:
        flood = config_pb2_grpc.ConfigServiceStub(flood_channel)
        first_refusal = threading.Event()
        calls = []
        for n in range(40):
            call = flood.SetSchema.future(config_pb2.SetSchemaRequest(service=f"{service}-{n}", schema=schema),
                                          timeout=120)
            call.add_done_callback(lambda done: done.exception() is not None and first_refusal.set())
            calls.append(call)
        assert first_refusal.wait(60)  # the flood has its share of the queue, and more was refused
        written = set_config(config_pb2_grpc.ConfigServiceStub(other_channel), service, {"a": 1})
        outcomes = [call.exception() for call in calls]
    assert written.version == 1
    refusals = [error for error in outcomes if error is not None]
    assert refusals and {error.code() for error in refusals} == {grpc.StatusCode.RESOURCE_EXHAUSTED}
    assert all("of this caller" in error.details() for error in refusals)
