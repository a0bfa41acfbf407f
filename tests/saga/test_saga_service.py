"""SagaService end to end: a real control plane, real Consul, real participant servers."""

from __future__ import annotations

import socket
import uuid

import grpc
import pytest

from controlplane.errors import field_violations
from controlplane.v1 import saga_pb2, saga_pb2_grpc
from tests.helpers import ControlPlaneProcess, all_pages
from tests.saga.participants import Participants
from tests.saga.sagas import order_definition, order_input, start, statuses, wait_ended


def test_saga_runs_every_step_in_order_and_completes(
    sagas: saga_pb2_grpc.SagaServiceStub, order_saga: str, participants: Participants,
    control_plane: ControlPlaneProcess,
) -> None:
    order = f"ok-{uuid.uuid4().hex[:8]}"
    started = start(sagas, order_saga, order_input(order))
    assert started.created

    saga = wait_ended(sagas, started.saga.saga_id)

    assert saga.status == saga_pb2.SAGA_STATUS_COMPLETED
    assert statuses(saga) == ["SUCCEEDED", "SUCCEEDED", "SUCCEEDED"]
    assert saga.data["reservation_id"].startswith("res-")
    assert saga.data["payment_id"].startswith("pay-")
    assert [a.code for step in saga.steps for a in step.attempts] == ["OK", "OK", "OK"]
    # Every attempt names the replica that made it (its default id: host name and port).
    assert {a.replica for step in saga.steps for a in step.attempts} == {
        f"{socket.gethostname()}:{control_plane.port}"}
    assert len(saga.trace_id) == 32
    applied = participants.applied()
    assert [applied[(op, order)] for op in ("reserve", "charge", "confirm", "release", "refund", "cancel")] == [
        1, 1, 1, 0, 0, 0]


def test_client_error_compensates_completed_steps_and_skips_the_failed_one(
    sagas: saga_pb2_grpc.SagaServiceStub, order_saga: str, participants: Participants
) -> None:
    order = f"declined-{uuid.uuid4().hex[:8]}"
    saga = wait_ended(sagas, start(sagas, order_saga, order_input(order, amount_cents=500_000)).saga.saga_id)

    assert saga.status == saga_pb2.SAGA_STATUS_COMPENSATED
    assert statuses(saga) == ["COMPENSATED", "FAILED", "PENDING"]
    charge = saga.steps[1]
    assert [(a.code, a.error) for a in charge.attempts] == [("FAILED_PRECONDITION", "card declined")]
    applied = participants.applied()
    assert (applied[("reserve", order)], applied[("release", order)]) == (1, 1)
    assert (applied[("charge", order)], applied[("refund", order)]) == (0, 0)


def test_an_answer_too_large_to_record_fails_its_step_and_compensates_it(
    sagas: saga_pb2_grpc.SagaServiceStub, order_saga: str, participants: Participants
) -> None:
    # Reserve answers 600 KB: recorded as it was, every append of the saga was over Consul's 512 KiB and
    # the saga retried it forever. Reserve took effect, so it is compensated.
    order = f"huge-{uuid.uuid4().hex[:8]}"
    saga = wait_ended(sagas, start(sagas, order_saga, order_input(order)).saga.saga_id, timeout=30)

    assert saga.status == saga_pb2.SAGA_STATUS_COMPENSATED
    assert statuses(saga) == ["COMPENSATED", "PENDING", "PENDING"]
    assert [a.code for a in saga.steps[0].attempts if not a.compensation] == ["RESOURCE_EXHAUSTED"]
    assert "cannot be recorded" in saga.steps[0].attempts[0].error
    applied = participants.applied()
    assert (applied[("reserve", order)], applied[("release", order)]) == (1, 1)
    assert applied[("charge", order)] == 0


def test_compensations_run_in_reverse_order_of_the_steps(
    sagas: saga_pb2_grpc.SagaServiceStub, order_saga: str, participants: Participants
) -> None:
    order = f"reject-{uuid.uuid4().hex[:8]}"
    saga = wait_ended(sagas, start(sagas, order_saga, order_input(order)).saga.saga_id)

    assert saga.status == saga_pb2.SAGA_STATUS_COMPENSATED
    assert statuses(saga) == ["COMPENSATED", "COMPENSATED", "FAILED"]
    undo_started = {step.name: next(a.started_at.ToNanoseconds() for a in step.attempts if a.compensation)
                    for step in saga.steps[:2]}
    assert undo_started["charge"] < undo_started["reserve"]
    applied = participants.applied()
    assert [applied[(op, order)] for op in ("reserve", "charge", "confirm", "release", "refund", "cancel")] == [
        1, 1, 0, 1, 1, 0]


