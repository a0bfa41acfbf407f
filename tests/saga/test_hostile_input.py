"""Saga requests that once hung a saga, answered UNKNOWN, or reached Consul's limits: each is refused
with INVALID_ARGUMENT and leaves no trace in Consul."""

from __future__ import annotations

import json
import urllib.request
import uuid

import grpc
import pytest
from google.protobuf import duration_pb2, json_format, struct_pb2

from controlplane.errors import field_violations
from controlplane.v1 import saga_pb2
from tests.saga.sagas import order_definition


def saga_keys(consul, saga_id: str, prefix: str = "controlplane/saga/") -> list[str]:
    """Every Consul key under `prefix` that names `saga_id`."""
    try:
        with urllib.request.urlopen(f"http://{consul.http_addr}/v1/kv/{prefix}?keys", timeout=5) as answer:
            return [k for k in json.loads(answer.read()) if saga_id in k]
    except urllib.error.HTTPError:
        return []


def refused(call, request) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as failure:
        call(request, timeout=10)
    return failure.value


def deep_struct(levels: int) -> struct_pb2.Struct:
    value: object = 1
    for _ in range(levels):
        value = {"n": value}
    message = struct_pb2.Struct()
    message.update({"deep": value})
    return message


@pytest.mark.parametrize(("saga_id", "saga_input", "field"), [
    ("x\n", struct_pb2.Struct(), "saga_id"),
    ("a" * 129, struct_pb2.Struct(), "saga_id"),
    ("ok-id", json_format.ParseDict({"big": "x" * 70_000}, struct_pb2.Struct()), "input"),
    ("ok-id", deep_struct(34), "request"),  # deeper than protobuf decodes: refused before the servicer runs
])
def test_start_saga_refuses_what_cannot_be_stored_or_sent(sagas, consul, order_saga, saga_id, saga_input,
                                                          field) -> None:
    saga_id = saga_id.replace("ok-id", f"hostile-{uuid.uuid4().hex[:8]}")
    request = saga_pb2.StartSagaRequest(saga_id=saga_id, definition_name=order_saga)
    request.input.CopyFrom(saga_input)
    error = refused(sagas.StartSaga, request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in {v.field for v in field_violations(error)}
    assert saga_keys(consul, saga_id.strip() or "none") == []


def test_non_finite_numbers_in_the_input_are_refused(sagas, order_saga) -> None:
    request = saga_pb2.StartSagaRequest(saga_id=f"nan-{uuid.uuid4().hex[:8]}", definition_name=order_saga)
    request.input.fields["amount_cents"].number_value = float("nan")
    assert refused(sagas.StartSaga, request).code() == grpc.StatusCode.INVALID_ARGUMENT


def test_abort_with_a_reason_too_large_for_consul_is_refused(sagas) -> None:
    error = refused(sagas.AbortSaga, saga_pb2.AbortSagaRequest(saga_id="some-saga", reason="r" * 400_000))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in field_violations(error)] == ["reason"]
    assert refused(sagas.AbortSaga, saga_pb2.AbortSagaRequest(saga_id="x\n")).code() == \
        grpc.StatusCode.INVALID_ARGUMENT


def _definition(participants, **changes) -> saga_pb2.SagaDefinition:
    definition = order_definition(f"hostile-{uuid.uuid4().hex[:8]}", participants.services)
    for path, value in changes.items():
        target = definition
        *parents, last = path.split(".")
        for part in parents:
            target = target.steps[int(part)] if part.isdigit() else getattr(target, part)
        if hasattr(getattr(target, last, None), "CopyFrom"):
            getattr(target, last).CopyFrom(value)
        else:
            setattr(target, last, value)
    return definition


@pytest.mark.parametrize(("changes", "field"), [
    ({"name": "def\x00"}, "definition.name"),
    ({"name": "d" * 200}, "definition.name"),
    ({"0.timeout": duration_pb2.Duration(seconds=1)}, None),
    ({"0.retry.backoff_multiplier": float("nan")}, "definition.steps[0].retry.backoff_multiplier"),
    ({"0.retry.backoff_multiplier": float("inf")}, "definition.steps[0].retry.backoff_multiplier"),
    ({"0.action": "/controlplane.v1.RegistryService/Deregister"}, "definition.steps[0].action"),
    ({"0.compensation": "/grpc.health.v1.Health/Check"}, "definition.steps[0].compensation"),
])
def test_register_definition_refuses_definitions_that_cannot_run(sagas, participants, changes, field) -> None:
    definition = _definition(participants, **changes)
    if field is None:  # the control case: this one is fine
        assert sagas.RegisterDefinition(saga_pb2.RegisterDefinitionRequest(definition=definition), timeout=10)
        return
    error = refused(sagas.RegisterDefinition, saga_pb2.RegisterDefinitionRequest(definition=definition))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in {v.field for v in field_violations(error)}


@pytest.mark.parametrize(("seconds", "nanos"), [(1, -5), (-1, 5), (0, 1_000_000_000)])
def test_definition_durations_must_be_valid_durations(sagas, participants, seconds, nanos) -> None:
    definition = _definition(participants)
    definition.steps[0].timeout.seconds, definition.steps[0].timeout.nanos = seconds, nanos
    error = refused(sagas.RegisterDefinition, saga_pb2.RegisterDefinitionRequest(definition=definition))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "definition.steps[0].timeout" in {v.field for v in field_violations(error)}


def test_a_template_holding_infinity_is_refused(sagas, participants) -> None:
    definition = _definition(participants)
    definition.steps[1].request_template.fields["amount_cents"].number_value = float("inf")
    error = refused(sagas.RegisterDefinition, saga_pb2.RegisterDefinitionRequest(definition=definition))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_a_definition_over_the_size_cap_is_refused(sagas, participants) -> None:
    definition = _definition(participants)
    definition.steps[0].request_template.fields["padding"].string_value = "p" * 600_000
    error = refused(sagas.RegisterDefinition, saga_pb2.RegisterDefinitionRequest(definition=definition))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "bytes" in error.details()
