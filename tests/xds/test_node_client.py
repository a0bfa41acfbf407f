"""The polyglot proof: a stock Node client (@grpc/grpc-js with @grpc/grpc-js-xds) governed by the same server."""

from __future__ import annotations

from collections.abc import Callable

from tests.xds.conftest import Backend, StockClient, ready, set_policy


def test_node_discovers_round_robins_and_follows_a_canary_split(
    service_name: str, backends: Callable[..., Backend], stock_clients: Callable[..., StockClient], config: object
) -> None:
    backends(service_name, f"{service_name}-stable", version="0.1.0")
    backends(service_name, f"{service_name}-canary", version="0.2.0")
    client = stock_clients("node")
    target = f"xds:///{service_name}"
    ready(client, target, {f"{service_name}-stable", f"{service_name}-canary"})
    result = client.calls(target, 100)
    assert result["errors"] == {}
    assert result["by"] == {f"{service_name}-stable": 50, f"{service_name}-canary": 50}
    set_policy(config, service_name, {"split": [{"version": "0.2.0", "weight": 10},
                                                {"version": "0.1.0", "weight": 90}]}, expected=0)
    from tests.helpers import wait_until

    wait_until(lambda: client.calls(target, 200)["by"].get(f"{service_name}-canary", 0) < 50, timeout=10,
               what="the split to reach the Node client")
    result = client.calls(target, 1000)
    assert result["errors"] == {}
    assert abs(result["by"][f"{service_name}-canary"] - 100) <= 50, result["by"]


def test_node_honours_fault_injection_and_retries(
    service_name: str, backends: Callable[..., Backend], stock_clients: Callable[..., StockClient], config: object
) -> None:
    import grpc

    failing = backends(service_name, f"{service_name}-failing")
    backends(service_name, f"{service_name}-good")
    client = stock_clients("node")
    target = f"xds:///{service_name}"
    ready(client, target, {f"{service_name}-failing", f"{service_name}-good"})
    failing.fail_with = grpc.StatusCode.UNAVAILABLE
    set_policy(config, service_name, {"retry": {"codes": ["UNAVAILABLE"], "max_attempts": 3}}, expected=0)
    from tests.helpers import wait_until

    wait_until(lambda: not client.calls(target, 20)["errors"], timeout=10, what="retries to reach the Node client")
    result = client.calls(target, 100)
    assert result["errors"] == {} and result["by"] == {f"{service_name}-good": 100}
    set_policy(config, service_name, {"fault": {"abort": {"code": "PERMISSION_DENIED", "percent": 100}}}, expected=1)
    wait_until(lambda: client.calls(target, 5)["errors"] == {"PERMISSION_DENIED": 5}, timeout=10,
               what="the abort fault to reach the Node client")
