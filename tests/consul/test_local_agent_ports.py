"""The ports a throwaway Consul agent is given: never one port for two of its listeners."""

from __future__ import annotations

from pathlib import Path

from controlplane.consul.local_agent import LocalConsul, free_port, free_ports


def test_ports_picked_together_are_all_different() -> None:
    for _ in range(50):
        ports = free_ports("127.0.0.1", 6)
        assert len(set(ports)) == 6


def test_an_agent_never_gets_one_port_for_two_listeners(tmp_path: Path) -> None:
    """Picked one after another, two listeners could get the same port, and Consul then refuses to start
    ("Serf Advertise LAN address ... already configured for HTTP", seen in CI)."""
    for n in range(30):
        given = free_port()
        agent = LocalConsul(data_dir=tmp_path / str(n), http_port=given)
        agent.pick_ports()
        ports = [agent.http_port, agent.server_port, agent.serf_lan_port]
        assert agent.http_port == given and len(set(ports)) == 3
