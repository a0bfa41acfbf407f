"""Participant messages from and to JSON give exactly what json_format gives, errors included."""

from __future__ import annotations

from typing import Any

import pytest
from google.protobuf import json_format
from google.protobuf.message import Message

from controlplane.saga.messages import to_json, to_message
from controlplane.v1 import config_pb2, registry_pb2
from demo.inventory.v1 import inventory_pb2
from demo.order.v1 import order_pb2
from demo.payment.v1 import payment_pb2

PAYLOADS: list[tuple[type[Message], dict[str, Any]]] = [
    (inventory_pb2.ReserveRequest, {"order_id": "o-1", "items": [{"sku": "a", "quantity": 2}, {"sku": "b"}]}),
    (inventory_pb2.ReserveRequest, {"order_id": "o-1", "items": []}),
    (payment_pb2.ChargeRequest, {"order_id": "o-1", "user_id": "u", "amount_cents": 1999.0, "currency": "EUR"}),
    (payment_pb2.ChargeRequest, {"amount_cents": "1999"}),  # int64 as a JSON string
    (payment_pb2.ChargeResponse, {"payment": {"status": "PAYMENT_STATUS_CHARGED",
                                              "created_at": "2024-05-01T10:00:00Z"}}),
    (payment_pb2.ChargeResponse, {"payment": {"status": 2}}),
    (payment_pb2.ChargeResponse, {"payment": {}}),
    (order_pb2.CancelOrderRequest, {"orderId": "o-1"}),  # the JSON name
    (registry_pb2.RegisterRequest, {"service": "s", "metadata": {"a": "b"}, "tags": ["x", "y"], "port": 80}),
    (registry_pb2.RegisterRequest, {"check": {"grpc": {"interval": "1s"}}}),  # a oneof and a Duration
    (config_pb2.GetConfigResponse, {"layer_versions": {"base": "3", "prod": 4}}),  # a map of uint64
    (registry_pb2.DiscoverRequest, {}),
]

BAD: list[tuple[type[Message], Any]] = [
    (inventory_pb2.ReserveRequest, {"order_id": 5}),
    (inventory_pb2.ReserveRequest, {"nope": 1}),
    (inventory_pb2.ReserveRequest, {"items": [{"quantity": 1.5}]}),
    (inventory_pb2.ReserveRequest, {"items": {"sku": "a"}}),
    (inventory_pb2.ReserveRequest, {"items": [{"quantity": 2**40}]}),
    (payment_pb2.ChargeRequest, {"amount_cents": True}),
    (payment_pb2.ChargeResponse, {"payment": {"status": "NO_SUCH_STATUS"}}),
    (payment_pb2.ChargeResponse, {"payment": {"created_at": "yesterday"}}),
    (payment_pb2.ChargeResponse, {"payment": "p"}),
]


@pytest.mark.parametrize(("message_class", "payload"), PAYLOADS)
def test_a_request_is_built_as_json_format_builds_it(message_class: type[Message], payload: dict[str, Any]) -> None:
    expected = json_format.ParseDict(payload, message_class())

    built = to_message(payload, message_class)

    assert built == expected
    assert to_json(built) == json_format.MessageToDict(expected, preserving_proto_field_name=True)


@pytest.mark.parametrize(("message_class", "payload"), BAD)
def test_a_request_that_cannot_be_built_fails_with_json_formats_error(message_class: type[Message],
                                                                       payload: Any) -> None:
    with pytest.raises(json_format.ParseError) as expected:
        json_format.ParseDict(payload, message_class())

    with pytest.raises(json_format.ParseError) as refused:
        to_message(payload, message_class)

    assert str(refused.value) == str(expected.value)


def test_a_response_converts_as_json_format_converts_it() -> None:
    response = payment_pb2.ChargeResponse(payment=payment_pb2.Payment(
        payment_id="p-1", amount_cents=2**40, status=payment_pb2.PAYMENT_STATUS_CHARGED))
    response.payment.created_at.FromSeconds(1_700_000_000)
    unknown_enum = payment_pb2.ChargeResponse(payment=payment_pb2.Payment(status=99))  # open enums keep numbers
    reservation = inventory_pb2.ReserveResponse(reservation=inventory_pb2.Reservation(
        order_id="o", items=[inventory_pb2.StockItem(sku="a", quantity=3)]))
    registration = registry_pb2.RegisterRequest(metadata={"k": "v"}, tags=["t"])

    for message in (response, unknown_enum, reservation, registration, order_pb2.ConfirmOrderResponse()):
        assert to_json(message) == json_format.MessageToDict(message, preserving_proto_field_name=True)
