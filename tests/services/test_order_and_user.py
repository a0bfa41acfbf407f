"""Orders: validation, the user check, the saga start, confirm and cancel rules. Users: create and get."""

from __future__ import annotations

import grpc
import pytest

from controlplane.errors import PreconditionError, field_violations
from controlplane.v1 import saga_pb2, saga_pb2_grpc
from demo.order.v1 import order_pb2 as o
from demo.order.v1 import order_pb2_grpc
from demo.user.v1 import user_pb2 as u
from demo.user.v1 import user_pb2_grpc
from services.order.dependencies import DependencyUnavailable, SagaRefused, SagaStarter, UserCheck, place_order_input
from services.order.outbox import SagaOutbox
from services.order.servicer import OrderServicer
from services.order.store import SCHEMA as ORDER_SCHEMA
from services.order.store import OrderStore
from services.user.servicer import UserServicer
from services.user.store import SCHEMA as USER_SCHEMA
from services.user.store import UserStore


@pytest.fixture
def users(serve, tmp_path):
    from services.common.database import Database

    store = UserStore(Database(tmp_path / "user.sqlite3", USER_SCHEMA))
    channel = serve(lambda s: user_pb2_grpc.add_UserServiceServicer_to_server(UserServicer(store), s))
    return channel


@pytest.fixture
def started() -> list[tuple[str, dict]]:
    return []


class FlakySagas:
    """A StartSaga stand-in: records starts; `failure` (an exception) is raised instead while set."""

    def __init__(self, started: list[tuple[str, dict]]) -> None:
        self.started = started
        self.failure: Exception | None = None

    def __call__(self, saga_id, row):
        if self.failure is not None:
            raise self.failure
        self.started.append((saga_id, place_order_input(row)))


@pytest.fixture
def sagas(started) -> FlakySagas:
    return FlakySagas(started)


@pytest.fixture
def order_store(database) -> OrderStore:
    return OrderStore(database(ORDER_SCHEMA))


@pytest.fixture
def outbox(order_store, sagas) -> SagaOutbox:
    return SagaOutbox(order_store, sagas, grace=0.0)  # swept by the tests, not by its thread


@pytest.fixture
def orders(serve, order_store, users, outbox):
    servicer = OrderServicer(order_store, UserCheck(users), outbox.place)
    return order_pb2_grpc.OrderServiceStub(
        serve(lambda s: order_pb2_grpc.add_OrderServiceServicer_to_server(servicer, s))
    )


@pytest.fixture
def alice(users):
    stub = user_pb2_grpc.UserServiceStub(users)
    return stub.CreateUser(u.CreateUserRequest(user_id="alice", name="Alice", email="alice@example.com")).user


def new_order(stub, user_id: str = "alice", request_id: str = "") -> o.CreateOrderResponse:
    item = o.OrderItem(sku="apple", quantity=2, unit_price_cents=150)
    return stub.CreateOrder(o.CreateOrderRequest(user_id=user_id, items=[item], request_id=request_id))


def test_create_order_records_it_pending_and_starts_the_saga(orders, alice, started):
    created = new_order(orders)
    assert created.order.status == o.ORDER_STATUS_PENDING and created.order.total_cents == 300
    assert started == [
        (
            created.saga_id,
            {
                "order_id": created.order.order_id,
                "user_id": "alice",
                "amount_cents": 300,
                "currency": "EUR",
                "items": [{"sku": "apple", "quantity": 2}],
            },
        )
    ]


def test_same_request_id_returns_the_same_order_and_starts_one_saga(orders, alice, started):
    first, again = new_order(orders, request_id="r1"), new_order(orders, request_id="r1")
    assert first.order.order_id == again.order.order_id
    assert len(started) == 1


def test_order_for_an_unknown_user_is_a_failed_precondition(orders, started):
    with pytest.raises(grpc.RpcError) as failure:
        new_order(orders, user_id="bob")
    assert failure.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert started == []


