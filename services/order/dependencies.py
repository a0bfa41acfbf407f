"""The order service's calls to others: the user service (via discovery) and the control plane's sagas."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

import grpc
from google.protobuf import struct_pb2

from controlplane.v1 import saga_pb2, saga_pb2_grpc
from services.common.dependencies import DependencyUnavailable, UserCheck

__all__ = ["PLACE_ORDER_SAGA", "DependencyUnavailable", "SagaStarter", "UserCheck", "place_order_input"]

PLACE_ORDER_SAGA = "place-order"


class SagaStarter:
    """Starts the place-order saga for an order (idempotent by saga id on the control plane's side)."""

    def __init__(self, channel: grpc.Channel) -> None:
        self._sagas = saga_pb2_grpc.SagaServiceStub(channel)

    def __call__(self, saga_id: str, order: sqlite3.Row) -> None:
        saga_input = struct_pb2.Struct()
        saga_input.update(place_order_input(order))
        try:
            self._sagas.StartSaga(
                saga_pb2.StartSagaRequest(saga_id=saga_id, definition_name=PLACE_ORDER_SAGA, input=saga_input),
                timeout=5.0,
            )
        except grpc.RpcError as exc:
            raise DependencyUnavailable(f"saga service: {exc.code().name} {exc.details()}") from None


def place_order_input(order: sqlite3.Row) -> dict[str, Any]:
    """The place-order saga's input: what its steps' request templates refer to."""
    items = json.loads(order["items"])
    return {
        "order_id": order["order_id"],
        "user_id": order["user_id"],
        "amount_cents": order["total_cents"],
        "currency": "EUR",
        "items": [{"sku": sku, "quantity": quantity} for sku, quantity, _ in items],
    }
