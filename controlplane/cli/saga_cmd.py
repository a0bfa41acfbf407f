"""`controlplane saga list|show`: where sagas stand."""

from __future__ import annotations

import json

import grpc
from google.protobuf import json_format

from controlplane.v1 import saga_pb2, saga_pb2_grpc


def _name(enum: object, value: int, prefix: str) -> str:
    return enum.Name(value).removeprefix(prefix).lower()  # type: ignore[attr-defined]


def list_(channel: grpc.Channel, status: str, definition: str, limit: int) -> int:
    stub = saga_pb2_grpc.SagaServiceStub(channel)
    wanted = saga_pb2.SagaStatus.Value(f"SAGA_STATUS_{status.upper()}") if status else 0
    request = saga_pb2.ListSagasRequest(status=wanted, definition_name=definition, page_size=min(limit, 500))
    sagas = stub.ListSagas(request, timeout=10).sagas
    for saga in sagas[:limit]:
        status_name = _name(saga_pb2.SagaStatus, saga.status, "SAGA_STATUS_")
        print(
            f"{saga.saga_id:<36} {saga.definition_name}@v{saga.definition_version:<3} {status_name:<16} "
            f"{saga.updated_at.ToJsonString()}"
        )
    print(f"({len(sagas[:limit])} sagas)")
    return 0


def show(channel: grpc.Channel, saga_id: str) -> int:
    saga = saga_pb2_grpc.SagaServiceStub(channel).GetSaga(saga_pb2.GetSagaRequest(saga_id=saga_id), timeout=10).saga
    print(
        f"saga {saga.saga_id}: {saga.definition_name} v{saga.definition_version}, "
        f"{_name(saga_pb2.SagaStatus, saga.status, 'SAGA_STATUS_')}, trace {saga.trace_id or '-'}"
    )
    print(f"input: {json.dumps(json_format.MessageToDict(saga.input), sort_keys=True)}")
    for step in saga.steps:
        print(f"  {step.name:<18} {_name(saga_pb2.StepStatus, step.status, 'STEP_STATUS_')}")
        if step.attempts_left_out:
            print(f"    ({step.attempts_left_out} earlier attempts not shown)")
        for attempt in step.attempts:
            kind = "compensation" if attempt.compensation else "action"
            took = (attempt.finished_at.ToNanoseconds() - attempt.started_at.ToNanoseconds()) / 1e6
            error = f"  {attempt.error}" if attempt.error else ""
            by = f" by {attempt.replica}" if attempt.replica else ""
            print(f"    {kind} #{attempt.attempt}: {attempt.code or '...'} ({took:.1f} ms){by}{error}")
    if saga.errors_left_out:
        print(f"  ({saga.errors_left_out} earlier errors not shown)")
    for error in saga.errors:
        print(f"  error: {error}")
    return 0