def test_an_order_whose_saga_start_is_unsure_stays_pending_and_gets_its_saga_later(
        orders, alice, sagas, started, outbox, order_store):
    sagas.failure = DependencyUnavailable("saga service down")
    with pytest.raises(grpc.RpcError) as failure:
        new_order(orders, request_id="r-unsure")
    assert failure.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "r-unsure" in failure.value.details()
    (row,) = order_store.page("", "", 10)
    assert (row["status"], row["saga_started"]) == ("PENDING", 0)  # never cancelled: the saga may be running
    assert outbox.sweep() == 0 and started == []  # still down: the sweep leaves it for the next one

    sagas.failure = None
    assert outbox.sweep() == 1
    assert [saga_id for saga_id, _ in started] == [row["saga_id"]]
    assert order_store.unstarted(created_before=2e9) == []
    assert outbox.sweep() == 0  # started once only


def test_a_retried_request_starts_the_saga_a_lost_answer_left_unstarted(orders, alice, sagas, started):
    sagas.failure = DependencyUnavailable("reply lost")
    with pytest.raises(grpc.RpcError):
        new_order(orders, request_id="r-retry")
    sagas.failure = None

    again = new_order(orders, request_id="r-retry")

    assert [saga_id for saga_id, _ in started] == [again.saga_id]
    assert len({new_order(orders, request_id="r-retry").saga_id for _ in range(2)}) == 1
    assert len(started) == 1


def test_an_order_whose_saga_is_refused_is_cancelled(orders, alice, sagas, order_store):
    sagas.failure = SagaRefused("saga service: NOT_FOUND no definition 'place-order'")
    with pytest.raises(grpc.RpcError) as failure:
        new_order(orders)
    assert failure.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    (row,) = order_store.page("", "", 10)
    assert row["status"] == "CANCELLED" and "could not start" in row["cancel_reason"]


class Sagas(saga_pb2_grpc.SagaServiceServicer):
    """Answers StartSaga with the codes in `answers`, then OK."""

    def __init__(self, *answers: grpc.StatusCode) -> None:
        self.answers = list(answers)
        self.calls = 0

    def StartSaga(self, request, context):
        self.calls += 1
        if self.answers:
            context.abort(self.answers.pop(0), "not now")
        return saga_pb2.StartSagaResponse()


@pytest.mark.parametrize(("answers", "outcome", "calls"), [
    ((grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.INTERNAL), None, 4),
    ((grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.NOT_FOUND), SagaRefused, 2),
    ((grpc.StatusCode.UNAVAILABLE,) * 50, DependencyUnavailable, None),
])
def test_saga_starter_retries_ambiguous_answers_and_stops_at_a_refusal(serve, answers, outcome, calls):
    servicer = Sagas(*answers)
    channel = serve(lambda s: saga_pb2_grpc.add_SagaServiceServicer_to_server(servicer, s))
    now = [0.0]
    starter = SagaStarter(channel, budget=3.0, sleep=lambda seconds: now.__setitem__(0, now[0] + seconds),
                          clock=lambda: now[0])
    row = {"order_id": "o1", "user_id": "alice", "total_cents": 5, "items": '[["apple", 1, 5]]', "saga_id": "s1"}
    if outcome is None:
        starter("s1", row)
    else:
        with pytest.raises(outcome):
            starter("s1", row)
    if calls is not None:
        assert servicer.calls == calls
    assert now[0] <= 3.0  # never past the budget


