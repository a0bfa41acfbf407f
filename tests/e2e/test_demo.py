"""The demo end to end, as `make up` starts it: orders through the place-order saga, faults from config,
one trace across every service, and `make down` leaving nothing behind."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import grpc
import pytest

from controlplane import endpoints
from controlplane.v1 import config_pb2, config_pb2_grpc, saga_pb2, saga_pb2_grpc
from demo.inventory.v1 import inventory_pb2, inventory_pb2_grpc
from demo.order.v1 import order_pb2, order_pb2_grpc
from demo.payment.v1 import payment_pb2, payment_pb2_grpc
from tests.helpers import running, wait_until
from tests.stack import Stack, running_stack

GRPCURL = str(Path(sys.executable).parent / "grpcurl")
FINAL = (order_pb2.ORDER_STATUS_CONFIRMED, order_pb2.ORDER_STATUS_CANCELLED)


def grpcurl(stack: Stack, service: str, method: str, body: dict, *flags: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [GRPCURL, "-plaintext", *flags, "-d", json.dumps(body), stack.address(service), method],
        capture_output=True,
        text=True,
        timeout=30,
    )


@pytest.fixture
def orders(stack):
    with grpc.insecure_channel(stack.address("order")) as channel:
        yield order_pb2_grpc.OrderServiceStub(channel)


@pytest.fixture
def inventory(stack):
    with grpc.insecure_channel(stack.address("inventory")) as channel:
        yield inventory_pb2_grpc.InventoryServiceStub(channel)


@pytest.fixture
def payments(stack):
    with grpc.insecure_channel(stack.address("payment")) as channel:
        yield payment_pb2_grpc.PaymentServiceStub(channel)


@pytest.fixture
def payment_failures(stack):
    """Turn every payment into a failure through config, and back off at the end."""
    done = stack.cli("config", "set", "payment", "--env", "dev", "faults.failure_rate=1")
    assert done.returncode == 0, done.stderr
    yield
    assert stack.cli("config", "set", "payment", "--env", "dev", "faults.failure_rate=0").returncode == 0


def settled(orders, order_id: str, timeout: float = 60) -> order_pb2.Order:
    def final() -> order_pb2.Order | None:
        order = orders.GetOrder(order_pb2.GetOrderRequest(order_id=order_id), timeout=5).order
        return order if order.status in FINAL else None

    return wait_until(final, timeout=timeout, interval=0.05, what=f"order {order_id} to settle")


def place(orders, sku: str, quantity: int = 1) -> order_pb2.CreateOrderResponse:
    item = order_pb2.OrderItem(sku=sku, quantity=quantity, unit_price_cents=250)
    return orders.CreateOrder(order_pb2.CreateOrderRequest(user_id="alice", items=[item]), timeout=10)


def available(inventory, sku: str) -> int:
    return inventory.GetStock(inventory_pb2.GetStockRequest(sku=sku), timeout=5).stock.available


def test_every_server_lists_its_services_through_reflection(stack):
    for service, expected in [
        ("order", "demo.order.v1.OrderService"),
        ("payment", "demo.payment.v1.PaymentService"),
        ("inventory", "demo.inventory.v1.InventoryService"),
        ("user", "demo.user.v1.UserService"),
    ]:
        done = subprocess.run(
            [GRPCURL, "-plaintext", stack.address(service), "list"], capture_output=True, text=True, timeout=30
        )
        assert done.returncode == 0, done.stderr
        assert {expected, "grpc.health.v1.Health"} <= set(done.stdout.split())


def test_order_placed_with_grpcurl_is_confirmed_charged_and_reserved(stack, orders, inventory, payments):
    before = available(inventory, "apple")
    body = {"user_id": "alice", "items": [{"sku": "apple", "quantity": 2, "unit_price_cents": 150}]}
    done = grpcurl(stack, "order", "demo.order.v1.OrderService/CreateOrder", body)
    assert done.returncode == 0, done.stderr
    order_id = json.loads(done.stdout)["order"]["order_id"]
    assert settled(orders, order_id).status == order_pb2.ORDER_STATUS_CONFIRMED
    assert available(inventory, "apple") == before - 2
    payment = payments.GetPayment(payment_pb2.GetPaymentRequest(order_id=order_id), timeout=5).payment
    assert (payment.status, payment.amount_cents) == (payment_pb2.PAYMENT_STATUS_CHARGED, 300)


def test_orders_placed_with_the_stubs_are_confirmed(stack, orders, inventory):
    before = available(inventory, "pear")
    placed = [place(orders, "pear") for _ in range(5)]
    assert all(settled(orders, p.order.order_id).status == order_pb2.ORDER_STATUS_CONFIRMED for p in placed)
    assert available(inventory, "pear") == before - 5
    saga = stack.cli("saga", "show", placed[0].saga_id)
    assert saga.returncode == 0 and "completed" in saga.stdout


def test_payment_failures_turned_on_through_config_cancel_orders_and_restore_stock(
    stack, orders, inventory, payments, payment_failures
):
    before = available(inventory, "plum")
    placed = [place(orders, "plum", 2) for _ in range(4)]
    for p in placed:
        order = settled(orders, p.order.order_id)
        assert order.status == order_pb2.ORDER_STATUS_CANCELLED, order
        with pytest.raises(grpc.RpcError) as missing:
            payments.GetPayment(payment_pb2.GetPaymentRequest(order_id=p.order.order_id), timeout=5)
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND  # never charged, so nothing to refund
        shown = stack.cli("saga", "show", p.saga_id)
        assert "compensated" in shown.stdout.splitlines()[0], shown.stdout
    assert available(inventory, "plum") == before


def test_one_orders_trace_covers_order_user_saga_inventory_and_payment(stack, orders):
    done = grpcurl(
        stack,
        "order",
        "demo.order.v1.OrderService/CreateOrder",
        {"user_id": "alice", "items": [{"sku": "apple", "quantity": 1, "unit_price_cents": 100}]},
        "-v",
    )
    assert done.returncode == 0, done.stderr
    trace_id = next(line.split()[-1] for line in done.stdout.splitlines() if line.startswith("x-trace-id"))
    order_id = json.loads(done.stdout[done.stdout.index("{") : done.stdout.rindex("}") + 1])["order"]["order_id"]
    assert settled(orders, order_id).status == order_pb2.ORDER_STATUS_CONFIRMED
    wanted = {"order", "user", "controlplane", "inventory", "payment"}

    def covered() -> str | None:
        shown = stack.cli("trace", trace_id, "--dir", stack.env["CONTROLPLANE_TRACE_DIR"])
        if shown.returncode != 0:
            return None
        header = shown.stdout.splitlines()[0]  # "trace ID: N spans across a, b, c, 12.3 ms"
        services = set(header.split(" across ", 1)[1].rsplit(", ", 1)[0].split(", "))
        return shown.stdout if wanted <= services else None

    tree = wait_until(covered, timeout=20, interval=0.2, what=f"trace {trace_id} to reach every service")
    assert "/demo.payment.v1.PaymentService/Charge" in tree and "/controlplane.v1.SagaService/StartSaga" in tree


def test_make_down_stops_every_process_and_make_up_brings_back_sagas_config_and_definitions(tmp_path):
    with running_stack(tmp_path / "durable", replicas=2) as second:
        assert len(second.pids()) == 8  # consul, two replicas, four services, Prometheus
        with grpc.insecure_channel(second.address("order")) as channel:
            item = order_pb2.OrderItem(sku="apple", quantity=1, unit_price_cents=100)
            created = order_pb2_grpc.OrderServiceStub(channel).CreateOrder(
                order_pb2.CreateOrderRequest(user_id="alice", items=[item]), timeout=20)
        wait_until(lambda: second.cli("saga", "show", created.saga_id).stdout.count("completed") > 0, 30,
                   what="the saga to complete")
        slow = second.cli("config", "set", "payment", "--env", "dev", "faults.latency_ms=1500")
        assert slow.returncode == 0, slow.stderr
        history = config_versions(second)
        assert history
        with grpc.insecure_channel(second.address("order")) as channel:  # its saga is in flight at `down`
            in_flight = order_pb2_grpc.OrderServiceStub(channel).CreateOrder(
                order_pb2.CreateOrderRequest(user_id="alice", items=[item]), timeout=20)
        started = second.pids()
        assert second.devstack("down").returncode == 0
        assert [pid for pid in started if running(pid)] == []

        again = second.devstack("up")
        assert again.returncode == 0, again.stdout + again.stderr
        shown = second.cli("saga", "show", created.saga_id)
        assert shown.returncode == 0 and "completed" in shown.stdout, shown.stdout + shown.stderr
        with grpc.insecure_channel(second.address("order")) as channel:
            settled = wait_until(lambda: final(order_pb2_grpc.OrderServiceStub(channel), in_flight.order.order_id),
                                 60, interval=0.2, what="the order in flight at `down` to settle")
        assert settled.status in FINAL
        assert config_versions(second) == history
        with endpoints.channel(second.control_planes) as channel:
            listed = saga_pb2_grpc.SagaServiceStub(channel).ListDefinitions(saga_pb2.ListDefinitionsRequest(),
                                                                            timeout=10)
        assert [d.name for d in listed.definitions] == ["place-order"]


def final(orders: order_pb2_grpc.OrderServiceStub, order_id: str) -> order_pb2.Order | None:
    order = orders.GetOrder(order_pb2.GetOrderRequest(order_id=order_id), timeout=5).order
    return order if order.status in FINAL else None


def config_versions(stack: Stack) -> list[int]:
    with endpoints.channel(stack.control_planes) as channel:
        listed = config_pb2_grpc.ConfigServiceStub(channel).ListVersions(
            config_pb2.ListVersionsRequest(service="payment"), timeout=10)
    return [v.version for v in listed.versions]

