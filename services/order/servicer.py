"""demo.order.v1.OrderService: takes orders and hands them to the place-order saga."""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Callable

import grpc

from controlplane.errors import AlreadyExistsError, FieldViolation, maps_domain_errors, raise_if
from controlplane.saga.idempotency import IdempotencyStore, MemoryIdempotencyStore
from demo.order.v1 import order_pb2, order_pb2_grpc
from services.common.idempotency import honour_idempotency_keys
from services.common.pages import fetch_page
from services.common.timestamps import timestamp
from services.common.validation import calling_saga, require_id, text
from services.order.dependencies import DependencyUnavailable
from services.order.store import CANCELLED, CONFIRMED, PENDING, Item, OrderStore

MAX_ITEMS = 100
MAX_REASON = 500
MAX_QUANTITY = 1000
MAX_UNIT_PRICE = 10_000_000
# What one payment may charge (the payment service's own limit): an order above it could never be paid.
MAX_TOTAL_CENTS = 100_000_000

# check_user(user_id) raises a DomainError when the user may not order.
CheckUser = Callable[[str], None]
# place(order) starts the order's saga and notes it (see outbox.SagaOutbox.place).
Place = Callable[[sqlite3.Row], None]

_STATUS = {CONFIRMED: order_pb2.ORDER_STATUS_CONFIRMED, CANCELLED: order_pb2.ORDER_STATUS_CANCELLED}


class OrderServicer(order_pb2_grpc.OrderServiceServicer):
    def __init__(
        self, store: OrderStore, check_user: CheckUser, place: Place, keys: IdempotencyStore | None = None
    ) -> None:
        self.store = store
        self.check_user = check_user
        self.place = place
        honour_idempotency_keys(self, keys or MemoryIdempotencyStore(), ("ConfirmOrder", "CancelOrder"))

    @maps_domain_errors
    def CreateOrder(
        self, request: order_pb2.CreateOrderRequest, context: grpc.ServicerContext
    ) -> order_pb2.CreateOrderResponse:
        raise_if(validate_new_order(request))
        request_id = request.request_id or uuid.uuid4().hex
        self.check_user(request.user_id)
        order_id = f"order-{uuid.uuid4().hex[:12]}"
        items: list[Item] = [(i.sku, i.quantity, i.unit_price_cents) for i in request.items]
        row = self.store.create(order_id, request_id, request.user_id, items, saga_id=f"place-{order_id}")
        if row["order_id"] != order_id and (row["user_id"], json.loads(row["items"])) != (request.user_id,
                                                                                        [list(i) for i in items]):
            raise AlreadyExistsError(f"request_id {request_id!r} already placed order {row['order_id']} with other "
                                     "content; use a new request_id for a new order")
        if not row["saga_started"] and row["status"] == PENDING:  # new, or a repeat whose saga start is unsure
            try:
                self.place(row)
            except DependencyUnavailable as exc:
                raise DependencyUnavailable(
                    f"order {row['order_id']} is recorded but its saga could not be started yet ({exc.message}); "
                    f"it will be, and CreateOrder with request_id {request_id!r} returns it") from None
            row = self.store.get(row["order_id"])
        return order_pb2.CreateOrderResponse(order=to_proto(row), saga_id=row["saga_id"])

    @maps_domain_errors
    def GetOrder(self, request: order_pb2.GetOrderRequest, context: grpc.ServicerContext) -> order_pb2.GetOrderResponse:
        raise_if(require_id(request.order_id, "order_id", "order id"))
        return order_pb2.GetOrderResponse(order=to_proto(self.store.get(request.order_id)))

    @maps_domain_errors
    def ListOrders(
        self, request: order_pb2.ListOrdersRequest, context: grpc.ServicerContext
    ) -> order_pb2.ListOrdersResponse:
        rows, token = fetch_page(
            lambda after, limit: self.store.page(request.user_id, after, limit),
            request.page_size,
            request.page_token,
            "order_id",
        )
        return order_pb2.ListOrdersResponse(orders=[to_proto(r) for r in rows], next_page_token=token)

    @maps_domain_errors
    def ConfirmOrder(
        self, request: order_pb2.ConfirmOrderRequest, context: grpc.ServicerContext
    ) -> order_pb2.ConfirmOrderResponse:
        raise_if(require_id(request.order_id, "order_id", "order id"))
        return order_pb2.ConfirmOrderResponse(order=to_proto(self.store.confirm(request.order_id)))

    @maps_domain_errors
    def CancelOrder(
        self, request: order_pb2.CancelOrderRequest, context: grpc.ServicerContext
    ) -> order_pb2.CancelOrderResponse:
        raise_if(require_id(request.order_id, "order_id", "order id"))
        raise_if(text(request.reason, "reason", MAX_REASON))
        row = self.store.cancel(request.order_id, request.reason or "cancelled", by_saga=calling_saga(context))
        return order_pb2.CancelOrderResponse(order=to_proto(row))


def validate_new_order(request: order_pb2.CreateOrderRequest) -> list[FieldViolation]:
    problems = require_id(request.user_id, "user_id", "user id")
    if request.request_id:
        problems += require_id(request.request_id, "request_id", "request id")
    if not 1 <= len(request.items) <= MAX_ITEMS:
        problems.append(FieldViolation("items", f"1..{MAX_ITEMS} items, got {len(request.items)}"))
    for i, item in enumerate(request.items):
        problems += require_id(item.sku, f"items[{i}].sku", "sku")
        if not 1 <= item.quantity <= MAX_QUANTITY:
            problems.append(FieldViolation(f"items[{i}].quantity", f"must be 1..{MAX_QUANTITY}, got {item.quantity}"))
        if not 1 <= item.unit_price_cents <= MAX_UNIT_PRICE:
            problems.append(
                FieldViolation(
                    f"items[{i}].unit_price_cents", f"must be 1..{MAX_UNIT_PRICE}, got {item.unit_price_cents}"
                )
            )
    total = sum(i.quantity * i.unit_price_cents for i in request.items)
    if not problems and total > MAX_TOTAL_CENTS:
        problems.append(FieldViolation("items", f"the order totals {total} cents; at most {MAX_TOTAL_CENTS} can be "
                                                "paid at once"))
    return problems


def to_proto(row: sqlite3.Row) -> order_pb2.Order:
    return order_pb2.Order(
        order_id=row["order_id"],
        user_id=row["user_id"],
        items=[order_pb2.OrderItem(sku=s, quantity=q, unit_price_cents=p) for s, q, p in json.loads(row["items"])],
        total_cents=row["total_cents"],
        status=_STATUS.get(row["status"], order_pb2.ORDER_STATUS_PENDING),
        saga_id=row["saga_id"],
        cancel_reason=row["cancel_reason"],
        created_at=timestamp(row["created_at"]),
        updated_at=timestamp(row["updated_at"]),
    )
