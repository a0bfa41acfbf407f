"""What a saga records of a participant's answer stays within what Consul stores in one transaction."""

from __future__ import annotations

from controlplane.saga.definitions import MAX_STEPS
from controlplane.saga.record_size import MAX_STATE_BYTES, SMALL_RECORD_BYTES, oversized
from controlplane.saga.servicer import MAX_INPUT_BYTES
from controlplane.saga.state import SagaState, StepProgress


def record(chars: int) -> dict:
    return {"step": 0, "attempt": 1, "response": {"id": "r" * chars}, "data": {}}


def test_small_records_pass_and_alone_cannot_outgrow_the_state_bound() -> None:
    assert oversized(SagaState("s"), record(100)) is None
    assert 2 * MAX_INPUT_BYTES + MAX_STEPS * SMALL_RECORD_BYTES < MAX_STATE_BYTES


def test_a_record_that_would_make_the_state_too_large_is_refused_naming_the_sizes() -> None:
    assert oversized(SagaState("s"), record(100_000)) is None  # large, but the state has room
    problem = oversized(SagaState("s"), record(300_000))
    assert problem is not None and "at most 262,144 are stored" in problem
    full = SagaState("s", steps=[StepProgress(f"s{n}", response={"id": "r" * 50_000}) for n in range(5)])
    assert oversized(full, record(60_000)) is not None  # fine alone, too much beside what is recorded
