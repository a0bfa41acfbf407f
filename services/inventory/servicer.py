"""demo.inventory.v1.InventoryService."""

from __future__ import annotations

import json
import sqlite3

import grpc

from controlplane.errors import FieldViolation, NotFoundError, maps_domain_errors, raise_if
from controlplane.saga.idempotency import IdempotencyStore, MemoryIdempotencyStore
from demo.inventory.v1 import inventory_pb2, inventory_pb2_grpc
from services.common.faults import FaultInjector
from services.common.idempotency import honour_idempotency_keys
from services.common.validation import called_by_saga, require_id
from services.inventory.store import RESERVED, InventoryStore

MAX_QUANTITY = 1_000_000
MAX_ITEMS = 100


class InventoryServicer(inventory_pb2_grpc.InventoryServiceServicer):
    def __init__(
        self, store: InventoryStore, faults: FaultInjector | None = None, keys: IdempotencyStore | None = None
    ) -> None:
        self.store = store
        self.faults = faults or FaultInjector()
        honour_idempotency_keys(self, keys or MemoryIdempotencyStore(), ("Reserve", "Release"))

    @maps_domain_errors
    def Reserve(
        self, request: inventory_pb2.ReserveRequest, context: grpc.ServicerContext
    ) -> inventory_pb2.ReserveResponse:
        problems = require_id(request.order_id, "order_id", "order id")
        if not 1 <= len(request.items) <= MAX_ITEMS:
            problems.append(FieldViolation("items", f"1..{MAX_ITEMS} items, got {len(request.items)}"))
            raise_if(problems)
        for i, item in enumerate(request.items):
            problems += require_id(item.sku, f"items[{i}].sku", "sku")
            if not 1 <= item.quantity <= MAX_QUANTITY:
                problems.append(
                    FieldViolation(f"items[{i}].quantity", f"must be 1..{MAX_QUANTITY}, got {item.quantity}")
                )
        raise_if(problems)
        self.faults.maybe_fail("Reserve")
        row = self.store.reserve(request.order_id, [(i.sku, i.quantity) for i in request.items])
        return inventory_pb2.ReserveResponse(reservation=reservation_to_proto(row))

    @maps_domain_errors
    def Release(
        self, request: inventory_pb2.ReleaseRequest, context: grpc.ServicerContext
    ) -> inventory_pb2.ReleaseResponse:
        raise_if(require_id(request.order_id, "order_id", "order id"))
        row = self.store.release(request.order_id)
        if row is None and not called_by_saga(context):
            raise NotFoundError(f"order {request.order_id!r} holds no reservation")
        return inventory_pb2.ReleaseResponse(reservation=reservation_to_proto(row) if row else None)

    @maps_domain_errors
    def GetStock(
        self, request: inventory_pb2.GetStockRequest, context: grpc.ServicerContext
    ) -> inventory_pb2.GetStockResponse:
        raise_if(require_id(request.sku, "sku", "sku"))
        return inventory_pb2.GetStockResponse(stock=stock_to_proto(self.store.stock(request.sku)))

    @maps_domain_errors
    def AddStock(
        self, request: inventory_pb2.AddStockRequest, context: grpc.ServicerContext
    ) -> inventory_pb2.AddStockResponse:
        problems = require_id(request.sku, "sku", "sku")
        if not 1 <= request.quantity <= MAX_QUANTITY:
            problems.append(FieldViolation("quantity", f"must be 1..{MAX_QUANTITY}, got {request.quantity}"))
        raise_if(problems)
        return inventory_pb2.AddStockResponse(stock=stock_to_proto(self.store.add(request.sku, request.quantity)))


def reservation_to_proto(row: sqlite3.Row) -> inventory_pb2.Reservation:
    status = (
        inventory_pb2.RESERVATION_STATUS_RESERVED
        if row["status"] == RESERVED
        else inventory_pb2.RESERVATION_STATUS_RELEASED
    )
    return inventory_pb2.Reservation(
        reservation_id=row["reservation_id"],
        order_id=row["order_id"],
        items=[inventory_pb2.StockItem(sku=sku, quantity=q) for sku, q in json.loads(row["items"])],
        status=status,
    )


def stock_to_proto(row: sqlite3.Row) -> inventory_pb2.Stock:
    return inventory_pb2.Stock(sku=row["sku"], available=row["available"], reserved=row["reserved"])
