"""Client side of the registry: how a service registers itself and finds others."""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Literal

import grpc
from google.protobuf import duration_pb2

from controlplane.client.connection import Connection, as_connection
from controlplane.v1 import registry_pb2, registry_pb2_grpc

log = logging.getLogger(__name__)


@dataclass
class SelfRegistration:
    """Registers this process's gRPC server with the control plane, with a health check.

    `control_plane`: one address or several, comma-separated (see controlplane.endpoints).
    `check`: "grpc" (Consul calls the server's grpc.health.v1 every `check_interval` seconds) or "ttl"
    (the instance turns critical unless a heartbeat arrives within `ttl` seconds; this object sends one
    every `ttl / 3` seconds from its keeper thread). `deregister_critical_after`: Consul removes an
    instance that stayed critical this long (a crashed process that never deregistered); None never.

    `register()` retries until the control plane answers (up to `startup_timeout` seconds), then keeps
    the registration asserted: every `reassert_interval` seconds it registers again (the same address and
    port keep their instance id, so this changes nothing while Consul has it), so an instance Consul lost
    (an agent restarted empty, a catalog rebuilt) is back within that long. 0 registers once.
    `deregister()` stops that and removes the instance, e.g. on SIGTERM.
    """

    control_plane: str | Connection
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
    check: Literal["grpc", "ttl"] = "grpc"
    ttl: float = 10.0
    deregister_critical_after: float | None = 60.0
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _beats: int = field(default=0, repr=False)
    _keeper: threading.Thread | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.check not in ("grpc", "ttl"):
            raise ValueError(f"check must be 'grpc' or 'ttl', got {self.check!r}")
        if self.check == "ttl" and not 1 <= self.ttl <= 86_400:
            raise ValueError(f"ttl must be 1..86400 seconds, got {self.ttl}")
        if self.deregister_critical_after is not None and not 60 <= self.deregister_critical_after <= 30 * 86_400:
            raise ValueError("deregister_critical_after must be 60 s (Consul's minimum) .. 30 days, or None")

    def register(self) -> registry_pb2.Instance:
        with as_connection(self.control_plane).channel() as channel:
            instance = self._register_until_answered(registry_pb2_grpc.RegistryServiceStub(channel),
                                                     self.startup_timeout)
        if (self.reassert_interval > 0 or self.check == "ttl") and self._keeper is None:
            self._stop.clear()
            self._keeper = threading.Thread(target=self._keep, name=f"registration:{self.service}", daemon=True)
            self._keeper.start()
        return instance

    def _keep(self) -> None:
        """Heartbeats (TTL checks) and re-assertions, on one channel, until `deregister()`."""
        beat = self.ttl / 3 if self.check == "ttl" else None
        reassert = self.reassert_interval if self.reassert_interval > 0 else None
        step = min(s for s in (beat, reassert) if s is not None)
        beat_due = time.monotonic()  # the first heartbeat at the first wake-up
        reassert_due = beat_due + (reassert or 0.0)
        with as_connection(self.control_plane).channel() as channel:
            stub = registry_pb2_grpc.RegistryServiceStub(channel)
            while not self._stop.wait(step):
                now = time.monotonic()
                if beat is not None and now >= beat_due:
                    beat_due = now + beat
                    self._heartbeat(stub)
                if reassert is not None and now >= reassert_due:
                    reassert_due = now + reassert
                    try:
                        self._register_until_answered(stub, 0)
                    except grpc.RpcError as exc:
                        log.warning("re-asserting %s's registration failed (%s); trying again in %.0fs",
                                    self.service, exc.code().name, reassert)

    def _heartbeat(self, stub: registry_pb2_grpc.RegistryServiceStub) -> None:
        self._beats += 1
        note = f"heartbeat {self._beats} from pid {os.getpid()}"  # Consul shows it as the check's output
        try:
            stub.Heartbeat(registry_pb2.HeartbeatRequest(instance_id=self.instance_id, note=note), timeout=5.0)
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:  # Consul lost it: register again at once
                try:
                    self._register_until_answered(stub, 0)
                except grpc.RpcError as again:
                    log.warning("re-registering %s failed (%s)", self.service, again.code().name)
            else:
                log.warning("heartbeat of %s failed (%s)", self.instance_id, exc.code().name)

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
            check=self._check(),
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

    def _check(self) -> registry_pb2.HealthCheck:
        check = registry_pb2.HealthCheck()
        if self.check == "ttl":
            check.ttl.ttl.CopyFrom(_duration(self.ttl))
        else:
            check.grpc.interval.CopyFrom(_duration(self.check_interval))
        if self.deregister_critical_after is not None:
            check.deregister_critical_after.CopyFrom(_duration(self.deregister_critical_after))
        return check

    def deregister(self) -> None:
        self._stop.set()
        if self._keeper is not None:
            self._keeper.join(timeout=10)
            self._keeper = None
        if not self.instance_id:
            return
        with as_connection(self.control_plane).channel() as channel:
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
