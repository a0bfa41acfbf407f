"""Client side of the registry: how a service registers itself and finds others."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

import grpc
from google.protobuf import duration_pb2

from controlplane import endpoints
from controlplane.v1 import registry_pb2, registry_pb2_grpc

log = logging.getLogger(__name__)


@dataclass
class SelfRegistration:
    """Registers this process's gRPC server with the control plane, with a gRPC health check.

    `control_plane`: one address or several, comma-separated (see controlplane.endpoints).

    `register()` retries until the control plane answers (up to `startup_timeout` seconds), then keeps
    the registration asserted: every `reassert_interval` seconds it registers again (the same address and
    port keep their instance id, so this changes nothing while Consul has it), so an instance Consul lost
    (an agent restarted empty, a catalog rebuilt) is back within that long. 0 registers once.
    `deregister()` stops that and removes the instance, e.g. on SIGTERM.
    """

    control_plane: str
    service: str
    address: str
    port: int
    version: str = ""
    tags: tuple[str, ...] = ()
    metadata: dict[str, str] = field(default_factory=dict)
    check_interval: float = 1.0
    startup_timeout: float = 30.0
    instance_id: str = ""
    reassert_interval: float = 5.0
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _keeper: threading.Thread | None = field(default=None, repr=False)

    def register(self) -> registry_pb2.Instance:
        with endpoints.channel(self.control_plane) as channel:
            instance = self._register_until_answered(registry_pb2_grpc.RegistryServiceStub(channel),
                                                     self.startup_timeout)
        if self.reassert_interval > 0 and self._keeper is None:
            self._stop.clear()
            self._keeper = threading.Thread(target=self._keep, name=f"registration:{self.service}", daemon=True)
            self._keeper.start()
        return instance

    def _keep(self) -> None:
        with endpoints.channel(self.control_plane) as channel:  # one channel for every re-assertion
            stub = registry_pb2_grpc.RegistryServiceStub(channel)
            while not self._stop.wait(self.reassert_interval):
                try:
                    self._register_until_answered(stub, 0)
                except grpc.RpcError as exc:
                    log.warning("re-asserting %s's registration failed (%s); trying again in %.0fs", self.service,
                                exc.code().name, self.reassert_interval)

    def _register_until_answered(self, stub: registry_pb2_grpc.RegistryServiceStub,
                                 timeout: float) -> registry_pb2.Instance:
        request = registry_pb2.RegisterRequest(
            service=self.service,
            instance_id=self.instance_id,
            address=self.address,
            port=self.port,
            version=self.version,
            tags=list(self.tags),
            metadata=self.metadata,
            check=registry_pb2.HealthCheck(grpc=registry_pb2.GrpcHealthCheck(interval=_duration(self.check_interval))),
        )
        deadline = time.monotonic() + timeout
        delay = 0.1
        while True:
            try:
                instance = stub.Register(request, timeout=5.0).instance
                if instance.instance_id != self.instance_id:
                    log.info("registered %s as %s", self.service, instance.instance_id)
                self.instance_id = instance.instance_id
                return instance
            except grpc.RpcError as exc:
                retryable = exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
                if not retryable or time.monotonic() + delay > deadline:
                    raise
                log.info("control plane not ready (%s); retrying in %.1fs", exc.code().name, delay)
                time.sleep(delay)
                delay = min(delay * 2, 2.0)

    def deregister(self) -> None:
        self._stop.set()
        if self._keeper is not None:
            self._keeper.join(timeout=10)
            self._keeper = None
        if not self.instance_id:
            return
        with endpoints.channel(self.control_plane) as channel:
            stub = registry_pb2_grpc.RegistryServiceStub(channel)
            try:
                stub.Deregister(registry_pb2.DeregisterRequest(instance_id=self.instance_id), timeout=5.0)
                log.info("deregistered %s", self.instance_id)
            except grpc.RpcError as exc:
                if exc.code() != grpc.StatusCode.NOT_FOUND:
                    log.warning("could not deregister %s: %s", self.instance_id, exc.details())


def _duration(seconds: float) -> duration_pb2.Duration:
    value = duration_pb2.Duration()
    value.FromNanoseconds(int(seconds * 1e9))
    return value
