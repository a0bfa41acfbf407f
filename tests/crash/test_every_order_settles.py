"""Steady orders while control-plane replicas, the order, payment and inventory services are SIGKILLed at
random and restarted as `make up` starts them; then an audit from the participants' own databases and the
control plane: no order PENDING, no effect applied twice, stock and money conserved, every order's status
agreeing with its saga's.

CRASH_SECONDS (default 60) bounds the campaign; `make crash` runs a longer one.
"""

from __future__ import annotations

import collections
import json
import os
import random
import signal
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest

from controlplane import endpoints
from controlplane.v1 import saga_pb2, saga_pb2_grpc
from demo.inventory.v1 import inventory_pb2, inventory_pb2_grpc
from demo.order.v1 import order_pb2, order_pb2_grpc
from tests.helpers import wait_until
from tests.stack import Stack, running_stack

CRASH_SECONDS = float(os.environ.get("CRASH_SECONDS", "60"))
# The campaign, then time for every order to settle (`make crash` runs 300 s of kills, beyond the default timeout).
pytestmark = pytest.mark.timeout(CRASH_SECONDS + 240)
VICTIMS = ("controlplane", "controlplane-2", "order", "payment", "inventory")
SKUS = ("apple", "pear")
TOP_UP = 100_000  # units added to each sku first, so orders fail for what dies, not for want of stock
CLIENTS = 3
FAST_RECONNECT = [("grpc.initial_reconnect_backoff_ms", 100), ("grpc.min_reconnect_backoff_ms", 100),
                  ("grpc.max_reconnect_backoff_ms", 500)]


@dataclass
class Campaign:
    acknowledged: dict[str, str] = field(default_factory=dict)  # order id -> request id
    attempts: int = 0
    failed_attempts: int = 0
    kills: collections.Counter[str] = field(default_factory=collections.Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(tmp_path_factory.mktemp("crash"), replicas=2,
                       extra_env={"ORDER_OUTBOX_INTERVAL": "0.5", "OTEL_TRACES_EXPORTER": "none"}) as running:
        yield running


def place_orders(stack: Stack, campaign: Campaign, stop: threading.Event, seed: int) -> None:
    """Orders one after another; each retried with its request id until CreateOrder acknowledges it."""
    rng = random.Random(seed)
    with grpc.insecure_channel(stack.address("order"), options=FAST_RECONNECT) as channel:
        orders = order_pb2_grpc.OrderServiceStub(channel)
        while not stop.is_set():
            request_id = f"crash-{uuid.uuid4().hex[:12]}"
            items = [order_pb2.OrderItem(sku=rng.choice(SKUS), quantity=rng.randint(1, 2),
                                         unit_price_cents=rng.randint(100, 900))]
            request = order_pb2.CreateOrderRequest(user_id="alice", items=items, request_id=request_id)
            give_up = time.monotonic() + 60
            while time.monotonic() < give_up:
                with campaign.lock:
                    campaign.attempts += 1
                try:
                    order = orders.CreateOrder(request, timeout=10).order
                except grpc.RpcError as exc:
                    assert exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED), exc
                    with campaign.lock:
                        campaign.failed_attempts += 1
                    time.sleep(0.1)  # the order service is restarting
                    continue
                with campaign.lock:
                    campaign.acknowledged[order.order_id] = request_id
                break


def kill_at_random(stack: Stack, campaign: Campaign, until: float, rng: random.Random) -> None:
    """SIGKILL one victim at a time, then start it again as `make up` does (`devstack revive`); every
    victim in turn, in a new random order each round."""
    turns: list[str] = []
    while time.monotonic() < until:
        time.sleep(rng.uniform(0.5, 2.0))
        if not turns:
            turns = rng.sample(VICTIMS, len(VICTIMS))
        victim = turns.pop()
        pid = int((stack.dir / "pids" / f"{victim}.pid").read_text())
        os.kill(pid, signal.SIGKILL)
        campaign.kills[victim] += 1
        revived = stack.devstack("revive")
        assert revived.returncode == 0, revived.stdout + revived.stderr


def rows(db: Path, sql: str) -> list[sqlite3.Row]:
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
        conn.row_factory = sqlite3.Row
        return conn.execute(sql).fetchall()


