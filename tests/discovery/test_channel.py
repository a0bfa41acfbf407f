"""DiscoveryChannel: calls reach the passing instances of a service, following registry changes live."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent import futures

import grpc
import pytest

from controlplane.discovery import DiscoveryChannel, NoInstancesError, target_for
from controlplane.interceptors import ClientPolicy, LivePolicy, RetryPolicy, channel_options
from controlplane.v1 import registry_pb2
from tests.helpers import ControlPlaneProcess, ttl, wait_until

METHOD = "/test.Echo/Port"


class PortServer:
    """Answers every call with its own port, so a test sees which instance served it."""

    def __init__(self) -> None:
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        handler = grpc.unary_unary_rpc_method_handler(lambda request, context: str(self.port).encode())
        self.server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("test.Echo", {"Port": handler})])
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()

    def stop(self) -> None:
        self.server.stop(0).wait()


@pytest.fixture
def servers() -> Iterator[list[PortServer]]:
    started = [PortServer() for _ in range(3)]
    yield started
    for server in started:
        server.stop()


def ask(channel: grpc.Channel) -> int:
    return int(channel.unary_unary(METHOD)(b"", timeout=5))


def ports_answering(channel: grpc.Channel, calls: int = 30) -> set[int]:
    return {ask(channel) for _ in range(calls)}


def test_target_lists_every_ip_address_for_round_robin():
    assert target_for([("127.0.0.1", 1), ("127.0.0.2", 2)]) == "ipv4:127.0.0.1:1,127.0.0.2:2"
    assert target_for([("::1", 3)]) == "ipv6:[::1]:3"
    assert target_for([("localhost", 4)]) == "dns:///localhost:4"


def test_calls_are_balanced_over_every_passing_instance(register, service_name, control_plane, servers):
    for server in servers[:2]:
        register(service=service_name, address="127.0.0.1", port=server.port, check=ttl())
    with DiscoveryChannel(service_name, control_plane.address) as channel:
        wait_until(lambda: len(channel.addresses) == 2, what="two instances")
        assert ports_answering(channel) == {servers[0].port, servers[1].port}


def test_channel_follows_instances_added_and_removed(register, registry, service_name, control_plane, servers):
    first = register(service=service_name, address="127.0.0.1", port=servers[0].port, check=ttl())
    with DiscoveryChannel(service_name, control_plane.address) as channel:
        assert ports_answering(channel) == {servers[0].port}
        register(service=service_name, address="127.0.0.1", port=servers[2].port, check=ttl())
        wait_until(lambda: ports_answering(channel) == {servers[0].port, servers[2].port}, what="new instance used")
        registry.Deregister(registry_pb2.DeregisterRequest(instance_id=first.instance_id), timeout=5)
        wait_until(lambda: ports_answering(channel) == {servers[2].port}, what="removed instance dropped")


def test_no_passing_instance_fails_at_once_with_unavailable(service_name, control_plane):
    with DiscoveryChannel(service_name, control_plane.address, first_set_timeout=2) as channel:
        with pytest.raises(grpc.RpcError) as failure:
            ask(channel)
        assert isinstance(failure.value, NoInstancesError)
        assert failure.value.code() == grpc.StatusCode.UNAVAILABLE


def test_last_known_instances_keep_serving_while_the_control_plane_is_down(consul, tmp_path, servers):
    plane = ControlPlaneProcess(consul.http_addr, log_path=tmp_path / "cp.log").start()
    try:
        with grpc.insecure_channel(plane.address) as cp_channel:
            from controlplane.v1 import registry_pb2_grpc

            stub = registry_pb2_grpc.RegistryServiceStub(cp_channel)
            instance = stub.Register(
                registry_pb2.RegisterRequest(
                    service="outage-demo", address="127.0.0.1", port=servers[1].port, check=ttl()
                ),
                timeout=5,
            ).instance
        with DiscoveryChannel("outage-demo", plane.address) as channel:
            assert ports_answering(channel, 3) == {servers[1].port}
            plane.kill()
            assert ports_answering(channel, 3) == {servers[1].port}
        plane = ControlPlaneProcess(consul.http_addr, port=plane.port).start()
        with grpc.insecure_channel(plane.address) as cp_channel:
            registry_pb2_grpc.RegistryServiceStub(cp_channel).Deregister(
                registry_pb2.DeregisterRequest(instance_id=instance.instance_id), timeout=5
            )
    finally:
        plane.kill()


class FlakyServer:
    """Fails its first two attempts with UNAVAILABLE, answers from the third on."""

    def __init__(self) -> None:
        self.attempts = 0

        def port(request: bytes, context: grpc.ServicerContext) -> bytes:
            self.attempts += 1
            if self.attempts <= 2:
                context.abort(grpc.StatusCode.UNAVAILABLE, "flaky")
            return b"1"

        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        handler = grpc.unary_unary_rpc_method_handler(port)
        self.server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler("test.Echo", {"Port": handler})])
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()


def test_a_retry_policy_set_live_remakes_the_channel_with_it(register, service_name, control_plane):
    flaky = FlakyServer()
    try:
        register(service=service_name, address="127.0.0.1", port=flaky.port, check=ttl())
        live = LivePolicy()
        with DiscoveryChannel(service_name, control_plane.address, options=channel_options(live)) as channel:
            channel.follow(live)
            wait_until(lambda: channel.addresses, what="the instance")
            with pytest.raises(grpc.RpcError):
                ask(channel)  # attempt 1 fails, nothing retries it
            live.update(ClientPolicy(retry=RetryPolicy(idempotent_methods=("test.Echo/Port",), initial_backoff=0.01)))
            assert ask(channel) == 1  # attempt 2 fails, gRPC retries: attempt 3 answers
        assert flaky.attempts == 3
    finally:
        flaky.server.stop(0).wait()
