"""Stock grpcio clients (sync and asyncio), configured by a bootstrap alone, governed by the control plane."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.helpers import wait_until
from tests.xds.conftest import Backend, StockClient


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
