"""Domain saga state and events -> controlplane.v1 messages."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from google.protobuf import struct_pb2, timestamp_pb2

from controlplane.errors import ValidationError
from controlplane.saga.eventstore import Event, RecordedEvent
from controlplane.saga.state import Attempt, EventType, SagaState, StepProgress
from controlplane.v1 import saga_pb2

# What one Saga message carries of a saga's history. A saga may have 50 steps with up to 100 attempts of
# its action and 100 of its compensation, each error up to 2,000 characters (8,000 bytes of UTF-8), and
# one saga error per failed attempt: all of it would be some 160 MB, past gRPC's 4 MiB, and GetSaga and
# WatchSaga of such a saga would fail in every caller. The latest attempts and errors are carried, and how
# many were left out: at most 50 x 40 KiB of attempts' errors, 20 x 8,000 bytes of saga errors, beside a
# state the orchestrator keeps under 256 KiB (record_size.py).
WIRE_ATTEMPTS = 10  # per step and kind (action, compensation): the latest
WIRE_STEP_ERROR_BYTES = 40 * 1024  # the attempts' error texts of one step, in one message
WIRE_ERRORS = 20  # the saga's latest errors


def timestamp(unix_seconds: float | None) -> timestamp_pb2.Timestamp | None:
    if not unix_seconds:
        return None
    stamp = timestamp_pb2.Timestamp()
    stamp.FromNanoseconds(int(unix_seconds * 1e9))
    return stamp


def struct(value: Mapping[str, Any] | None) -> struct_pb2.Struct:
    out = struct_pb2.Struct()
    if value:
        out.update(_json_safe(value))
    return out


def from_struct(message: struct_pb2.Struct, field: str = "input") -> dict[str, Any]:
    """A Struct as a plain dict, as json_format.MessageToDict makes it (numbers are floats), but several
    times faster. ValidationError naming `field` for NaN or infinite numbers, which JSON cannot hold."""
    return {key: _from_value(value, field) for key, value in message.fields.items()}


def _from_value(value: struct_pb2.Value, field: str) -> Any:
    kind = value.WhichOneof("kind")
    if kind == "string_value":
        return value.string_value
    if kind == "number_value":
        number = value.number_value
        if math.isinf(number) or math.isnan(number):
            raise ValidationError.single(field, f"numbers must be finite, got {number}")
        return number
    if kind == "bool_value":
        return value.bool_value
    if kind == "struct_value":
        return from_struct(value.struct_value, field)
    if kind == "list_value":
        return [_from_value(item, field) for item in value.list_value.values]
    return None  # null_value, or no value at all


def _json_safe(value: Any) -> Any:
    """Struct holds JSON: numbers as doubles, no None inside lists is fine, tuples become lists."""
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def saga_to_proto(state: SagaState, input_struct: struct_pb2.Struct | None = None) -> saga_pb2.Saga:
    """The Saga message of `state`. `input_struct`, when the caller holds the saga's input as a Struct
    already (StartSaga's request), is copied instead of converting the input again, and also serves as
    the data while no step has added to it."""
    saga = saga_pb2.Saga(
        saga_id=state.saga_id,
        definition_name=state.definition_name,
        definition_version=state.definition_version,
        status=int(state.status),
        current_step=state.current_step,
        trace_id=state.trace_id,
        errors=state.errors[-WIRE_ERRORS:],
        errors_left_out=max(0, len(state.errors) - WIRE_ERRORS),
        stream_version=state.version,
    )
    if input_struct is not None:
        saga.input.CopyFrom(input_struct)
    else:
        saga.input.CopyFrom(struct(state.input))
    if input_struct is not None and state.data is state.input:  # the fold replaces data when it changes
        saga.data.CopyFrom(input_struct)
    else:
        saga.data.CopyFrom(struct(state.data))
    for field, value in (("created_at", state.created_at), ("updated_at", state.updated_at)):
        stamp = timestamp(value)
        if stamp is not None:
            getattr(saga, field).CopyFrom(stamp)
    saga.steps.extend(step_to_proto(step) for step in state.steps)
    return saga


def step_to_proto(step: StepProgress) -> saga_pb2.StepState:
    wire = saga_pb2.StepState(name=step.name, status=int(step.status))
    if step.response is not None:
        wire.response.CopyFrom(struct(step.response))
    shown = latest_attempts(step.attempts)
    wire.attempts_left_out = len(step.attempts) - len(shown)
    for attempt in shown:
        a = wire.attempts.add(attempt=attempt.attempt, compensation=attempt.compensation, code=attempt.code,
                              error=attempt.error, replica=attempt.replica)
        started, finished = timestamp(attempt.started_at), timestamp(attempt.finished_at)
        if started is not None:
            a.started_at.CopyFrom(started)
        if finished is not None:
            a.finished_at.CopyFrom(finished)
    return wire


def latest_attempts(attempts: list[Attempt]) -> list[Attempt]:
    """The attempts a message carries, oldest first: the latest WIRE_ATTEMPTS of each kind, while their error
    texts fit WIRE_STEP_ERROR_BYTES (the newest of each kind always)."""
    if len(attempts) <= WIRE_ATTEMPTS and sum(len(a.error) for a in attempts) * 4 <= WIRE_STEP_ERROR_BYTES:
        return attempts  # nearly always: a few attempts, short errors
    newest = {attempt.compensation: n for n, attempt in enumerate(attempts)}  # kind -> its newest attempt
    kept = set(newest.values())
    used = sum(len(attempts[n].error.encode()) for n in kept)
    counts = {kind: 1 for kind in newest}
    for n in range(len(attempts) - 1, -1, -1):
        attempt = attempts[n]
        if n in kept or counts[attempt.compensation] >= WIRE_ATTEMPTS:
            continue
        size = len(attempt.error.encode())
        if used + size > WIRE_STEP_ERROR_BYTES:
            counts[attempt.compensation] = WIRE_ATTEMPTS  # no older ones of this kind: what is shown stays contiguous
            continue
        counts[attempt.compensation] += 1
        used += size
        kept.add(n)
    return [attempts[n] for n in sorted(kept)]


class SagaWire:
    """A Saga message kept in step with a state as events are folded in, converting only what an event
    changed (a watch sends the whole saga with every event)."""

    def __init__(self, state: SagaState) -> None:
        self.message = saga_to_proto(state)

    def update(self, state: SagaState, event: Event) -> saga_pb2.Saga:
        m = self.message
        m.status = int(state.status)
        m.current_step = state.current_step
        m.stream_version = state.version
        stamp = timestamp(state.updated_at)
        if stamp is not None:
            m.updated_at.CopyFrom(stamp)
        if len(state.errors) > m.errors_left_out + len(m.errors):
            del m.errors[:]
            m.errors.extend(state.errors[-WIRE_ERRORS:])
            m.errors_left_out = max(0, len(state.errors) - WIRE_ERRORS)
        if 0 <= event.step < len(state.steps) and event.step < len(m.steps):
            m.steps[event.step].CopyFrom(step_to_proto(state.steps[event.step]))
        if event.type == EventType.STEP_SUCCEEDED:
            m.data.CopyFrom(struct(state.data))
        return m


def summary_to_proto(summary: Mapping[str, Any]) -> saga_pb2.Saga:
    """A listed saga: identity, status and times; GetSaga has the steps."""
    saga = saga_pb2.Saga(
        saga_id=summary["saga_id"],
        definition_name=summary["definition_name"],
        definition_version=summary["definition_version"],
        status=summary["status"],
        trace_id=summary.get("trace_id", ""),
        current_step=-1,
    )
    for field in ("created_at", "updated_at"):
        stamp = timestamp(summary.get(field))
        if stamp is not None:
            getattr(saga, field).CopyFrom(stamp)
    return saga


def event_to_proto(recorded: RecordedEvent) -> saga_pb2.SagaEvent:
    event = recorded.event
    payload = {k: v for k, v in event.data.items() if k != "step"}
    wire = saga_pb2.SagaEvent(version=recorded.version, type=event.type, step=event.step)
    wire.payload.CopyFrom(struct(payload))
    stamp = timestamp(event.at)
    if stamp is not None:
        wire.recorded_at.CopyFrom(stamp)
    return wire