def test_unavailable_participant_is_retried_with_the_same_idempotency_key(
    sagas: saga_pb2_grpc.SagaServiceStub, order_saga: str, participants: Participants
) -> None:
    order = f"flaky-{uuid.uuid4().hex[:8]}"
    saga = wait_ended(sagas, start(sagas, order_saga, order_input(order)).saga.saga_id)

    assert saga.status == saga_pb2.SAGA_STATUS_COMPLETED
    assert [a.code for a in saga.steps[1].attempts] == ["UNAVAILABLE", "UNAVAILABLE", "OK"]
    assert participants.calls()[("charge", order)] == 3
    assert participants.applied()[("charge", order)] == 1


def test_failing_compensation_is_retried_then_needs_attention_keeping_every_error(
    sagas: saga_pb2_grpc.SagaServiceStub, order_saga: str, participants: Participants
) -> None:
    order = f"stuck-{uuid.uuid4().hex[:8]}"
    saga = wait_ended(sagas, start(sagas, order_saga, order_input(order, amount_cents=500_000)).saga.saga_id)

    assert saga.status == saga_pb2.SAGA_STATUS_NEEDS_ATTENTION
    assert statuses(saga) == ["COMPENSATION_FAILED", "FAILED", "PENDING"]
    undo = [a for a in saga.steps[0].attempts if a.compensation]
    assert [a.code for a in undo] == ["UNAVAILABLE"] * 3
    assert len(saga.errors) == 5  # the declined charge, three failed releases, the verdict
    assert "card declined" in saga.errors[0]
    assert all("inventory database is down" in e for e in saga.errors[1:4])
    assert "reserve" in saga.errors[4]
    assert participants.calls()[("release", order)] == 3


def test_starting_the_same_saga_again_returns_it_without_running_it_twice(
    sagas: saga_pb2_grpc.SagaServiceStub, order_saga: str, participants: Participants
) -> None:
    order = f"twice-{uuid.uuid4().hex[:8]}"
    first = start(sagas, order_saga, order_input(order))
    again = start(sagas, order_saga, order_input(order), saga_id=first.saga.saga_id)
    wait_ended(sagas, first.saga.saga_id)
    after_end = start(sagas, order_saga, order_input(order), saga_id=first.saga.saga_id)

    assert (first.created, again.created, after_end.created) == (True, False, False)
    assert after_end.saga.status == saga_pb2.SAGA_STATUS_COMPLETED
    assert participants.applied()[("reserve", order)] == 1


def test_starting_a_known_saga_id_with_other_input_is_already_exists(
    sagas: saga_pb2_grpc.SagaServiceStub, order_saga: str
) -> None:
    first = start(sagas, order_saga, order_input(f"a-{uuid.uuid4().hex[:8]}"))

    with pytest.raises(grpc.RpcError) as refused:
        start(sagas, order_saga, order_input(f"b-{uuid.uuid4().hex[:8]}"), saga_id=first.saga.saga_id)
    assert refused.value.code() == grpc.StatusCode.ALREADY_EXISTS


def test_unknown_saga_and_unknown_definition_are_not_found(
    sagas: saga_pb2_grpc.SagaServiceStub, order_saga: str
) -> None:
    with pytest.raises(grpc.RpcError) as saga:
        sagas.GetSaga(saga_pb2.GetSagaRequest(saga_id="no-such-saga"), timeout=5)
    with pytest.raises(grpc.RpcError) as definition:
        start(sagas, "no-such-definition", {})
    assert (saga.value.code(), definition.value.code()) == (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.NOT_FOUND)


def _register(sagas: saga_pb2_grpc.SagaServiceStub, definition: saga_pb2.SagaDefinition) -> saga_pb2.SagaDefinition:
    return sagas.RegisterDefinition(saga_pb2.RegisterDefinitionRequest(definition=definition), timeout=10).definition


