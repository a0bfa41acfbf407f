"""How much of a participant's answer a saga can record: Consul stores each append in one transaction.

A step's success is recorded with the participant's whole response and the data mapped from it, and a
snapshot of the saga's state (every step's response) goes with some appends. Consul refuses a transaction
body over 512 KiB (`txn_max_req_len`, values base64-encoded: a third larger), so a participant answering
more than that made every append of its saga fail, and the saga retried the append forever, never
settling. Now a success that would make the saga's record larger than MAX_STATE_BYTES is recorded as a
final failure of the step whose effect took place: the saga compensates it with the others.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from controlplane.saga.state import SagaState

__all__ = ["MAX_STATE_BYTES", "SMALL_RECORD_BYTES", "oversized"]

# The saga's recorded state as JSON (input, every step's response and mapped data, attempts): with the
# base64 encoding and an event beside it, an append stays within Consul's 512 KiB.
MAX_STATE_BYTES = 256 * 1024
# A step record this small is not checked against the whole state (which costs a JSON encoding of it):
# StartSaga input is at most 64 KiB (recorded twice, as given and as the start of the saga's data) and a
# saga has at most 50 steps, so records this small keep the state within MAX_STATE_BYTES by themselves
# (128 KiB + 50 x 2 KiB, attempts aside).
SMALL_RECORD_BYTES = 2 * 1024


def _size(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":")))


def oversized(state: SagaState, record: Mapping[str, Any]) -> str | None:
    """Why recording `record` (a step success's event data) in `state` would make the saga's record too
    large to store, or None when it fits."""
    size = _size(record)
    if size <= SMALL_RECORD_BYTES:
        return None
    total = size + _size(state.to_json())
    if total <= MAX_STATE_BYTES:
        return None
    return (f"the participant's answer makes the saga's record {total:,} bytes as JSON; at most "
            f"{MAX_STATE_BYTES:,} are stored (answer {size:,} bytes): the step took effect but cannot be "
            "recorded, so it is compensated")
