"""The demo end to end, as `make up` starts it: orders through the place-order saga, faults from config,
one trace across every service, and `make down` leaving nothing behind."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import grpc
import pytest

from controlplane.consul.local_agent import free_port
from demo.inventory.v1 import inventory_pb2, inventory_pb2_grpc
from demo.order.v1 import order_pb2, order_pb2_grpc
from demo.payment.v1 import payment_pb2, payment_pb2_grpc
from tests.helpers import wait_until
from tests.stack import Stack

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


def test_make_down_stops_every_process_it_started(stack):
    pids = stack.pids()
    assert len(pids) == 6  # consul, control plane, four services
    # the session fixture runs `down` at the end; here, a second stack proves it on its own
    folder = stack.dir.parent / f"second-{uuid.uuid4().hex[:6]}"
    env = {**stack.env, "DEVSTACK_DIR": str(folder)}
    env["DEVSTACK_CONTROL_PLANE_PORT"] = str(free_port())
    env["DEVSTACK_CONSUL_PORT"] = str(free_port())
    env["DEVSTACK_DEMO_PORTS"] = ",".join(str(free_port()) for _ in range(4))
    second = Stack(folder, env, f"127.0.0.1:{env['DEVSTACK_CONTROL_PLANE_PORT']}", {},
                   f"127.0.0.1:{env['DEVSTACK_CONSUL_PORT']}")
    assert second.devstack("up").returncode == 0
    started = second.pids()
    assert len(started) == 6
    assert second.devstack("down").returncode == 0
    assert [pid for pid in started if running(pid)] == []


def running(pid: int) -> bool:
    """True while `pid` is a live process (a zombie waiting to be reaped has ended)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"