def test_invalid_definition_is_refused_with_a_field_violation_per_problem(
    sagas: saga_pb2_grpc.SagaServiceStub, participants: Participants
) -> None:
    definition = order_definition(f"bad-{uuid.uuid4().hex[:6]}", participants.services)
    definition.steps[0].action = "/demo.inventory.v1.InventoryService/Nope"
    definition.steps[1].request_template.update({"card": "$.card"})

    with pytest.raises(grpc.RpcError) as refused:
        _register(sagas, definition)

    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert {v.field for v in field_violations(refused.value)} == {
        "definition.steps[0].action", "definition.steps[1].request_template.card"}


def test_a_running_saga_keeps_the_definition_version_it_started_with(
    sagas: saga_pb2_grpc.SagaServiceStub, participants: Participants
) -> None:
    name = f"versioned-{uuid.uuid4().hex[:6]}"
    three_steps = order_definition(name, participants.services)
    assert _register(sagas, three_steps).version == 1
    slow = start(sagas, name, order_input(f"slow-{uuid.uuid4().hex[:8]}"))

    two_steps = order_definition(name, participants.services)
    del two_steps.steps[2]
    assert _register(sagas, two_steps).version == 2
    assert _register(sagas, two_steps).version == 2  # same content: no new version
    old = wait_ended(sagas, slow.saga.saga_id)
    new = wait_ended(sagas, start(sagas, name, order_input(f"v2-{uuid.uuid4().hex[:8]}")).saga.saga_id)

    assert (old.definition_version, statuses(old)) == (1, ["SUCCEEDED"] * 3)
    assert (new.definition_version, statuses(new)) == (2, ["SUCCEEDED"] * 2)
    assert len(sagas.GetDefinition(saga_pb2.GetDefinitionRequest(name=name, version=1)).definition.steps) == 3
    listed = {d.name: d.version for d in sagas.ListDefinitions(saga_pb2.ListDefinitionsRequest()).definitions}
    assert listed[name] == 2


def test_list_sagas_filters_by_status_and_definition_in_pages(
    sagas: saga_pb2_grpc.SagaServiceStub, participants: Participants
) -> None:
    name = f"listed-{uuid.uuid4().hex[:6]}"
    _register(sagas, order_definition(name, participants.services))
    ids = [start(sagas, name, order_input(f"l{i}-{uuid.uuid4().hex[:6]}")).saga.saga_id for i in range(3)]
    ids.append(start(sagas, name, order_input(f"l-{uuid.uuid4().hex[:6]}", amount_cents=900_000)).saga.saga_id)
    for saga_id in ids:
        wait_ended(sagas, saga_id)

    def page(status: int, token: str = "", size: int = 2) -> saga_pb2.ListSagasResponse:
        return sagas.ListSagas(saga_pb2.ListSagasRequest(status=status, definition_name=name, page_size=size,
                                                         page_token=token), timeout=5)

    first = page(saga_pb2.SAGA_STATUS_COMPLETED)
    second = page(saga_pb2.SAGA_STATUS_COMPLETED, first.next_page_token)
    compensated = page(saga_pb2.SAGA_STATUS_COMPENSATED)
    everything = page(saga_pb2.SAGA_STATUS_UNSPECIFIED, size=10)

    assert (len(first.sagas), len(second.sagas), second.next_page_token) == (2, 1, "")
    assert {s.saga_id for s in [*first.sagas, *second.sagas]} == set(ids[:3])
    assert [s.saga_id for s in compensated.sagas] == [ids[3]]
    assert {s.saga_id for s in everything.sagas} == set(ids)
    assert {s.definition_name for s in everything.sagas} == {name}


def test_watch_saga_streams_every_transition_until_the_saga_ends(
    sagas: saga_pb2_grpc.SagaServiceStub, order_saga: str
) -> None:
    started = start(sagas, order_saga, order_input(f"slow-{uuid.uuid4().hex[:8]}"))

    messages = list(sagas.WatchSaga(saga_pb2.WatchSagaRequest(saga_id=started.saga.saga_id), timeout=20))

    assert not messages[0].HasField("event")
    versions = [m.event.version for m in messages[1:]]
    assert versions == list(range(messages[0].saga.stream_version + 1, messages[-1].saga.stream_version + 1))
    types = [m.event.type for m in messages[1:]]
    assert types[-4:] == ["step_succeeded", "step_started", "step_succeeded", "saga_completed"]
    assert messages[-1].saga.status == saga_pb2.SAGA_STATUS_COMPLETED


