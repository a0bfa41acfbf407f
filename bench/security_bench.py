"""Security benchmark: what mTLS and the authorization interceptor add to a control-plane call.

Run: `make bench` or `.venv/bin/python bench/security_bench.py` (about 30 s). Starts its own Consul agent and
three control planes on loopback (plaintext; mTLS; mTLS with the authorization policy), and calls Discover on
each, interleaved, over one long-lived channel per server (a handshake per connection, not per call). Figures
are ratios to the plaintext call in the same rounds, because these machines are noisy.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import grpc

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the bench reuses the tests' process helpers

from controlplane.client import ClientTLS, connect  # noqa: E402
from controlplane.consul.local_agent import LocalConsul  # noqa: E402
from controlplane.security.devcerts import LocalCA, spiffe_id  # noqa: E402
from controlplane.v1 import registry_pb2, registry_pb2_grpc  # noqa: E402
from tests.helpers import ControlPlaneProcess, ttl  # noqa: E402

ROUNDS = 20
CALLS_PER_ROUND = 200
WARMUP = 300
AIM_MTLS = 1.15  # mTLS: the cipher on ~200-byte messages, a few percent of a loopback round trip
AIM_AUTHZ = 1.10  # the interceptor: an identity read and a rule looked up


class _Context:
    """What the interceptor reads of a call: the verified peer and the metadata."""

    def __init__(self, identity: str) -> None:
        self._auth = {"peer_spiffe_id": [identity.encode()], "transport_security_type": [b"ssl"]}

    def auth_context(self) -> dict[str, list[bytes]]:
        return self._auth

    def invocation_metadata(self) -> tuple[()]:
        return ()


def admit_cpu_us() -> float:
    """CPU of the authorization check itself per call (no network): a service reading its own config."""
    import asyncio

    from controlplane.security.authz import Authorization
    from controlplane.security.policy import Policy, rule_for
    from controlplane.v1 import config_pb2

    async def run() -> float:
        async def owner(_: str) -> str | None:
            return None

        authz = Authorization(Policy(), owner)
        method = "/controlplane.v1.ConfigService/GetConfig"
        rule, request, context = rule_for(method), config_pb2.GetConfigRequest(service="bench"), _Context(
            spiffe_id("service", "bench"))
        best = float("inf")
        for _ in range(5):
            began = time.perf_counter()
            for _ in range(20_000):
                await authz._admit(method, rule, request, context)  # type: ignore[arg-type]
            best = min(best, (time.perf_counter() - began) / 20_000 * 1e6)
        return best

    return asyncio.run(run())


def main() -> int:
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        ca = LocalCA(folder / "ca")
        server = ca.issue("controlplane", [spiffe_id("service", "controlplane")])
        client = ca.issue("bench", [spiffe_id("service", "bench")])
        tls = ClientTLS(str(ca.cert_path), str(client.cert), str(client.key))
        policy = folder / "authz.yaml"
        policy.write_text("operators: []\n")
        tls_args = ["--tls-cert", str(server.cert), "--tls-key", str(server.key), "--tls-client-ca", str(ca.cert_path)]
        consul = LocalConsul(data_dir=folder / "consul").start()
        planes = {
            "plaintext": ControlPlaneProcess(consul.http_addr),
            "mTLS": ControlPlaneProcess(consul.http_addr, extra_args=tls_args, tls=tls),
            "mTLS + authorization": ControlPlaneProcess(consul.http_addr,
                                                        extra_args=[*tls_args, "--authz-policy", str(policy)],
                                                        tls=tls),
        }
        try:
            for plane in planes.values():
                plane.start()
            # A registered service: Discover is answered from the watch cache, not by a Consul query each time.
            with grpc.insecure_channel(planes["plaintext"].address) as channel:
                registry_pb2_grpc.RegistryServiceStub(channel).Register(registry_pb2.RegisterRequest(
                    service="bench", address="127.0.0.1", port=7400, check=ttl(600)), timeout=5)
            calls = {}
            for name, plane in planes.items():
                channel = connect(plane.address, credentials=tls if plane.tls else None).channel()
                stub = registry_pb2_grpc.RegistryServiceStub(channel)
                calls[name] = lambda stub=stub: stub.Discover(registry_pb2.DiscoverRequest(service="bench"), timeout=5)
            for call in calls.values():
                for _ in range(WARMUP):
                    call()
            per_round: dict[str, list[float]] = {name: [] for name in calls}
            for number in range(ROUNDS):
                names = list(calls)
                names = names[number % len(names):] + names[:number % len(names)]
                for name in names:
                    began = time.perf_counter()
                    for _ in range(CALLS_PER_ROUND):
                        calls[name]()
                    per_round[name].append((time.perf_counter() - began) / CALLS_PER_ROUND * 1e6)
        finally:
            for plane in planes.values():
                plane.kill()
            consul.destroy()
    base = per_round["plaintext"]
    print(f"security benchmark: Discover on loopback, {ROUNDS} rounds x {CALLS_PER_ROUND} calls, interleaved")
    ratios = {}
    for name, times in per_round.items():
        ratios[name] = statistics.median(t / b for t, b in zip(times, base, strict=True))
        print(f"  {name:24s} {statistics.median(times):8.1f} µs/call {ratios[name]:7.3f}x")
    mtls = ratios["mTLS"]
    authz = ratios["mTLS + authorization"] / ratios["mTLS"]
    print(f"  mTLS vs plaintext {mtls:.3f}x (aim <= {AIM_MTLS}x: {'met' if mtls <= AIM_MTLS else 'NOT met'}); "
          f"authorization interceptor vs mTLS alone {authz:.3f}x (aim <= {AIM_AUTHZ}x: "
          f"{'met' if authz <= AIM_AUTHZ else 'NOT met'})")
    print(f"  the authorization check alone, no network: {admit_cpu_us():.1f} µs of CPU per call")
    print(f"done in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
