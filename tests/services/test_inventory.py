"""Inventory: reservations take all items or none, and are idempotent per order."""

from __future__ import annotations

import grpc
import pytest

from controlplane.errors import field_violations
from demo.inventory.v1 import inventory_pb2 as inv
from demo.inventory.v1 import inventory_pb2_grpc
from services.inventory.servicer import InventoryServicer
from services.inventory.store import SCHEMA, InventoryStore


@pytest.fixture
def inventory(serve, database):
    store = InventoryStore(database(SCHEMA))
    channel = serve(lambda s: inventory_pb2_grpc.add_InventoryServiceServicer_to_server(InventoryServicer(store), s))
    stub = inventory_pb2_grpc.InventoryServiceStub(channel)
    stub.AddStock(inv.AddStockRequest(sku="apple", quantity=10))
    stub.AddStock(inv.AddStockRequest(sku="pear", quantity=2))
    return stub


def stock(stub, sku: str) -> tuple[int, int]:
    s = stub.GetStock(inv.GetStockRequest(sku=sku)).stock
    return s.available, s.reserved


def items(**quantities: int) -> list[inv.StockItem]:
    return [inv.StockItem(sku=sku, quantity=q) for sku, q in quantities.items()]


def test_reserve_moves_stock_from_available_to_reserved(inventory):
    inventory.Reserve(inv.ReserveRequest(order_id="o1", items=items(apple=3, pear=1)))
    assert stock(inventory, "apple") == (7, 3)
    assert stock(inventory, "pear") == (1, 1)


def test_reserve_takes_nothing_when_one_item_is_short(inventory):
    with pytest.raises(grpc.RpcError) as failure:
        inventory.Reserve(inv.ReserveRequest(order_id="o2", items=items(apple=3, pear=5)))
    assert failure.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert stock(inventory, "apple") == (10, 0)


def test_reserving_twice_for_one_order_reserves_once(inventory):
    first = inventory.Reserve(inv.ReserveRequest(order_id="o3", items=items(apple=4))).reservation
    again = inventory.Reserve(inv.ReserveRequest(order_id="o3", items=items(apple=4))).reservation
    assert again.reservation_id == first.reservation_id
    assert stock(inventory, "apple") == (6, 4)


def test_release_gives_stock_back_once(inventory):
    inventory.Reserve(inv.ReserveRequest(order_id="o4", items=items(apple=5)))
    released = inventory.Release(inv.ReleaseRequest(order_id="o4")).reservation
    assert released.status == inv.RESERVATION_STATUS_RELEASED
    inventory.Release(inv.ReleaseRequest(order_id="o4"))
    assert stock(inventory, "apple") == (10, 0)


def test_release_of_an_order_without_reservation_succeeds_and_changes_nothing(inventory):
    saga = [("x-saga-id", "place-never")]
    assert not inventory.Release(inv.ReleaseRequest(order_id="never"), metadata=saga).HasField("reservation")
    with pytest.raises(grpc.RpcError) as failure:  # only a saga undoes what may never have happened
        inventory.Release(inv.ReleaseRequest(order_id="never"))
    assert failure.value.code() == grpc.StatusCode.NOT_FOUND
    assert stock(inventory, "apple") == (10, 0)


def test_bad_reserve_request_lists_every_problem(inventory):
    with pytest.raises(grpc.RpcError) as failure:
        inventory.Reserve(inv.ReserveRequest(order_id="", items=[inv.StockItem(sku="apple", quantity=0)]))
    assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert {v.field for v in field_violations(failure.value)} == {"order_id", "items[0].quantity"}
    assert stock(inventory, "apple") == (10, 0)


def test_unknown_sku_is_not_found(inventory):
    with pytest.raises(grpc.RpcError) as failure:
        inventory.GetStock(inv.GetStockRequest(sku="kiwi"))
    assert failure.value.code() == grpc.StatusCode.NOT_FOUND


def test_stock_cannot_grow_past_what_the_api_can_count(inventory):
    for _ in range(1000):  # 1,000 x 1,000,000 = MAX_STOCK
        inventory.AddStock(inv.AddStockRequest(sku="plum", quantity=1_000_000))
    with pytest.raises(grpc.RpcError) as failure:
        inventory.AddStock(inv.AddStockRequest(sku="plum", quantity=1))
    assert failure.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert stock(inventory, "plum") == (1_000_000_000, 0)


def test_a_reservation_of_too_many_items_is_refused_whole(inventory):
    with pytest.raises(grpc.RpcError) as failure:
        inventory.Reserve(inv.ReserveRequest(order_id="o9", items=[inv.StockItem(sku="apple", quantity=1)] * 101))
    assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert stock(inventory, "apple") == (10, 0)


def test_a_sku_with_a_trailing_newline_is_not_a_new_sku(inventory):
    with pytest.raises(grpc.RpcError) as failure:
        inventory.AddStock(inv.AddStockRequest(sku="apple\n", quantity=1))
    assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT
