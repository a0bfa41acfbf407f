"""A grpc.Channel to every passing instance of a service, kept current by a registry Watch.

gRPC Python cannot plug in a custom name resolver, but gRPC core resolves an `ipv4:` target with a list of
addresses and balances over it with `round_robin`. So this channel follows the instance set with one
RegistryService.Watch stream and, when the set changes, swaps in a new underlying channel for that set;
calls already running on the old one finish there. While the control plane is away, the last known set
keeps serving. Interceptors compose as usual: `grpc.intercept_channel(DiscoveryChannel(...), *interceptors)`.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

import grpc

from controlplane import endpoints
from controlplane.client.connection import Connection, as_connection
from controlplane.interceptors import ClientPolicy, LivePolicy, LocalRpcError, channel_options
from controlplane.v1 import registry_pb2, registry_pb2_grpc

log = logging.getLogger(__name__)

Address = tuple[str, int]


class NoInstancesError(LocalRpcError):
    """Raised at once, without touching the network, when no passing instance is known (UNAVAILABLE)."""

    def __init__(self, service: str) -> None:
        super().__init__(grpc.StatusCode.UNAVAILABLE, f"no passing instance of {service!r} is registered")


def target_for(addresses: Sequence[Address]) -> str:
    """The gRPC target that balances over `addresses` (IPs: one ipv4:/ipv6: list; a host name: dns)."""
    if not addresses:
        raise ValueError("no addresses")
    try:
        ips = [ipaddress.ip_address(host) for host, _ in addresses]
    except ValueError:
        host, port = addresses[0]
        return f"dns:///{host}:{port}"
    if all(ip.version == 4 for ip in ips):
        return "ipv4:" + ",".join(f"{host}:{port}" for host, port in addresses)
    return "ipv6:" + ",".join(f"[{host}]:{port}" for host, port in addresses)


class DiscoveryChannel(grpc.Channel):
    """Dial `service` by name through the control plane at `control_plane` (host:port).

    `options` are passed to every underlying channel (e.g. a `grpc.service_config` with retries);
    `round_robin` balancing is the default. `version`, `tags` and `metadata` narrow the instances.
    `first_set_timeout` bounds how long the constructor waits for the first instance set (seconds);
    `retire_after` is how long a replaced channel stays open for calls still running on it (seconds);
    `reconnect_backoff` is the longest pause between Watch reconnects (seconds).
    """

    def __init__(
        self,
        service: str,
        control_plane: str | Connection,
        *,
        options: Sequence[tuple[str, Any]] = (),
        version: str = "",
        tags: Sequence[str] = (),
        metadata: dict[str, str] | None = None,
        first_set_timeout: float = 5.0,
        retire_after: float = 30.0,
        reconnect_backoff: float = 2.0,
    ) -> None:
        self.service = service
        self._options = [("grpc.lb_policy_name", "round_robin"), *options]
        self._request = registry_pb2.WatchRequest(
            service=service,
            filter=registry_pb2.InstanceFilter(version=version, tags=list(tags), metadata=metadata or {}),
        )
        self._retire_after = retire_after
        self._max_backoff = reconnect_backoff
        self._lock = threading.Lock()
        self._addresses: tuple[Address, ...] = ()
        self._channel: grpc.Channel | None = None
        self._first_set = threading.Event()
        self._closed = threading.Event()
        connection = as_connection(control_plane)
        self._credentials = connection.credentials  # the instances are called over the same TLS
        self._registry_channel = connection.channel()
        self._watch_call: Any = None
        self._thread = threading.Thread(target=self._follow, name=f"discovery:{service}", daemon=True)
        self._thread.start()
        self._first_set.wait(first_set_timeout)

    @property
    def addresses(self) -> tuple[Address, ...]:
        """The instance addresses calls are balanced over now."""
        return self._addresses

    def current(self) -> grpc.Channel:
        """The underlying channel for the current instance set; NoInstancesError when there is none."""
        channel = self._channel
        if channel is None:
            raise NoInstancesError(self.service)
        return channel

    def _follow(self) -> None:
        backoff = 0.05
        stub = registry_pb2_grpc.RegistryServiceStub(self._registry_channel)
        while not self._closed.is_set():
            try:
                self._watch_call = stub.Watch(self._request)
                for event in self._watch_call:
                    backoff = 0.05
                    self._apply(tuple((i.address, i.port) for i in event.instances))
            except grpc.RpcError as exc:
                if self._closed.is_set():
                    return
                log.info("discovery of %s: watch ended (%s); keeping %d known instances",
                         self.service, exc.code().name, len(self._addresses))
            self._first_set.set()  # do not make a constructor wait for a control plane that is away
            self._closed.wait(backoff)
            backoff = min(backoff * 2, self._max_backoff)

    def set_options(self, options: Sequence[tuple[str, Any]]) -> None:
        """New channel options (a changed retry policy, say) from the next call on: the underlying channel is
        remade with them; calls running on the old one finish there (it closes after `retire_after`)."""
        with self._lock:
            self._options = [("grpc.lb_policy_name", "round_robin"), *options]
            self._replace(self._addresses)

    def follow(self, live: LivePolicy) -> Callable[[], None]:
        """Remake the underlying channel whenever the live policy's retries change; returns a function that
        stops following."""
        current = [channel_options(live)]

        def changed(policy: ClientPolicy) -> None:
            options = channel_options(policy)
            if options != current[0]:
                current[0] = options
                self.set_options(options)

        return live.on_change(changed)

    def _replace(self, addresses: tuple[Address, ...]) -> None:
        """Under the lock: a channel for `addresses` with the current options; the old one retires."""
        old = self._channel
        self._addresses = addresses
        self._channel = (endpoints.dial(target_for(addresses), self._credentials, options=self._options)
                         if addresses else None)
        if old is not None:
            timer = threading.Timer(self._retire_after, old.close)
            timer.daemon = True
            timer.start()

    def _apply(self, addresses: tuple[Address, ...]) -> None:
        addresses = tuple(sorted(addresses))
        with self._lock:
            if addresses != self._addresses:
                self._replace(addresses)
                log.info("discovery of %s: %d instances", self.service, len(addresses))
        self._first_set.set()

    # grpc.Channel

    def unary_unary(self, method: str, *args: Any, **kwargs: Any) -> _Lazy:
        return _Lazy(self, "unary_unary", method, args, kwargs)

    def unary_stream(self, method: str, *args: Any, **kwargs: Any) -> _Lazy:
        return _Lazy(self, "unary_stream", method, args, kwargs)

    def stream_unary(self, method: str, *args: Any, **kwargs: Any) -> _Lazy:
        return _Lazy(self, "stream_unary", method, args, kwargs)

    def stream_stream(self, method: str, *args: Any, **kwargs: Any) -> _Lazy:
        return _Lazy(self, "stream_stream", method, args, kwargs)

    def subscribe(self, callback: Callable[[grpc.ChannelConnectivity], None], try_to_connect: bool = False) -> None:
        self.current().subscribe(callback, try_to_connect)

    def unsubscribe(self, callback: Callable[[grpc.ChannelConnectivity], None]) -> None:
        if self._channel is not None:
            self._channel.unsubscribe(callback)

    def close(self) -> None:
        self._closed.set()
        if self._watch_call is not None:
            self._watch_call.cancel()
        self._registry_channel.close()
        with self._lock:
            if self._channel is not None:
                self._channel.close()
            self._channel = None

    def __enter__(self) -> DiscoveryChannel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Lazy:
    """A multi-callable bound at call time to the channel of the current instance set."""

    __slots__ = ("_args", "_bound", "_kind", "_kwargs", "_method", "_owner")

    def __init__(self, owner: DiscoveryChannel, kind: str, method: str, args: tuple[Any, ...], kwargs: dict) -> None:
        self._owner, self._kind, self._method, self._args, self._kwargs = owner, kind, method, args, kwargs
        self._bound: tuple[grpc.Channel, Any] | None = None

    def _target(self) -> Any:
        channel = self._owner.current()
        bound = self._bound
        if bound is None or bound[0] is not channel:
            bound = (channel, getattr(channel, self._kind)(self._method, *self._args, **self._kwargs))
            self._bound = bound
        return bound[1]

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._target()(*args, **kwargs)

    def with_call(self, *args: Any, **kwargs: Any) -> Any:
        return self._target().with_call(*args, **kwargs)

    def future(self, *args: Any, **kwargs: Any) -> Any:
        return self._target().future(*args, **kwargs)

