"""Payment: one charge per order, refunds, and injected faults."""

from __future__ import annotations

import random

import grpc
import pytest

from controlplane.errors import PreconditionError
from demo.payment.v1 import payment_pb2 as pay
from demo.payment.v1 import payment_pb2_grpc
from services.common.faults import FaultInjector, Faults
from services.payment.servicer import PaymentServicer
from services.payment.store import SCHEMA, PaymentStore


@pytest.fixture
def faults():
    return FaultInjector(rng=random.Random(7))


@pytest.fixture
def payments(serve, database, faults):
    servicer = PaymentServicer(PaymentStore(database(SCHEMA)), faults)
    channel = serve(lambda s: payment_pb2_grpc.add_PaymentServiceServicer_to_server(servicer, s))
    return payment_pb2_grpc.PaymentServiceStub(channel)


def charge(stub, order_id: str = "o1", amount: int = 500) -> pay.Payment:
    return stub.Charge(pay.ChargeRequest(order_id=order_id, user_id="u1", amount_cents=amount)).payment


def test_charging_an_order_twice_charges_once(payments):
    first, again = charge(payments), charge(payments)
    assert again.payment_id == first.payment_id
    assert first.status == pay.PAYMENT_STATUS_CHARGED and first.currency == "EUR"


def test_charging_an_order_again_with_another_amount_is_refused(payments):
    charge(payments, amount=500)
    with pytest.raises(grpc.RpcError) as failure:
        charge(payments, amount=900)
    assert failure.value.code() == grpc.StatusCode.ALREADY_EXISTS


def test_refund_marks_the_payment_refunded_and_is_harmless_to_repeat(payments):
    charge(payments)
    assert payments.Refund(pay.RefundRequest(order_id="o1")).payment.status == pay.PAYMENT_STATUS_REFUNDED
    assert payments.Refund(pay.RefundRequest(order_id="o1")).payment.status == pay.PAYMENT_STATUS_REFUNDED
    saga = [("x-saga-id", "place-never")]
    assert not payments.Refund(pay.RefundRequest(order_id="never"), metadata=saga).HasField("payment")
    with pytest.raises(grpc.RpcError) as failure:  # only a saga undoes what may never have happened
        payments.Refund(pay.RefundRequest(order_id="never"))
    assert failure.value.code() == grpc.StatusCode.NOT_FOUND


def test_failure_rate_one_fails_every_charge_with_unavailable_and_charges_nothing(payments, faults):
    faults.update(Faults(failure_rate=1.0))
    with pytest.raises(grpc.RpcError) as failure:
        charge(payments)
    assert failure.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "injected" in failure.value.details()
    with pytest.raises(grpc.RpcError):
        payments.GetPayment(pay.GetPaymentRequest(order_id="o1"))
    faults.update(Faults())
    assert charge(payments).status == pay.PAYMENT_STATUS_CHARGED


def test_faults_read_from_config_tolerate_missing_and_bad_values():
    assert Faults.from_config({}) == Faults()
    assert Faults.from_config({"faults": {"failure_rate": 2, "latency_ms": 250}}) == Faults(1.0, 0.25)
    assert Faults.from_config({"faults": {"failure_rate": "x"}}) == Faults()


def test_bad_amount_and_currency_are_invalid(payments):
    with pytest.raises(grpc.RpcError) as failure:
        payments.Charge(pay.ChargeRequest(order_id="o9", user_id="u1", amount_cents=0, currency="euro"))
    assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_a_repeated_idempotency_key_replays_the_first_answer_even_after_a_refund(payments):
    key = (("idempotency-key", "saga-1/charge-payment"),)
    request = pay.ChargeRequest(order_id="o7", user_id="u1", amount_cents=500)
    first = payments.Charge(request, metadata=key).payment
    payments.Refund(pay.RefundRequest(order_id="o7"))
    replayed = payments.Charge(request, metadata=key).payment
    assert replayed == first and replayed.status == pay.PAYMENT_STATUS_CHARGED
    assert payments.GetPayment(pay.GetPaymentRequest(order_id="o7")).payment.status == pay.PAYMENT_STATUS_REFUNDED


def test_an_idempotency_key_reused_for_another_request_is_refused(payments):
    key = (("idempotency-key", "saga-2/charge-payment"),)
    payments.Charge(pay.ChargeRequest(order_id="o8", user_id="u1", amount_cents=500), metadata=key)
    with pytest.raises(grpc.RpcError) as failure:
        payments.Charge(pay.ChargeRequest(order_id="o9", user_id="u1", amount_cents=500), metadata=key)
    assert failure.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    with pytest.raises(grpc.RpcError):
        payments.GetPayment(pay.GetPaymentRequest(order_id="o9"))


def test_a_failed_call_is_not_recorded_so_its_key_can_be_tried_again(payments, faults):
    key = (("idempotency-key", "saga-3/charge-payment"),)
    request = pay.ChargeRequest(order_id="o10", user_id="u1", amount_cents=500)
    faults.update(Faults(failure_rate=1.0))
    with pytest.raises(grpc.RpcError):
        payments.Charge(request, metadata=key)
    faults.update(Faults())
    assert payments.Charge(request, metadata=key).payment.status == pay.PAYMENT_STATUS_CHARGED


def test_a_currency_with_a_trailing_newline_is_refused(payments):
    with pytest.raises(grpc.RpcError) as failure:
        payments.Charge(pay.ChargeRequest(order_id="o1", user_id="alice", amount_cents=100, currency="EUR\n"))
    assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_a_charge_for_a_user_the_user_service_does_not_know_is_refused(serve, database):
    def check_user(user_id: str) -> None:
        if user_id != "alice":
            raise PreconditionError(f"unknown user {user_id!r}")

    servicer = PaymentServicer(PaymentStore(database(SCHEMA)), keys=None, check_user=check_user)
    stub = payment_pb2_grpc.PaymentServiceStub(
        serve(lambda s: payment_pb2_grpc.add_PaymentServiceServicer_to_server(servicer, s)))
    assert stub.Charge(pay.ChargeRequest(order_id="o1", user_id="alice", amount_cents=100)).payment.payment_id
    with pytest.raises(grpc.RpcError) as failure:
        stub.Charge(pay.ChargeRequest(order_id="o2", user_id="mallory", amount_cents=100))
    assert failure.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    with pytest.raises(grpc.RpcError):
        stub.GetPayment(pay.GetPaymentRequest(order_id="o2"))
