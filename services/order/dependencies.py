"""The order service's calls to others: the user service (via discovery) and the control plane's sagas."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable
from typing import Any

import grpc
from google.protobuf import struct_pb2

from controlplane.errors import DomainError
from controlplane.v1 import saga_pb2, saga_pb2_grpc
from services.common.dependencies import DependencyUnavailable, UserCheck

__all__ = ["PLACE_ORDER_SAGA", "DependencyUnavailable", "SagaRefused", "SagaStarter", "UserCheck",
           "place_order_input"]

PLACE_ORDER_SAGA = "place-order"
# Answers after which the saga surely does not exist and never will for this request.
REFUSALS = frozenset({grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND, grpc.StatusCode.FAILED_PRECONDITION,
                      grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED,
                      grpc.StatusCode.UNIMPLEMENTED})


class SagaRefused(DomainError):
    """The saga service refused to start the saga: it does not run and will not."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class SagaStarter:
    """Starts the place-order saga for an order. StartSaga is idempotent by saga id, so any answer that
    leaves its fate open (UNAVAILABLE, a deadline, ...) is retried, for up to `budget` seconds, each
    attempt with `attempt_timeout`; the channel's own retry policy moves between control-plane replicas
    underneath. Raises SagaRefused for a definite refusal, DependencyUnavailable when still unsure."""

    def __init__(self, channel: grpc.Channel, *, budget: float = 6.0, attempt_timeout: float = 2.0,
                 sleep: Callable[[float], None] = time.sleep, clock: Callable[[], float] = time.monotonic) -> None:
        self._sagas = saga_pb2_grpc.SagaServiceStub(channel)
        self._budget = budget
        self._attempt_timeout = attempt_timeout
        self._sleep = sleep
        self._clock = clock

    def __call__(self, saga_id: str, order: sqlite3.Row) -> None:
        saga_input = struct_pb2.Struct()
        saga_input.update(place_order_input(order))
        request = saga_pb2.StartSagaRequest(saga_id=saga_id, definition_name=PLACE_ORDER_SAGA, input=saga_input)
        give_up, pause = self._clock() + self._budget, 0.1
        while True:
            left = give_up - self._clock()
            try:
                self._sagas.StartSaga(request, timeout=max(0.05, min(self._attempt_timeout, left)))
                return
            except grpc.RpcError as exc:
                if exc.code() in REFUSALS:
                    raise SagaRefused(f"saga service: {exc.code().name} {exc.details()}") from None
                if self._clock() + pause >= give_up:
                    raise DependencyUnavailable(f"saga service: {exc.code().name} {exc.details()}") from None
            self._sleep(pause)
            pause = min(pause * 2, 1.0)


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
