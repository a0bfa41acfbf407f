"""Stock grpcio clients (sync and asyncio), configured by a bootstrap alone, governed by the control plane."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.helpers import wait_until
from tests.xds.conftest import Backend, StockClient, ready, served, set_policy


@pytest.mark.parametrize("mode", ["sync", "aio"])
def test_discovery_and_round_robin_over_two_instances(
    mode: str, service_name: str, backends: Callable[..., Backend], stock_clients: Callable[..., StockClient]
) -> None:
    backends(service_name, f"{service_name}-a")
    backends(service_name, f"{service_name}-b")
    client = stock_clients(mode)
    target = f"xds:///{service_name}"
    wait_until(lambda: len(client.calls(target, 10, wait_for_ready=True)["by"]) == 2, timeout=15,
               what="both instances to be served")
    result = client.calls(target, 100)
    assert result["errors"] == {}
    assert result["by"] == {f"{service_name}-a": 50, f"{service_name}-b": 50}


# --- instances leaving --------------------------------------------------------------------------------------


def test_an_instance_that_turns_unhealthy_gets_no_more_calls(
    service_name: str, backends: Callable[..., Backend], stock_clients: Callable[..., StockClient]
) -> None:
    """Still up and reachable, but failing its health check: only the registry can tell the client."""
    a = backends(service_name, f"{service_name}-a")
    backends(service_name, f"{service_name}-b")
    client = stock_clients()
    target = f"xds:///{service_name}"
    ready(client, target, {f"{service_name}-a", f"{service_name}-b"})
    from grpc_health.v1 import health_pb2

    a.health.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
    wait_until(lambda: set(served(client, target)) == {f"{service_name}-b"}, timeout=10,
               what="the unhealthy instance to leave the endpoints")
    calls_before = a.calls
    result = client.calls(target, 100)
    assert result == {**result, "by": {f"{service_name}-b": 100}, "errors": {}}
    assert a.calls == calls_before


def test_an_instance_killed_gets_no_calls_and_none_fail(
    service_name: str, backends: Callable[..., Backend], stock_clients: Callable[..., StockClient]
) -> None:
    a = backends(service_name, f"{service_name}-a")
    backends(service_name, f"{service_name}-b")
    client = stock_clients("aio")
    target = f"xds:///{service_name}"
    ready(client, target, {f"{service_name}-a", f"{service_name}-b"})
    a.stop()
    result = client.calls(target, 200)
    assert result["errors"] == {}
    assert result["by"] == {f"{service_name}-b": 200}


# --- policies -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["sync", "aio"])
def test_canary_split_by_version_within_five_percent(
    mode: str, service_name: str, backends: Callable[..., Backend], stock_clients: Callable[..., StockClient],
    config: object,
) -> None:
    backends(service_name, f"{service_name}-stable", version="0.1.0")
    backends(service_name, f"{service_name}-canary", version="0.2.0")
    set_policy(config, service_name, {"split": [{"version": "0.2.0", "weight": 10},
                                                {"version": "0.1.0", "weight": 90}]}, expected=0)
    client = stock_clients(mode)
    target = f"xds:///{service_name}"
    ready(client, target, {f"{service_name}-stable", f"{service_name}-canary"})
    result = client.calls(target, 1000)
    assert result["errors"] == {}
    assert abs(result["by"][f"{service_name}-canary"] - 100) <= 50, result["by"]
    assert sum(result["by"].values()) == 1000


def test_a_policy_change_reaches_running_clients_within_a_second(
    service_name: str, backends: Callable[..., Backend], stock_clients: Callable[..., StockClient], config: object
) -> None:
    import time

    backends(service_name, f"{service_name}-stable", version="0.1.0")
    backends(service_name, f"{service_name}-canary", version="0.2.0")
    client = stock_clients()
    target = f"xds:///{service_name}"
    ready(client, target, {f"{service_name}-stable", f"{service_name}-canary"})
    set_policy(config, service_name, {"split": [{"version": "0.1.0", "weight": 1}]}, expected=0)
    acknowledged = time.monotonic()
    wait_until(lambda: set(client.calls(target, 4)["by"]) == {f"{service_name}-stable"}, timeout=5)
    assert time.monotonic() - acknowledged < 1.0
    assert client.calls(target, 100)["by"] == {f"{service_name}-stable": 100}


def test_fault_injection_aborts_and_delays_the_share_asked(
    service_name: str, backends: Callable[..., Backend], stock_clients: Callable[..., StockClient], config: object
) -> None:
    backends(service_name, f"{service_name}-a")
    set_policy(config, service_name, {"fault": {"abort": {"code": "RESOURCE_EXHAUSTED", "percent": 50}}},
               expected=0)
    client = stock_clients()
    target = f"xds:///{service_name}"
    ready(client, target, {f"{service_name}-a"})
    wait_until(lambda: client.calls(target, 20)["errors"], timeout=15, what="the abort fault to apply")
    result = client.calls(target, 400)
    assert set(result["errors"]) == {"RESOURCE_EXHAUSTED"}
    assert abs(result["errors"]["RESOURCE_EXHAUSTED"] - 200) <= 60, result["errors"]
    set_policy(config, service_name, {"fault": {"delay": {"seconds": 0.2, "percent": 100}}}, expected=1)
    wait_until(lambda: min(client.calls(target, 3)["ms"]) >= 200, timeout=10, what="the delay fault to apply")
    result = client.calls(target, 5)
    assert result["errors"] == {} and min(result["ms"]) >= 200


def test_retries_mask_a_failing_instance(
    service_name: str, backends: Callable[..., Backend], stock_clients: Callable[..., StockClient], config: object
) -> None:
    failing = backends(service_name, f"{service_name}-failing")
    backends(service_name, f"{service_name}-good")
    client = stock_clients("aio")
    target = f"xds:///{service_name}"
    ready(client, target, {f"{service_name}-failing", f"{service_name}-good"})
    import grpc

    failing.fail_with = grpc.StatusCode.UNAVAILABLE
    assert client.calls(target, 100)["errors"].get("UNAVAILABLE", 0) >= 30  # round robin: about half fail
    set_policy(config, service_name, {"retry": {"codes": ["UNAVAILABLE"], "max_attempts": 3}}, expected=0)
    wait_until(lambda: not client.calls(target, 20)["errors"], timeout=5, what="retries to apply")
    result = client.calls(target, 200)
    assert result["errors"] == {}
    assert result["by"] == {f"{service_name}-good": 200}


def test_ring_hash_by_header_keeps_each_user_on_one_instance(
    service_name: str, backends: Callable[..., Backend], stock_clients: Callable[..., StockClient], config: object
) -> None:
    names = {f"{service_name}-{i}" for i in range(3)}
    for name in sorted(names):
        backends(service_name, name)
    set_policy(config, service_name, {"hash_header": "x-user"}, expected=0)
    client = stock_clients()
    target = f"xds:///{service_name}"
    # 48 users: with 12, the ring (its points depend on the instance names, new each run) can leave an
    # instance without any of them (3 x (2/3)^12, about 2%, were it even), and then the wait never ends.
    wait_until(lambda: len(client.calls(target, 3, metadata=[["x-user", "warm-up"]], wait_for_ready=True)["by"]) == 1
               and len({w for u in range(48) for w in client.calls(target, 1, metadata=[["x-user", f"u{u}"]])["by"]})
               == 3, timeout=30, what="ring hash over all three instances")
    homes = {}
    for user in range(12):
        result = client.calls(target, 20, metadata=[["x-user", f"user-{user}"]])
        assert result["errors"] == {}
        assert len(result["by"]) == 1, result["by"]  # every call of one user to one instance
        homes[user] = next(iter(result["by"]))
    assert len(set(homes.values())) >= 2  # and users spread over instances


# --- what the registry holds, and the control plane going away ----------------------------------------------


def test_an_instance_registered_by_host_name_is_sent_as_an_address(
    service_name: str, stock_clients: Callable[..., StockClient], register: Callable[..., object]
) -> None:
    """gRPC refuses a whole endpoint set holding a host name: the server resolves names before sending."""
    backend = Backend(f"{service_name}-named")
    try:
        from tests.helpers import grpc_check

        register(service=service_name, address="localhost", port=backend.port, check=grpc_check(1000),
                 instance_id=f"{service_name}-named")
        client = stock_clients()
        ready(client, f"xds:///{service_name}", {f"{service_name}-named"})
    finally:
        backend.stop()


def test_clients_keep_their_config_while_the_control_plane_restarts(
    consul: object, service_name: str, tmp_path: object
) -> None:
    from pathlib import Path

    import grpc

    from controlplane.v1 import config_pb2_grpc, registry_pb2, registry_pb2_grpc
    from tests.helpers import ControlPlaneProcess, grpc_check

    log = Path(str(tmp_path)) / "cp.log"
    first = ControlPlaneProcess(consul.http_addr, log_path=log).start()  # type: ignore[attr-defined]
    backends = [Backend(f"{service_name}-{n}") for n in ("a", "b")]
    client = StockClient(first.address)
    second = None
    try:
        with grpc.insecure_channel(first.address) as channel:
            registry = registry_pb2_grpc.RegistryServiceStub(channel)
            for backend in backends:
                registry.Register(registry_pb2.RegisterRequest(
                    service=service_name, instance_id=backend.name, address="127.0.0.1", port=backend.port,
                    version="0.1.0" if backend.name.endswith("a") else "0.2.0", check=grpc_check(1000)), timeout=5)
        target = f"xds:///{service_name}"
        ready(client, target, {b.name for b in backends})
        first.kill()
        result = client.calls(target, 100)
        assert result["errors"] == {} and set(result["by"]) == {b.name for b in backends}
        second = ControlPlaneProcess(consul.http_addr, port=first.port, log_path=log).start()  # type: ignore[attr-defined]
        with grpc.insecure_channel(second.address) as channel:
            set_policy(config_pb2_grpc.ConfigServiceStub(channel), service_name,
                       {"split": [{"version": "0.2.0", "weight": 1}]}, expected=0)
        # The client finds the new process by itself and follows what it now says.
        wait_until(lambda: set(client.calls(target, 10)["by"]) == {f"{service_name}-b"}, timeout=20,
                   what="the restarted control plane's policy to reach the client")
    finally:
        client.stop()
        for backend in backends:
            backend.stop()
        for process in (first, second):
            if process is not None:
                process.kill()


def test_with_consul_gone_clients_old_and_new_get_the_last_good_endpoints(tmp_path: object) -> None:
    """Never an empty endpoint set because Consul cannot be reached: the view keeps what Consul last said."""
    from pathlib import Path

    import grpc

    from controlplane.consul.local_agent import LocalConsul
    from controlplane.v1 import registry_pb2, registry_pb2_grpc
    from tests.helpers import ControlPlaneProcess, grpc_check

    agent = LocalConsul(data_dir=Path(str(tmp_path)) / "consul").start()
    control_plane = ControlPlaneProcess(agent.http_addr, log_path=Path(str(tmp_path)) / "cp.log").start()
    backends = [Backend(f"kept-{n}") for n in ("a", "b")]
    clients = [StockClient(control_plane.address)]
    try:
        with grpc.insecure_channel(control_plane.address) as channel:
            registry = registry_pb2_grpc.RegistryServiceStub(channel)
            for backend in backends:
                registry.Register(registry_pb2.RegisterRequest(
                    service="kept", instance_id=backend.name, address="127.0.0.1", port=backend.port,
                    check=grpc_check(1000)), timeout=5)
        target = "xds:///kept"
        ready(clients[0], target, {"kept-a", "kept-b"})
        agent.kill()
        clients.append(StockClient(control_plane.address, node_id="late-client"))
        for client in clients:
            result = client.calls(target, 50, wait_for_ready=True)
            assert result["errors"] == {} and set(result["by"]) == {"kept-a", "kept-b"}
    finally:
        for client in clients:
            client.stop()
        for backend in backends:
            backend.stop()
        control_plane.kill()
        agent.destroy()


def test_outlier_detection_ejects_a_failing_instance(
    service_name: str, backends: Callable[..., Backend], stock_clients: Callable[..., StockClient], config: object
) -> None:
    """No retries here: only ejection can keep calls away from the instance that fails them all."""
    import grpc

    failing = backends(service_name, f"{service_name}-failing")
    backends(service_name, f"{service_name}-good")
    client = stock_clients()
    target = f"xds:///{service_name}"
    ready(client, target, {f"{service_name}-failing", f"{service_name}-good"})
    set_policy(config, service_name, {"outlier_detection": {
        "interval_seconds": 0.5, "failure_percentage_threshold": 50, "request_volume": 10, "minimum_hosts": 2,
        "base_ejection_seconds": 60, "max_ejection_percent": 50}}, expected=0)
    failing.fail_with = grpc.StatusCode.UNAVAILABLE
    wait_until(lambda: client.calls(target, 20)["by"] == {f"{service_name}-good": 20}, timeout=15,
               what="the failing instance to be ejected")
    calls_before = failing.calls
    result = client.calls(target, 100)
    assert result["errors"] == {} and result["by"] == {f"{service_name}-good": 100}
    assert failing.calls == calls_before