def test_every_acknowledged_order_settles_whatever_dies(stack: Stack) -> None:
    campaign, stop = Campaign(), threading.Event()
    rng = random.Random(int(os.environ.get("CRASH_SEED", "0")) or None)
    data = stack.dir / "data"
    with grpc.insecure_channel(stack.address("inventory")) as channel:
        for sku in SKUS:
            inventory_pb2_grpc.InventoryServiceStub(channel).AddStock(
                inventory_pb2.AddStockRequest(sku=sku, quantity=TOP_UP), timeout=10)
    initial = {r["sku"]: r["available"] + r["reserved"]
               for r in rows(data / "inventory.sqlite3", "SELECT * FROM stock")}
    clients = [threading.Thread(target=place_orders, args=(stack, campaign, stop, rng.random()), daemon=True)
               for _ in range(CLIENTS)]
    for client in clients:
        client.start()
    try:
        kill_at_random(stack, campaign, time.monotonic() + CRASH_SECONDS, rng)
    finally:
        stop.set()
        for client in clients:
            client.join(90)

    def pending() -> list[sqlite3.Row]:
        return rows(data / "order.sqlite3", "SELECT * FROM orders WHERE status = 'PENDING'")

    wait_until(lambda: not pending(), 90, interval=0.5, what="every order to settle")
    orders = {r["order_id"]: r for r in rows(data / "order.sqlite3", "SELECT * FROM orders")}
    reservations = {r["order_id"]: r for r in rows(data / "inventory.sqlite3", "SELECT * FROM reservations")}
    stock = {r["sku"]: r for r in rows(data / "inventory.sqlite3", "SELECT * FROM stock")}
    payments = {r["order_id"]: r for r in rows(data / "payment.sqlite3", "SELECT * FROM payments")}
    with endpoints.channel(stack.control_planes) as channel:
        sagas_stub = saga_pb2_grpc.SagaServiceStub(channel)

        def saga_of(order: sqlite3.Row) -> saga_pb2.Saga | None:
            try:
                return sagas_stub.GetSaga(saga_pb2.GetSagaRequest(saga_id=order["saga_id"]), timeout=10).saga
            except grpc.RpcError as exc:
                assert exc.code() == grpc.StatusCode.NOT_FOUND, exc
                return None

        sagas = {order_id: saga_of(order) for order_id, order in orders.items()}

    problems: list[str] = []
    assert set(campaign.acknowledged) <= set(orders)  # no acknowledged order lost
    for order_id, order in orders.items():
        saga = sagas[order_id]
        saga_status = saga_pb2.SagaStatus.Name(saga.status) if saga is not None else "none"
        expected = {"CONFIRMED": "SAGA_STATUS_COMPLETED", "CANCELLED": "SAGA_STATUS_COMPENSATED"}[order["status"]]
        if saga_status != expected and not (saga is None and "could not start" in order["cancel_reason"]):
            problems.append(f"{order_id} is {order['status']} but its saga is {saga_status}")
        held = reservations.get(order_id)
        payment = payments.get(order_id)
        if order["status"] == "CONFIRMED":
            if held is None or held["status"] != "RESERVED":
                problems.append(f"{order_id} is confirmed without its stock reserved")
            if payment is None or payment["status"] != "CHARGED" or payment["amount_cents"] != order["total_cents"]:
                problems.append(f"{order_id} is confirmed without being charged its total")
        else:
            if held is not None and held["status"] == "RESERVED":
                problems.append(f"{order_id} is cancelled but still holds stock")
            if payment is not None and payment["status"] == "CHARGED":
                problems.append(f"{order_id} is cancelled but was not refunded")
    for order_id in set(reservations) | set(payments):
        if order_id not in orders:
            problems.append(f"{order_id}: stock or money moved for an order that does not exist")
    reserved = collections.Counter()
    for held in reservations.values():
        if held["status"] == "RESERVED":
            for sku, quantity in json.loads(held["items"]):
                reserved[sku] += quantity
    for sku, units in initial.items():  # each reservation taken once, each release given back once
        if (stock[sku]["reserved"], stock[sku]["available"]) != (reserved[sku], units - reserved[sku]):
            problems.append(f"{sku}: {dict(stock[sku])}, but reservations hold {reserved[sku]} of {units}")
    statuses = collections.Counter(order["status"] for order in orders.values())
    print(f"crash campaign: {sum(campaign.kills.values())} kills {dict(campaign.kills)}; {len(orders)} orders "
          f"({len(campaign.acknowledged)} acknowledged) {dict(statuses)}; {sum(s is not None for s in sagas.values())}"
          f" sagas; CreateOrder attempts {campaign.attempts}, failed {campaign.failed_attempts}; "
          f"{len(problems)} problems")
    assert problems == []
    assert set(campaign.kills) == set(VICTIMS) or CRASH_SECONDS < 30
    assert statuses["CONFIRMED"] > 0
