"""The participant helper: a repeated idempotency key gets the recorded response, the effect happens once."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest

from controlplane.saga.idempotency import IdempotencyStore, MemoryIdempotencyStore, SqliteIdempotencyStore, idempotent
from demo.payment.v1 import payment_pb2, payment_pb2_grpc


class Payments(payment_pb2_grpc.PaymentServiceServicer):
    """Charges by counting; the idempotency store is chosen per test, so the handler is wrapped per instance."""

    def __init__(self, store: IdempotencyStore, pause: float = 0.0,
                 inside: Callable[[], None] = lambda: None) -> None:
        self.charged = 0
        self.pause = pause
        self.inside = inside
        self._count = threading.Lock()
        self.Charge = idempotent(store)(self._charge).__get__(self)  # type: ignore[method-assign]

    @staticmethod
    def _charge(self: Payments, request: Any, context: grpc.ServicerContext) -> Any:
        time.sleep(self.pause)
        self.inside()
        if request.amount_cents <= 0:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "amount must be positive")
        with self._count:
            self.charged += 1
            number = self.charged
        return payment_pb2.ChargeResponse(payment=payment_pb2.Payment(
            payment_id=f"pay-{number}", amount_cents=request.amount_cents))


@pytest.fixture(params=["sqlite", "sqlite-transactional", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[IdempotencyStore]:
    if request.param == "memory":
        yield MemoryIdempotencyStore()
        return
    sqlite = SqliteIdempotencyStore(tmp_path / "records.db", transactional=request.param.endswith("transactional"))
    yield sqlite
    sqlite.close()


def serve(servicer: Payments) -> tuple[grpc.Server, payment_pb2_grpc.PaymentServiceStub, grpc.Channel]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    payment_pb2_grpc.add_PaymentServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    return server, payment_pb2_grpc.PaymentServiceStub(channel), channel


def charge(stub: payment_pb2_grpc.PaymentServiceStub, key: str, amount: int = 100) -> payment_pb2.ChargeResponse:
    metadata = (("idempotency-key", key),) if key else ()
    return stub.Charge(payment_pb2.ChargeRequest(order_id="o1", amount_cents=amount), metadata=metadata, timeout=5)


def test_a_repeated_key_returns_the_recorded_response_without_charging_again(store: IdempotencyStore) -> None:
    payments = Payments(store)
    server, stub, channel = serve(payments)
    try:
        first, again, other = charge(stub, "saga-1/1:charge"), charge(stub, "saga-1/1:charge"), charge(stub, "k2")
    finally:
        channel.close()
        server.stop(0)

    assert first == again
    assert other.payment.payment_id == "pay-2"
    assert payments.charged == 2


def test_concurrent_repeats_of_one_key_apply_the_effect_once(store: IdempotencyStore) -> None:
    payments = Payments(store, pause=0.05)
    server, stub, channel = serve(payments)
    try:
        with futures.ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(lambda _: charge(stub, "same-key"), range(4)))
    finally:
        channel.close()
        server.stop(0)

    assert payments.charged == 1
    assert len({a.payment.payment_id for a in answers}) == 1


@pytest.mark.parametrize("kind", ["sqlite", "memory"])  # a transactional store runs them one at a time
def test_calls_with_different_keys_run_at_the_same_time(kind: str, tmp_path: Path) -> None:
    store = SqliteIdempotencyStore(tmp_path / "records.db") if kind == "sqlite" else MemoryIdempotencyStore()
    together = threading.Barrier(4, timeout=10)  # breaks unless all four handlers are inside at once
    payments = Payments(store, inside=together.wait)
    server, stub, channel = serve(payments)
    try:
        with futures.ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(lambda n: charge(stub, f"key-{n}"), range(4)))
    finally:
        channel.close()
        server.stop(0)

    assert payments.charged == 4
    assert len({a.payment.payment_id for a in answers}) == 4


def test_failures_are_not_recorded_and_a_key_reused_for_another_request_is_refused(store: IdempotencyStore) -> None:
    payments = Payments(store)
    server, stub, channel = serve(payments)
    try:
        with pytest.raises(grpc.RpcError) as invalid:
            charge(stub, "k1", amount=0)
        charge(stub, "k1", amount=100)
        with pytest.raises(grpc.RpcError) as reused:
            charge(stub, "k1", amount=200)
        without_key = [charge(stub, "") for _ in range(2)]
    finally:
        channel.close()
        server.stop(0)

    assert invalid.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert reused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert len({a.payment.payment_id for a in without_key}) == 2


def test_a_refused_reuse_echoes_a_long_key_cut_to_size() -> None:
    server, stub, channel = serve(Payments(MemoryIdempotencyStore()))
    key = "k" * 6000  # within gRPC's metadata limit, but not something to echo whole in a status
    try:
        charge(stub, key, amount=100)
        with pytest.raises(grpc.RpcError) as reused:
            charge(stub, key, amount=200)
    finally:
        channel.close()
        server.stop(0)
    assert reused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "6000 characters" in reused.value.details() and len(reused.value.details()) < 300


def test_sqlite_records_survive_a_participant_restart(tmp_path: Path) -> None:
    path = tmp_path / "records.db"
    answers = []
    for _ in range(2):  # the same database file, a new process-like server each time
        store = SqliteIdempotencyStore(path)
        payments = Payments(store)
        server, stub, channel = serve(payments)
        try:
            answers.append((charge(stub, "saga-9/1:charge"), payments.charged))
        finally:
            channel.close()
            server.stop(0)
            store.close()

    assert answers[0][0] == answers[1][0]
    assert [charged for _, charged in answers] == [1, 0]


def test_records_follow_the_grpc_method_name_not_the_servicer_class(tmp_path: Path) -> None:
    store = SqliteIdempotencyStore(tmp_path / "records.db")
    charged: list[str] = []

    def servicer_named(class_name: str) -> payment_pb2_grpc.PaymentServiceServicer:
        def Charge(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
            charged.append(class_name)
            return payment_pb2.ChargeResponse(payment=payment_pb2.Payment(payment_id=f"pay-{len(charged)}"))

        Charge.__qualname__ = f"{class_name}.Charge"
        return type(class_name, (payment_pb2_grpc.PaymentServiceServicer,), {"Charge": idempotent(store)(Charge)})()

    answers = []
    for class_name in ("PaymentServicer", "Payments"):  # the same service after a refactor renamed its class
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        payment_pb2_grpc.add_PaymentServiceServicer_to_server(servicer_named(class_name), server)
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        try:
            with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
                answers.append(charge(payment_pb2_grpc.PaymentServiceStub(channel), "saga-7/1:charge"))
        finally:
            server.stop(0)
    store.close()

    assert answers[0] == answers[1]
    assert charged == ["PaymentServicer"]  # the renamed class replayed the record
