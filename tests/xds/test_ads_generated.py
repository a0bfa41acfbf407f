"""Generated ADS streams: whatever a client sends, a stream answers or ends with a contract status, and
every service view it used is released when it ends.

In-process, as tests/xds/test_ads_bounds.py: real service views over watches that answer from memory.
`make fuzz` runs FUZZ_EXAMPLES streams (at least the 300 `make test` runs).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from google.protobuf import struct_pb2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from controlplane.config.model import ServiceState
from controlplane.registry.model import Health, Instance
from controlplane.xds.ads import ENVIRONMENT_KEY, MAX_NAMES, AggregatedDiscovery
from controlplane.xds.resources import TYPES
from controlplane.xds.v1 import envoy_wire_pb2 as w
from controlplane.xds.views import ServiceViews
from tests.fuzz.requests import strings
from tests.xds.test_ads_bounds import Aborted, Context, answered, held

EXAMPLES = max(300, int(os.environ.get("FUZZ_EXAMPLES", "0")))
pytestmark = pytest.mark.timeout(120 + EXAMPLES * 0.1)  # a stream takes a few ms; `make fuzz` runs thousands
CONTRACT = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED}

services = st.sampled_from(["order", "payment", "svc-1", "Not_A_Service", ""])
ports = st.sampled_from(["80", "0", "65536", "065535", "²", "٣", "9" * 40, "-1", " 80", ""])
with_port = st.builds(lambda s, p: f"{s}:{p}", services, ports)
with_version = st.builds(lambda s, v: f"{s}@{v}", services, st.sampled_from(["0.1.0", "v2", ""]))
names = st.sampled_from([services, with_port, with_port, with_version, strings]).flatmap(lambda kind: kind)
nodes = st.builds(
    lambda node_id, environment: w.Node(id=node_id, metadata=struct_pb2.Struct(
        fields={} if environment is None else {ENVIRONMENT_KEY: struct_pb2.Value(string_value=environment)})),
    strings,
    # Mostly none or a valid one, so most streams get past their node; some that must be refused.
    st.sampled_from([None, None, None, "", "staging", "qa-1", "default", "Bad Env", "x" * 600, "é"]),
)
requests = st.builds(
    lambda type_url, resource_names, node, nonce, nack: w.DiscoveryRequest(
        type_url=type_url, resource_names=resource_names, node=node, response_nonce=nonce,
        error_detail=w.RpcStatus(code=3, message=nack) if nack is not None else None),
    st.sampled_from([*TYPES, *TYPES, ""]).flatmap(lambda served: st.just(served) if served else strings),
    st.integers(0, 9).flatmap(lambda n: st.lists(names, max_size=8) if n else  # now and then too many
                              st.just([f"svc-{n}" for n in range(MAX_NAMES + 1)])),
    st.none() | nodes,
    st.sampled_from(["", "", "", "", "1", "2", "not-a-nonce"]),
    st.none() | strings,
)


async def _stream(sent: list[w.DiscoveryRequest]) -> tuple[list[w.DiscoveryResponse], grpc.Status | None, int]:
    instance = Instance("any", "any-a", "127.0.0.1", 5000, health=Health.PASSING)
    views = ServiceViews(lambda service: held(answered((instance,))),
                         lambda service: held(answered(ServiceState(service))),
                         first_sync_timeout=1)
    ads = AggregatedDiscovery(views)
    taken = asyncio.Event()

    async def feed() -> AsyncIterator[w.DiscoveryRequest]:
        for request in sent:
            yield request
        taken.set()
        await asyncio.Event().wait()  # the client keeps its stream open until the test has its answers

    responses: list[w.DiscoveryResponse] = []
    status: grpc.Status | None = None
    stream = ads.stream(feed(), Context())  # type: ignore[arg-type]

    async def read() -> None:
        async for response in stream:
            responses.append(response)

    reading = asyncio.ensure_future(read())
    await taken.wait()
    for _ in range(200):  # views answer from memory: a few turns of the loop have them ready
        await asyncio.sleep(0)
    try:
        if reading.done():
            reading.result()
        reading.cancel()
        await asyncio.gather(reading, return_exceptions=False)
    except Aborted as aborted:
        status = aborted.status
    except asyncio.CancelledError:
        pass
    await stream.aclose()
    left = len(views)
    await views.stop()
    return responses, status, left


@settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
@given(sent=st.lists(requests, min_size=1, max_size=5))
def test_any_stream_gets_answers_or_a_contract_status_and_leaves_no_view_behind(sent: list[Any]) -> None:
    responses, status, left = asyncio.run(_stream(sent))
    assert status is None or status.code in CONTRACT, status
    assert status is None or 0 < len(status.details) <= 1000
    for response in responses:
        assert response.type_url in TYPES and response.nonce
    assert left == 0, f"{left} service views still used after the stream ended"
