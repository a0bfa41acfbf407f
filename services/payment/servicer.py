"""demo.payment.v1.PaymentService."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Callable

import grpc

from controlplane.errors import FieldViolation, NotFoundError, maps_domain_errors, raise_if
from controlplane.names import shown
from controlplane.saga.idempotency import IdempotencyStore, MemoryIdempotencyStore
from demo.payment.v1 import payment_pb2, payment_pb2_grpc
from services.common.faults import FaultInjector
from services.common.idempotency import honour_idempotency_keys
from services.common.timestamps import timestamp
from services.common.validation import called_by_saga, require_id
from services.payment.store import CHARGED, PaymentStore

CURRENCY = re.compile(r"[A-Z]{3}")
MAX_AMOUNT_CENTS = 100_000_000


class PaymentServicer(payment_pb2_grpc.PaymentServiceServicer):
    def __init__(
        self,
        store: PaymentStore,
        faults: FaultInjector | None = None,
        keys: IdempotencyStore | None = None,
        check_user: Callable[[str], None] | None = None,
    ) -> None:
        """`check_user(user_id)` raises a DomainError for a user who may not pay (unknown, inactive)."""
        self.store = store
        self.check_user = check_user
        self.faults = faults or FaultInjector()
        honour_idempotency_keys(self, keys or MemoryIdempotencyStore(), ("Charge", "Refund"))

    @maps_domain_errors
    def Charge(self, request: payment_pb2.ChargeRequest, context: grpc.ServicerContext) -> payment_pb2.ChargeResponse:
        currency = request.currency or "EUR"
        problems = require_id(request.order_id, "order_id", "order id") + require_id(
            request.user_id, "user_id", "user id"
        )
        if not 1 <= request.amount_cents <= MAX_AMOUNT_CENTS:
            problems.append(
                FieldViolation("amount_cents", f"must be 1..{MAX_AMOUNT_CENTS}, got {request.amount_cents}")
            )
        if not CURRENCY.fullmatch(currency):
            problems.append(FieldViolation("currency", f"must be an ISO 4217 code like EUR, got {shown(currency)}"))
        raise_if(problems)
        if self.check_user is not None and not self.store.charged(request.order_id):
            self.check_user(request.user_id)  # a repeated charge answers as before, whatever the user is now
        self.faults.maybe_fail("Charge")
        row = self.store.charge(request.order_id, request.user_id, request.amount_cents, currency)
        return payment_pb2.ChargeResponse(payment=to_proto(row))

    @maps_domain_errors
    def Refund(self, request: payment_pb2.RefundRequest, context: grpc.ServicerContext) -> payment_pb2.RefundResponse:
        raise_if(require_id(request.order_id, "order_id", "order id"))
        row = self.store.refund(request.order_id)
        if row is None and not called_by_saga(context):
            raise NotFoundError(f"order {request.order_id!r} was never charged")
        return payment_pb2.RefundResponse(payment=to_proto(row) if row else None)

    @maps_domain_errors
    def GetPayment(
        self, request: payment_pb2.GetPaymentRequest, context: grpc.ServicerContext
    ) -> payment_pb2.GetPaymentResponse:
        if not (request.payment_id or request.order_id):
            raise_if([FieldViolation("payment_id", "give payment_id or order_id")])
        return payment_pb2.GetPaymentResponse(payment=to_proto(self.store.get(request.payment_id, request.order_id)))


def to_proto(row: sqlite3.Row) -> payment_pb2.Payment:
    return payment_pb2.Payment(
        payment_id=row["payment_id"],
        order_id=row["order_id"],
        user_id=row["user_id"],
        amount_cents=row["amount_cents"],
        currency=row["currency"],
        status=payment_pb2.PAYMENT_STATUS_CHARGED if row["status"] == CHARGED else payment_pb2.PAYMENT_STATUS_REFUNDED,
        created_at=timestamp(row["created_at"]),
        updated_at=timestamp(row["updated_at"]),
    )
