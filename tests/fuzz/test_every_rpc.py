"""Every RPC of the seven servers, fed generated requests: the status-code contract holds, and a
rejected write changes nothing in Consul (KV and catalog) or in the demo databases."""

from __future__ import annotations

import base64
import json
import os
import sqlite3
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from google.protobuf import message_factory
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor
from hypothesis import HealthCheck, given, settings

from controlplane.errors import field_violations
from controlplane.v1 import config_pb2, registry_pb2, saga_pb2
from demo.inventory.v1 import inventory_pb2
from demo.order.v1 import order_pb2
from demo.payment.v1 import payment_pb2
from demo.user.v1 import user_pb2
from tests.fuzz.conftest import PROBLEMS, TALLY
from tests.fuzz.requests import requests
from tests.stack import Stack

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "6"))
STREAM_WAIT = 0.5  # seconds a stream is read before the test ends it with its own deadline
# A hung call still fails a test, but only after time enough for every example (`make fuzz` runs thousands).
pytestmark = pytest.mark.timeout(120 + EXAMPLES * (STREAM_WAIT + 0.5))

SERVERS: dict[str, ServiceDescriptor] = {
    "controlplane": registry_pb2.DESCRIPTOR.services_by_name["RegistryService"],
    "controlplane-config": config_pb2.DESCRIPTOR.services_by_name["ConfigService"],
    "controlplane-saga": saga_pb2.DESCRIPTOR.services_by_name["SagaService"],
    "user": user_pb2.DESCRIPTOR.services_by_name["UserService"],
    "order": order_pb2.DESCRIPTOR.services_by_name["OrderService"],
    "payment": payment_pb2.DESCRIPTOR.services_by_name["PaymentService"],
    "inventory": inventory_pb2.DESCRIPTOR.services_by_name["InventoryService"],
}
READS = ("Get", "List", "Discover", "Watch", "Evaluate")
ALLOWED = {
    grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.ALREADY_EXISTS, grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.ABORTED,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
}
CASES = [(server, method) for server, service in SERVERS.items() for method in service.methods]


def _address(stack: Stack, server: str) -> str:
    return stack.control_plane if server.startswith("controlplane") else stack.address(server)


def _consul_state(stack: Stack, ignore: set[str]) -> tuple[dict[str, str], str]:
    """Every KV pair (but the keys of sagas already running) and the agent's services, as comparable values."""
    def get(path: str) -> bytes:
        try:
            with urllib.request.urlopen(f"http://{stack.consul}{path}", timeout=10) as answer:
                return answer.read()
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return b"[]"
            raise

    pairs = {e["Key"]: e.get("Value") or "" for e in json.loads(get("/v1/kv/?recurse"))
             if not any(saga_id in e["Key"] for saga_id in ignore)}
    services = json.loads(get("/v1/agent/services"))
    return pairs, json.dumps(services, sort_keys=True)


