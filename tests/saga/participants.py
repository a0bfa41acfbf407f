"""Saga participants for tests: small real gRPC servers implementing the demo protos.

Each keeps its records in SQLite, written in the same transaction as the idempotency record (see
controlplane/saga/idempotency.py), plus an `applied` audit table with one row per effect actually
applied. "No step applied twice" is checked there, in the participants' own records.

Behaviour is steered by the order id, so one definition covers every scenario:
  nostock-*   Reserve fails FAILED_PRECONDITION (nothing to compensate for that step)
  stuck-*     Release always fails UNAVAILABLE (the compensation cannot succeed)
  flaky-*     the first two Charge calls fail UNAVAILABLE before reaching the handler
  down-*      every Charge call fails UNAVAILABLE before reaching the handler (Refund works)
  reject-*    ConfirmOrder fails FAILED_PRECONDITION
  slow-*      every call sleeps `slow_seconds` first
  huge-*      Reserve answers a reservation id of HUGE_ID_CHARS characters (more than Consul stores in one value)
amount_cents above 100000 makes Charge fail FAILED_PRECONDITION ("card declined").
"""

from __future__ import annotations

import collections
import json
import random
import threading
import time
import uuid
from collections.abc import Callable
from concurrent import futures
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from controlplane.registry.client import SelfRegistration
from controlplane.saga.idempotency import SqliteIdempotencyStore, idempotent
from demo.inventory.v1 import inventory_pb2, inventory_pb2_grpc
from demo.order.v1 import order_pb2, order_pb2_grpc
from demo.payment.v1 import payment_pb2, payment_pb2_grpc

CARD_LIMIT_CENTS = 100_000
HUGE_ID_CHARS = 600_000


class Records:
    """A participant's SQLite database: its business rows, the idempotency records and the audit."""

    def __init__(self) -> None:
        self.store = SqliteIdempotencyStore(":memory:", transactional=True)
        self.db = self.store.connection
        self.db.execute("CREATE TABLE applied (op TEXT, order_id TEXT, at REAL)")
        self.calls: collections.Counter[tuple[str, str]] = collections.Counter()
        self._lock = threading.Lock()

    def applied(self, op: str, order_id: str) -> None:
        """Note an effect; call inside the handler, so it commits with the idempotency record."""
        self.db.execute("INSERT INTO applied VALUES (?, ?, ?)", (op, order_id, time.time()))

    def count_call(self, op: str, order_id: str) -> int:
        with self._lock:
            self.calls[(op, order_id)] += 1
            return self.calls[(op, order_id)]

    def applied_counts(self) -> collections.Counter[tuple[str, str]]:
        with self.store._lock:  # the store serializes all access to its connection
            rows = self.db.execute("SELECT op, order_id, COUNT(*) FROM applied GROUP BY op, order_id").fetchall()
        return collections.Counter({(op, order): n for op, order, n in rows})


class Faults:
    """Delays shared by a participant's handlers, applied before the idempotency check."""

    def __init__(self, jitter: float = 0.0, slow_seconds: float = 1.0) -> None:
        self.jitter = jitter
        self.slow_seconds = slow_seconds

    def delay(self, order_id: str) -> None:
        if order_id.startswith("slow-"):
            time.sleep(self.slow_seconds)
        elif self.jitter:
            time.sleep(random.uniform(0, self.jitter))