def test_abort_compensates_a_running_saga_now(
    sagas: saga_pb2_grpc.SagaServiceStub, order_saga: str, participants: Participants
) -> None:
    order = f"slow-{uuid.uuid4().hex[:8]}"
    saga_id = start(sagas, order_saga, order_input(order)).saga.saga_id

    aborted = sagas.AbortSaga(saga_pb2.AbortSagaRequest(saga_id=saga_id, reason="customer cancelled"), timeout=5)
    saga = wait_ended(sagas, saga_id)

    assert aborted.saga.status == saga_pb2.SAGA_STATUS_COMPENSATING
    assert saga.status == saga_pb2.SAGA_STATUS_COMPENSATED
    assert "aborted: customer cancelled" in saga.errors
    applied = participants.applied()
    assert applied[("reserve", order)] == applied[("release", order)] <= 1
    with pytest.raises(grpc.RpcError) as again:
        sagas.AbortSaga(saga_pb2.AbortSagaRequest(saga_id=saga_id), timeout=5)
    assert again.value.code() == grpc.StatusCode.FAILED_PRECONDITION


def test_saga_past_its_deadline_is_compensated(
    sagas: saga_pb2_grpc.SagaServiceStub, participants: Participants
) -> None:
    name = f"deadline-{uuid.uuid4().hex[:6]}"
    _register(sagas, order_definition(name, participants.services, timeout="0.2s"))
    order = f"slow-{uuid.uuid4().hex[:8]}"

    saga = wait_ended(sagas, start(sagas, name, order_input(order)).saga.saga_id)

    assert saga.status == saga_pb2.SAGA_STATUS_COMPENSATED
    assert saga.steps[0].attempts[0].code == "DEADLINE_EXCEEDED"
    assert any("deadline exceeded" in e for e in saga.errors)


def test_a_saga_outlives_the_deadline_of_the_call_that_started_it(
    sagas: saga_pb2_grpc.SagaServiceStub, order_saga: str
) -> None:
    request = saga_pb2.StartSagaRequest(saga_id=f"saga-{uuid.uuid4().hex[:12]}", definition_name=order_saga)
    request.input.update(order_input(f"slow-{uuid.uuid4().hex[:8]}"))
    sagas.StartSaga(request, timeout=0.6)  # three slow steps take about 1.2 s

    saga = wait_ended(sagas, request.saga_id)

    assert saga.status == saga_pb2.SAGA_STATUS_COMPLETED, saga.errors


def definition_pages(sagas, page_size: int = 0) -> list[saga_pb2.ListDefinitionsResponse]:
    return all_pages(sagas.ListDefinitions, saga_pb2.ListDefinitionsRequest, page_size)


def test_list_definitions_pages_by_count_and_by_bytes(sagas, participants) -> None:
    # Nine definitions near the 128 KiB cap made one answer of more than 1 MiB; enough of them made it larger
    # than gRPC's 4 MiB and ListDefinitions failed for everyone.
    prefix = f"pages-{uuid.uuid4().hex[:8]}"
    names = [f"{prefix}.{n}" for n in range(9)]
    for name in names:
        definition = order_definition(name, participants.services)
        definition.steps[1].request_template["currency"] = "E" * 120_000  # a constant the step sends as is
        sagas.RegisterDefinition(saga_pb2.RegisterDefinitionRequest(definition=definition), timeout=30)
    pages = definition_pages(sagas)
    listed = [d.name for page in pages for d in page.definitions]
    assert listed == sorted(set(listed)) and set(names) <= set(listed)
    assert all(page.ByteSize() <= 2**20 for page in pages) and len(pages) >= 2
    by_count = definition_pages(sagas, page_size=2)
    assert [d.name for page in by_count for d in page.definitions] == listed
    assert all(len(page.definitions) <= 2 for page in by_count)


def test_list_definitions_refuses_page_tokens_it_could_not_have_issued(sagas) -> None:
    with pytest.raises(grpc.RpcError) as failure:
        sagas.ListDefinitions(saga_pb2.ListDefinitionsRequest(page_token="no\nname"), timeout=10)
    assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in field_violations(failure.value)] == ["page_token"]