def _databases(stack: Stack) -> dict[str, list[tuple[object, ...]]]:
    rows: dict[str, list[tuple[object, ...]]] = {}
    for path in sorted(Path(stack.dir, "data").glob("*.db")):
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10) as db:
            for (table,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'"):
                rows[f"{path.name}:{table}"] = sorted(db.execute(f"SELECT * FROM {table}").fetchall(), key=repr)
    return rows


def _sagas_settled(channel: grpc.Channel) -> bool:
    from controlplane.v1 import saga_pb2_grpc

    stub = saga_pb2_grpc.SagaServiceStub(channel)
    for status in (saga_pb2.SAGA_STATUS_RUNNING, saga_pb2.SAGA_STATUS_COMPENSATING):
        if stub.ListSagas(saga_pb2.ListSagasRequest(status=status, page_size=1), timeout=5).sagas:
            return False
    return True


@pytest.fixture(scope="module")
def channels(fuzz_stack: Stack) -> Iterator[dict[str, grpc.Channel]]:
    opened = {server: grpc.insecure_channel(_address(fuzz_stack, server)) for server in SERVERS}
    yield opened
    for channel in opened.values():
        channel.close()


started_sagas: set[str] = set()


def _call(channel: grpc.Channel, method: MethodDescriptor, body: bytes) -> tuple[grpc.StatusCode, str, object]:
    path = f"/{method.containing_service.full_name}/{method.name}"
    response_class = message_factory.GetMessageClass(method.output_type)
    if method.server_streaming:
        started = time.monotonic()
        call = channel.unary_stream(path, request_serializer=None, response_deserializer=response_class.FromString)(
            body, timeout=STREAM_WAIT)
        try:
            for _ in call:
                break
            call.cancel()
            return grpc.StatusCode.OK, "", call
        except grpc.RpcError as exc:
            code = exc.code()
            if code == grpc.StatusCode.DEADLINE_EXCEEDED and time.monotonic() - started >= STREAM_WAIT * 0.9:
                return grpc.StatusCode.OK, "", exc  # waiting for a change: our own deadline ended it
            return code, exc.details() or "", exc
    try:
        response = channel.unary_unary(path, request_serializer=None,
                                       response_deserializer=response_class.FromString)(body, timeout=20)
        return grpc.StatusCode.OK, "", response
    except grpc.RpcError as exc:
        return exc.code(), exc.details() or "", exc


@pytest.mark.parametrize(("server", "method_name"),
                         [(s, m.name) for s, m in CASES], ids=[f"{s}.{m.name}" for s, m in CASES])
def test_generated_requests_get_a_contract_status_and_rejected_writes_change_nothing(
        fuzz_stack: Stack, channels: dict[str, grpc.Channel], server: str, method_name: str) -> None:
    method = SERVERS[server].methods_by_name[method_name]
    request_class = message_factory.GetMessageClass(method.input_type)
    write = not method.name.startswith(READS)
    channel = channels[server]

    @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    @given(body=requests(request_class))
    def attempt(body: bytes) -> None:
        before = _consul_state(fuzz_stack, started_sagas) if write else None
        quiet = write and _sagas_settled(channels["controlplane-saga"])
        rows = _databases(fuzz_stack) if quiet else None
        code, details, outcome = _call(channel, method, body)
        TALLY[code.name] += 1
        where = f"{server}.{method.name} {base64.b64encode(body[:300]).decode()}"
        problem = None
        if code not in ALLOWED:
            problem = f"{code.name} {details[:200]!r}"
        elif "metadata size" in details:
            problem = f"error larger than gRPC's metadata limit: {details[:200]!r}"
        elif code == grpc.StatusCode.INVALID_ARGUMENT and not field_violations(outcome):  # type: ignore[arg-type]
            problem = f"INVALID_ARGUMENT without field violations: {details[:200]!r}"
        if code == grpc.StatusCode.OK:
            saga_id = getattr(getattr(outcome, "saga", None), "saga_id", "") or getattr(outcome, "saga_id", "")
            if saga_id:
                started_sagas.add(saga_id)
        elif write and problem is None:
            after = _consul_state(fuzz_stack, started_sagas)
            if after != before:
                changed = sorted(set(after[0].items()) ^ set(before[0].items()))[:3]
                problem = f"rejected ({code.name}) but Consul changed: {changed or 'catalog'}"
            elif quiet and _sagas_settled(channels["controlplane-saga"]):
                TALLY["_checked"] += 1
                if _databases(fuzz_stack) != rows:
                    problem = f"rejected ({code.name}) but a demo database changed"
            else:
                TALLY["_unchecked"] += 1
        if problem:
            PROBLEMS.append(f"{where}: {problem}")
        assert problem is None, f"{where}: {problem}"

    attempt()


def test_the_stack_is_still_up_and_serving(fuzz_stack: Stack, channels: dict[str, grpc.Channel]) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    for server in ("controlplane", "user", "order", "payment", "inventory"):
        answer = health_pb2_grpc.HealthStub(channels[server]).Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert answer.status == health_pb2.HealthCheckResponse.SERVING, server
    assert all(os.kill(pid, 0) is None for pid in fuzz_stack.pids())


