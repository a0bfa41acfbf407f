"""A real Consul cluster on loopback: three servers (127.0.0.1-3) and client agents (127.0.0.4, ...).

Each control-plane replica in these tests runs against its own client agent, as in a deployment with an
agent per node; killing a server (the leader, say) forces an election among the other two.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from controlplane.consul.local_agent import LocalConsul
from tests.helpers import wait_until

SERVERS = 3


@dataclass
class ConsulCluster:
    folder: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="consul-cluster-")))
    clients: int = 2
    raft_multiplier: int = 1
    servers: list[LocalConsul] = field(default_factory=list)
    agents: list[LocalConsul] = field(default_factory=list)

    def start(self) -> ConsulCluster:
        self.servers = [LocalConsul(data_dir=self.folder / f"server-{i + 1}", bind=f"127.0.0.{i + 1}",
                                    node=f"server-{i + 1}", bootstrap_expect=SERVERS,
                                    raft_multiplier=self.raft_multiplier) for i in range(SERVERS)]
        for server in self.servers:  # every port first, so each can name the others to join
            server.pick_ports()
        for server in self.servers:
            server.retry_join = [other.serf_addr for other in self.servers if other is not server]
            server.start(wait=False)
        for server in self.servers:
            server.wait_ready(60)
        self.agents = [LocalConsul(data_dir=self.folder / f"agent-{i + 1}", bind=f"127.0.0.{SERVERS + i + 1}",
                                   node=f"agent-{i + 1}", server=False,
                                   retry_join=[s.serf_addr for s in self.servers]).start(timeout=60)
                       for i in range(self.clients)]
        return self

    def leader(self, timeout: float = 30) -> LocalConsul:
        """The live server that leads now, as the live servers agree (waits out an election)."""
        def ask() -> LocalConsul | None:
            answers = set()
            for server in self.servers:
                if server.pid is None:
                    continue
                try:
                    with urllib.request.urlopen(f"http://{server.http_addr}/v1/status/leader", timeout=1) as reply:
                        answers.add(str(json.loads(reply.read() or b'""')))
                except OSError:
                    return None
            if len(answers) != 1:
                return None
            host, _, port = answers.pop().rpartition(":")
            return next((s for s in self.servers if (s.bind, str(s.server_port)) == (host, port) and s.pid), None)

        return wait_until(ask, timeout, what="a Consul leader the live servers agree on")

    def stop(self) -> None:
        for agent in [*self.agents, *self.servers]:
            agent.stop()
        shutil.rmtree(self.folder, ignore_errors=True)
