"""The order service's calls to others: the user service (via discovery) and the control plane's sagas."""

from __future__ import annotations

import json
import sqlite3
from typing import Any

import grpc
from google.protobuf import struct_pb2

from controlplane.errors import DomainError, PreconditionError
from controlplane.v1 import saga_pb2, saga_pb2_grpc
from demo.user.v1 import user_pb2, user_pb2_grpc

PLACE_ORDER_SAGA = "place-order"


class DependencyUnavailable(DomainError):
    code = grpc.StatusCode.UNAVAILABLE


class UserCheck:
    """Checks that a user exists and is active, through the user service."""

    def __init__(self, channel: grpc.Channel) -> None:
        self._users = user_pb2_grpc.UserServiceStub(channel)

    def __call__(self, user_id: str) -> None:
        try:
            user = self._users.GetUser(user_pb2.GetUserRequest(user_id=user_id), timeout=2.0).user
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                raise PreconditionError(f"unknown user {user_id!r}") from None
            raise DependencyUnavailable(f"user service: {exc.code().name} {exc.details()}") from None
        if not user.active:
            raise PreconditionError(f"user {user_id!r} is inactive")


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
