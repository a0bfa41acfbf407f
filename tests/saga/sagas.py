"""Saga definitions and client helpers shared by the saga tests."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

import grpc
from google.protobuf import json_format

from controlplane.v1 import registry_pb2, registry_pb2_grpc, saga_pb2, saga_pb2_grpc
from tests.helpers import wait_until

TERMINAL = (saga_pb2.SAGA_STATUS_COMPLETED, saga_pb2.SAGA_STATUS_COMPENSATED, saga_pb2.SAGA_STATUS_NEEDS_ATTENTION)


def order_definition(name: str, services: Mapping[str, str], **overrides: Any) -> saga_pb2.SagaDefinition:
    """Reserve stock, charge the card, confirm the order; each undone by its compensation."""
    fast_retry = {"max_attempts": 3, "initial_backoff": "0.01s", "max_backoff": "0.05s"}
    raw: dict[str, Any] = {
        "name": name,
        "steps": [
            {
                "name": "reserve",
                "target_service": services["inventory"],
                "action": "/demo.inventory.v1.InventoryService/Reserve",
                "compensation": "/demo.inventory.v1.InventoryService/Release",
                "request_template": {"order_id": "$.order_id", "items": "$.items"},
                "response_mapping": {"reservation_id": "reservation.reservation_id"},
                "timeout": "2s",
                "retry": fast_retry,
            },
            {
                "name": "charge",
                "target_service": services["payment"],
                "action": "/demo.payment.v1.PaymentService/Charge",
                "compensation": "/demo.payment.v1.PaymentService/Refund",
                "request_template": {"order_id": "$.order_id", "user_id": "$.user_id",
                                     "amount_cents": "$.amount_cents", "currency": "EUR"},
                "response_mapping": {"payment_id": "payment.payment_id"},
                "timeout": "2s",
                "retry": fast_retry,
            },
            {
                "name": "confirm",
                "target_service": services["order"],
                "action": "/demo.order.v1.OrderService/ConfirmOrder",
                "compensation": "/demo.order.v1.OrderService/CancelOrder",
                "request_template": {"order_id": "$.order_id"},
                "compensation_template": {"order_id": "$.order_id", "reason": "saga compensated"},
                "timeout": "2s",
                "retry": fast_retry,
            },
        ],
        "compensation_retry": {"max_attempts": 3, "initial_backoff": "0.01s", "max_backoff": "0.05s"},
    }
    raw.update(overrides)
    return json_format.ParseDict(raw, saga_pb2.SagaDefinition())


def order_input(order_id: str, amount_cents: int = 1500) -> dict[str, Any]:
    return {"order_id": order_id, "user_id": "u-1", "amount_cents": amount_cents,
            "items": [{"sku": "sku-1", "quantity": 2}]}


def start(stub: saga_pb2_grpc.SagaServiceStub, definition: str, saga_input: Mapping[str, Any],
          saga_id: str = "", version: int = 0) -> saga_pb2.StartSagaResponse:
    request = saga_pb2.StartSagaRequest(saga_id=saga_id or f"saga-{uuid.uuid4().hex[:12]}",
                                        definition_name=definition, definition_version=version)
    request.input.update(dict(saga_input))
    return stub.StartSaga(request, timeout=10)


def wait_ended(stub: saga_pb2_grpc.SagaServiceStub, saga_id: str, timeout: float = 20.0) -> saga_pb2.Saga:
    def ended() -> saga_pb2.Saga | None:
        try:
            saga = stub.GetSaga(saga_pb2.GetSagaRequest(saga_id=saga_id), timeout=5).saga
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.UNAVAILABLE:
                return None
            raise
        return saga if saga.status in TERMINAL else None

    return wait_until(ended, timeout, interval=0.05, what=f"saga {saga_id} to end")


def wait_discoverable(channel: grpc.Channel, services: Mapping[str, str], timeout: float = 15.0) -> None:
    """Until every participant has a passing instance in the registry."""
    stub = registry_pb2_grpc.RegistryServiceStub(channel)

    def ready() -> bool:
        return all(stub.Discover(registry_pb2.DiscoverRequest(service=name), timeout=5).instances
                   for name in services.values())

    wait_until(ready, timeout, what="participants to pass their health checks")


def statuses(saga: saga_pb2.Saga) -> list[str]:
    return [saga_pb2.StepStatus.Name(step.status).removeprefix("STEP_STATUS_") for step in saga.steps]
