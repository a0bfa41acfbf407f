"""A request body protobuf cannot decode answers INVALID_ARGUMENT on sync and asyncio servers alike."""

from __future__ import annotations

import asyncio
from concurrent import futures

import grpc
import pytest

from controlplane.errors import field_violations
from controlplane.interceptors import aio_server_interceptors, server_interceptors
from controlplane.v1 import registry_pb2, registry_pb2_grpc

GARBAGE = b"\xff\xff\xff\xff"


class Servicer(registry_pb2_grpc.RegistryServiceServicer):
    def Discover(self, request, context):
        return registry_pb2.DiscoverResponse()

    def Watch(self, request, context):
        yield registry_pb2.WatchResponse()


class AioServicer(registry_pb2_grpc.RegistryServiceServicer):
    async def Discover(self, request, context):
        return registry_pb2.DiscoverResponse()

    async def Watch(self, request, context):
        yield registry_pb2.WatchResponse()


def calls(channel: grpc.Channel) -> list[grpc.StatusCode]:
    codes = []
    for method, streaming in (("Discover", False), ("Watch", True)):
        path = f"/controlplane.v1.RegistryService/{method}"
        with pytest.raises(grpc.RpcError) as failure:
            if streaming:
                next(channel.unary_stream(path)(GARBAGE, timeout=5))
            else:
                channel.unary_unary(path)(GARBAGE, timeout=5)
        assert [v.field for v in field_violations(failure.value)] == ["request"]
        codes.append(failure.value.code())
    ok = registry_pb2_grpc.RegistryServiceStub(channel).Discover(registry_pb2.DiscoverRequest(), timeout=5)
    assert ok == registry_pb2.DiscoverResponse()  # well-formed requests still reach the servicer
    return codes


def test_sync_server_refuses_undecodable_requests_with_invalid_argument() -> None:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2), interceptors=server_interceptors(tracing=False))
    registry_pb2_grpc.add_RegistryServiceServicer_to_server(Servicer(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            assert calls(channel) == [grpc.StatusCode.INVALID_ARGUMENT] * 2
    finally:
        server.stop(None)


def test_asyncio_server_refuses_undecodable_requests_with_invalid_argument() -> None:
    async def scenario() -> list[grpc.StatusCode]:
        server = grpc.aio.server(interceptors=aio_server_interceptors(tracing=False))
        registry_pb2_grpc.add_RegistryServiceServicer_to_server(AioServicer(), server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
                return await asyncio.to_thread(calls, channel)
        finally:
            await server.stop(None)

    assert asyncio.run(scenario()) == [grpc.StatusCode.INVALID_ARGUMENT] * 2