def _front(op: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Count the call and apply delays/transient faults before the idempotent handler runs."""

    def decorate(handler: Callable[..., Any]) -> Callable[..., Any]:
        def front(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
            n = self.records.count_call(op, request.order_id)
            self.faults.delay(request.order_id)
            if op == "charge" and request.order_id.startswith("flaky-") and n <= 2:
                context.abort(grpc.StatusCode.UNAVAILABLE, "payment gateway briefly unavailable")
            if op == "charge" and request.order_id.startswith("down-"):
                context.abort(grpc.StatusCode.UNAVAILABLE, "payment gateway down")
            return handler(self, request, context)

        return front

    return decorate


def _participant(records: Records, faults: Faults) -> dict[str, Any]:
    store = records.store
    db = records.db

    class Inventory(inventory_pb2_grpc.InventoryServiceServicer):
        def __init__(self) -> None:
            self.records, self.faults = records, faults
            db.execute("CREATE TABLE reservations (order_id TEXT PRIMARY KEY, items TEXT, status TEXT)")

        @_front("reserve")
        @idempotent(store)
        def Reserve(self, request: Any, context: grpc.ServicerContext) -> Any:
            if request.order_id.startswith("nostock-"):
                context.abort(grpc.StatusCode.FAILED_PRECONDITION, "not enough stock")
            items = [{"sku": i.sku, "quantity": i.quantity} for i in request.items]
            db.execute("INSERT OR REPLACE INTO reservations VALUES (?, ?, 'RESERVED')",
                       (request.order_id, json.dumps(items)))
            records.applied("reserve", request.order_id)
            huge = request.order_id.startswith("huge-")
            reservation_id = "r" * HUGE_ID_CHARS if huge else f"res-{uuid.uuid4().hex[:8]}"
            return inventory_pb2.ReserveResponse(reservation=inventory_pb2.Reservation(
                reservation_id=reservation_id, order_id=request.order_id, items=request.items,
                status=inventory_pb2.RESERVATION_STATUS_RESERVED))

        @_front("release")
        @idempotent(store)
        def Release(self, request: Any, context: grpc.ServicerContext) -> Any:
            if request.order_id.startswith("stuck-"):
                context.abort(grpc.StatusCode.UNAVAILABLE, "inventory database is down")
            row = db.execute("SELECT status FROM reservations WHERE order_id = ?", (request.order_id,)).fetchone()
            if row is None or row[0] != "RESERVED":
                return inventory_pb2.ReleaseResponse()  # nothing to release: fine for a compensation
            db.execute("UPDATE reservations SET status = 'RELEASED' WHERE order_id = ?", (request.order_id,))
            records.applied("release", request.order_id)
            return inventory_pb2.ReleaseResponse(reservation=inventory_pb2.Reservation(
                order_id=request.order_id, status=inventory_pb2.RESERVATION_STATUS_RELEASED))

    class Payment(payment_pb2_grpc.PaymentServiceServicer):
        def __init__(self) -> None:
            self.records, self.faults = records, faults
            db.execute("CREATE TABLE payments (order_id TEXT PRIMARY KEY, amount INTEGER, status TEXT)")

        @_front("charge")
        @idempotent(store)
        def Charge(self, request: Any, context: grpc.ServicerContext) -> Any:
            if request.amount_cents > CARD_LIMIT_CENTS:
                context.abort(grpc.StatusCode.FAILED_PRECONDITION, "card declined")
            db.execute("INSERT OR REPLACE INTO payments VALUES (?, ?, 'CHARGED')",
                       (request.order_id, request.amount_cents))
            records.applied("charge", request.order_id)
            return payment_pb2.ChargeResponse(payment=payment_pb2.Payment(
                payment_id=f"pay-{uuid.uuid4().hex[:8]}", order_id=request.order_id, user_id=request.user_id,
                amount_cents=request.amount_cents, currency=request.currency or "EUR",
                status=payment_pb2.PAYMENT_STATUS_CHARGED))

        @_front("refund")
        @idempotent(store)
        def Refund(self, request: Any, context: grpc.ServicerContext) -> Any:
            row = db.execute("SELECT status FROM payments WHERE order_id = ?", (request.order_id,)).fetchone()
            if row is None or row[0] != "CHARGED":
                return payment_pb2.RefundResponse()
            db.execute("UPDATE payments SET status = 'REFUNDED' WHERE order_id = ?", (request.order_id,))
            records.applied("refund", request.order_id)
            return payment_pb2.RefundResponse(payment=payment_pb2.Payment(
                order_id=request.order_id, status=payment_pb2.PAYMENT_STATUS_REFUNDED))

    class Orders(order_pb2_grpc.OrderServiceServicer):
        def __init__(self) -> None:
            self.records, self.faults = records, faults
            db.execute("CREATE TABLE orders (order_id TEXT PRIMARY KEY, status TEXT)")

        @_front("confirm")
        @idempotent(store)
        def ConfirmOrder(self, request: Any, context: grpc.ServicerContext) -> Any:
            if request.order_id.startswith("reject-"):
                context.abort(grpc.StatusCode.FAILED_PRECONDITION, "order cannot be confirmed")
            db.execute("INSERT OR REPLACE INTO orders VALUES (?, 'CONFIRMED')", (request.order_id,))
            records.applied("confirm", request.order_id)
            return order_pb2.ConfirmOrderResponse(order=order_pb2.Order(
                order_id=request.order_id, status=order_pb2.ORDER_STATUS_CONFIRMED))

        @_front("cancel")
        @idempotent(store)
        def CancelOrder(self, request: Any, context: grpc.ServicerContext) -> Any:
            row = db.execute("SELECT status FROM orders WHERE order_id = ?", (request.order_id,)).fetchone()
            if row is not None and row[0] == "CANCELLED":
                return order_pb2.CancelOrderResponse(order=order_pb2.Order(order_id=request.order_id))
            db.execute("INSERT OR REPLACE INTO orders VALUES (?, 'CANCELLED')", (request.order_id,))
            records.applied("cancel", request.order_id)
            return order_pb2.CancelOrderResponse(order=order_pb2.Order(
                order_id=request.order_id, status=order_pb2.ORDER_STATUS_CANCELLED, cancel_reason=request.reason))

    return {"inventory": Inventory, "payment": Payment, "order": Orders}


_ADDERS = {
    "inventory": (inventory_pb2_grpc.add_InventoryServiceServicer_to_server, "demo.inventory.v1.InventoryService"),
    "payment": (payment_pb2_grpc.add_PaymentServiceServicer_to_server, "demo.payment.v1.PaymentService"),
    "order": (order_pb2_grpc.add_OrderServiceServicer_to_server, "demo.order.v1.OrderService"),
}


class ParticipantServer:
    """One participant (inventory, payment or order) on a loopback port, with gRPC health."""

    def __init__(self, kind: str, records: Records, faults: Faults) -> None:
        self.kind = kind
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
        servicer = _participant(records, faults)[kind]()
        add, grpc_name = _ADDERS[kind]
        add(servicer, self.server)
        self.health = health.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()
        for name in ("", grpc_name):
            self.health.set(name, health_pb2.HealthCheckResponse.SERVING)
        self.registration: SelfRegistration | None = None

    def register(self, control_plane: str, service: str) -> None:
        self.registration = SelfRegistration(control_plane=control_plane, service=service, address="127.0.0.1",
                                             port=self.port, check_interval=1.0, reassert_interval=1.0)
        self.registration.register()

    def stop(self) -> None:
        if self.registration is not None:
            self.registration.deregister()
        self.server.stop(0).wait()


class Participants:
    """Inventory, payment and order participants registered under unique service names."""

    def __init__(self, control_plane: str, *, jitter: float = 0.0, slow_seconds: float = 1.0) -> None:
        suffix = uuid.uuid4().hex[:6]
        self.records = {kind: Records() for kind in _ADDERS}  # each participant has its own database
        self.faults = Faults(jitter, slow_seconds)
        self.services = {kind: f"saga-{kind}-{suffix}" for kind in _ADDERS}
        self.servers = [ParticipantServer(kind, self.records[kind], self.faults) for kind in _ADDERS]
        for server in self.servers:
            server.register(control_plane, self.services[server.kind])

    def applied(self) -> collections.Counter[tuple[str, str]]:
        """(op, order id) -> how often the effect was applied, from every participant's records."""
        total: collections.Counter[tuple[str, str]] = collections.Counter()
        for records in self.records.values():
            total.update(records.applied_counts())
        return total

    def calls(self) -> collections.Counter[tuple[str, str]]:
        """(op, order id) -> how often it was called (repeats included)."""
        total: collections.Counter[tuple[str, str]] = collections.Counter()
        for records in self.records.values():
            total.update(records.calls)
        return total

    def stop(self) -> None:
        for server in self.servers:
            server.stop()