def test_confirm_then_cancel_rules(orders, alice):
    order_id = new_order(orders).order.order_id
    assert orders.ConfirmOrder(o.ConfirmOrderRequest(order_id=order_id)).order.status == o.ORDER_STATUS_CONFIRMED
    assert orders.ConfirmOrder(o.ConfirmOrderRequest(order_id=order_id)).order.status == o.ORDER_STATUS_CONFIRMED
    with pytest.raises(grpc.RpcError) as refused:  # a confirmed order was paid: only its saga may undo it
        orders.CancelOrder(o.CancelOrderRequest(order_id=order_id, reason="changed my mind"))
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    saga = orders.GetOrder(o.GetOrderRequest(order_id=order_id)).order.saga_id
    cancelled = orders.CancelOrder(o.CancelOrderRequest(order_id=order_id, reason="payment failed"),
                                   metadata=[("x-saga-id", saga)]).order
    assert (cancelled.status, cancelled.cancel_reason) == (o.ORDER_STATUS_CANCELLED, "payment failed")
    with pytest.raises(grpc.RpcError) as failure:
        orders.ConfirmOrder(o.ConfirmOrderRequest(order_id=order_id))
    assert failure.value.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_bad_order_lists_every_problem(orders):
    with pytest.raises(grpc.RpcError) as failure:
        orders.CreateOrder(o.CreateOrderRequest(user_id="", items=[o.OrderItem(sku="", quantity=0)]))
    assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert {v.field for v in field_violations(failure.value)} == {
        "user_id",
        "items[0].sku",
        "items[0].quantity",
        "items[0].unit_price_cents",
    }


def test_user_create_get_and_duplicates(users):
    stub = user_pb2_grpc.UserServiceStub(users)
    made = stub.CreateUser(u.CreateUserRequest(name="Carol", email="carol@example.com")).user
    assert stub.GetUser(u.GetUserRequest(user_id=made.user_id)).user.email == "carol@example.com"
    with pytest.raises(grpc.RpcError) as failure:
        stub.CreateUser(u.CreateUserRequest(user_id=made.user_id, name="C", email="c@example.com"))
    assert failure.value.code() == grpc.StatusCode.ALREADY_EXISTS
    with pytest.raises(grpc.RpcError) as failure:
        stub.CreateUser(u.CreateUserRequest(name="", email="nope"))
    assert {v.field for v in field_violations(failure.value)} == {"name", "email"}


def test_user_check_maps_the_user_service_answers(users, alice):
    check = UserCheck(users)
    check("alice")
    with pytest.raises(PreconditionError):
        check("nobody")


def test_list_users_pages_through_every_user_once(users):
    stub = user_pb2_grpc.UserServiceStub(users)
    for n in range(5):
        stub.CreateUser(u.CreateUserRequest(user_id=f"user-{n}", name="N", email=f"n{n}@example.com"))
    seen, token = [], ""
    while True:
        page = stub.ListUsers(u.ListUsersRequest(page_size=2, page_token=token))
        seen += [user.user_id for user in page.users]
        token = page.next_page_token
        if not token:
            break
    assert seen == [f"user-{n}" for n in range(5)]


def test_a_request_id_reused_with_other_content_is_already_exists(orders, alice):
    first = new_order(orders, request_id="req-1")
    assert new_order(orders, request_id="req-1").order.order_id == first.order.order_id  # a retry: same answer
    other = o.CreateOrderRequest(user_id="alice", request_id="req-1",
                                 items=[o.OrderItem(sku="pear", quantity=1, unit_price_cents=150)])
    with pytest.raises(grpc.RpcError) as failure:
        orders.CreateOrder(other)
    assert failure.value.code() == grpc.StatusCode.ALREADY_EXISTS


def test_an_order_no_payment_could_cover_is_refused(orders, alice, started):
    big = [o.OrderItem(sku=f"sku-{i}", quantity=1000, unit_price_cents=10_000_000) for i in range(2)]
    with pytest.raises(grpc.RpcError) as failure:
        orders.CreateOrder(o.CreateOrderRequest(user_id="alice", items=big))
    assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert started == []


@pytest.mark.parametrize(("fields", "field"), [
    ({"name": "Eve\u202egnp.exe"}, "name"),
    ({"name": "n" * 1_000_000}, "name"),
    ({"user_id": "alice\n"}, "user_id"),
    ({"email": "a@b.c\n"}, "email"),
])
def test_user_fields_a_person_reads_are_bounded_and_free_of_control_characters(users, fields, field):
    request = u.CreateUserRequest(name="Eve", email="eve@example.com")
    for key, value in fields.items():
        setattr(request, key, value)
    with pytest.raises(grpc.RpcError) as failure:
        user_pb2_grpc.UserServiceStub(users).CreateUser(request)
    assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in {v.field for v in field_violations(failure.value)}
    assert len(failure.value.details()) < 1100
