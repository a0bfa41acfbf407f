"""The client library: a service's live view of its configuration, from the control plane (never Consul).

    client = ConfigClient("payment", "prod", control_plane="127.0.0.1:50051").start()
    pool = client.get("db.pool", 10)
    client.on_change(lambda snapshot: resize_pool(snapshot.get("db.pool", 10)))
    if client.flag_enabled("new-checkout", subject_key=user_id, attributes={"country": "NL"}): ...
    client.stop()

A background thread (a task, for `AsyncConfigClient`) keeps one WatchConfig stream open: the first
message is the current document, then each change. When the control plane goes away (restart, crash,
network), the stream is re-opened with backoff, and meanwhile the client keeps serving the last good
document it received. Flags are evaluated locally with the same module the EvaluateFlag RPC uses, so
both give the same answer for the same document version.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import grpc

from controlplane.client.connection import Connection, as_connection
from controlplane.config import flags
from controlplane.config.wire import from_struct, unix_seconds
from controlplane.v1 import config_pb2, config_pb2_grpc
from controlplane.watch import Backoff

log = logging.getLogger(__name__)

# Answers that retrying cannot fix: reported by start() instead of retried.
PERMANENT_CODES = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.UNAUTHENTICATED,
    }
)
_MISSING = object()


@dataclass(frozen=True)
class ConfigSnapshot:
    """One version of a service's merged config document. Treat `content` as read-only."""

    content: Mapping[str, Any] = field(default_factory=dict)
    version: int = 0  # 0: nothing received yet, or the service has no config
    checksum: str = ""
    author: str = ""
    updated_at: float | None = None  # Unix seconds
    message: str = ""
    layer_versions: Mapping[str, int] = field(default_factory=dict)

    @classmethod
    def from_wire(cls, response: config_pb2.WatchConfigResponse) -> ConfigSnapshot:
        document = response.document
        return cls(
            content=from_struct(document.content),
            version=document.version,
            checksum=document.checksum,
            author=document.author,
            updated_at=unix_seconds(document.updated_at),
            message=document.message,
            layer_versions=dict(response.layer_versions),
        )

    def get(self, path: str, default: Any = None) -> Any:
        """The value at a dotted path ("db.pool"), or `default` when any part is missing."""
        value: Any = self.content
        for part in path.split("."):
            value = value.get(part, _MISSING) if isinstance(value, Mapping) else _MISSING
            if value is _MISSING:
                return default
        return value


class _Follower:
    """The state both client flavours share: the last good snapshot and the change callbacks."""

    def __init__(self) -> None:
        self.snapshot = ConfigSnapshot()
        self.received = False
        self._callbacks: list[Callable[[ConfigSnapshot], None]] = []
        self._changed = threading.Condition()

    def accept(self, response: config_pb2.WatchConfigResponse) -> None:
        snapshot = ConfigSnapshot.from_wire(response)
        with self._changed:
            same = self.received and (snapshot.version, snapshot.checksum) == (
                self.snapshot.version,
                self.snapshot.checksum,
            )
            self.snapshot, self.received = snapshot, True
            self._changed.notify_all()
            callbacks = list(self._callbacks)
        if same:
            return  # a reconnect re-sends the current document: not a change
        for callback in callbacks:
            try:
                callback(snapshot)
            except Exception:  # one faulty callback must not stop the updates
                log.exception("config change callback %r failed", callback)

    def on_change(self, callback: Callable[[ConfigSnapshot], None]) -> Callable[[], None]:
        with self._changed:
            self._callbacks.append(callback)

        def remove() -> None:
            with self._changed, contextlib.suppress(ValueError):
                self._callbacks.remove(callback)

        return remove

    def wait_for_version(self, version: int, timeout: float) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: self.received and self.snapshot.version >= version, timeout)


class _ClientBase:
    def __init__(
        self,
        service: str,
        environment: str = "",
        control_plane: str | Connection = "127.0.0.1:50051",
        *,
        resolve_secrets: bool = False,
        backoff: Backoff | None = None,
    ) -> None:
        self.service = service
        self.environment = environment
        self.control_plane = control_plane
        self._request = config_pb2.WatchConfigRequest(
            service=service, environment=environment, resolve_secrets=resolve_secrets
        )
        self._backoff = backoff or Backoff(initial=0.1, maximum=5.0)
        self._follower = _Follower()
        self._connected = False
        self._fatal: grpc.RpcError | None = None
        self._last_error: grpc.RpcError | None = None

    @property
    def snapshot(self) -> ConfigSnapshot:
        """The last good document (version 0 and empty before the first one arrives)."""
        return self._follower.snapshot

    @property
    def config(self) -> Mapping[str, Any]:
        return self._follower.snapshot.content

    @property
    def version(self) -> int:
        return self._follower.snapshot.version

    @property
    def connected(self) -> bool:
        """True while a WatchConfig stream is open and has delivered the current document."""
        return self._connected

    def get(self, path: str, default: Any = None) -> Any:
        """The value at a dotted path of the current document ("db.pool"), or `default`."""
        return self._follower.snapshot.get(path, default)

    def on_change(self, callback: Callable[[ConfigSnapshot], None]) -> Callable[[], None]:
        """Call `callback(snapshot)` for each new document from now on; returns a function that unregisters it.

        Callbacks run on the client's watch thread (or event loop, for AsyncConfigClient); keep them short.
        """
        return self._follower.on_change(callback)

    def evaluate_flag(
        self, name: str, subject_key: str = "", attributes: Mapping[str, str] | None = None
    ) -> flags.FlagDecision:
        return flags.evaluate(self._follower.snapshot.content, name, subject_key, attributes)

    def flag_enabled(self, name: str, subject_key: str = "", attributes: Mapping[str, str] | None = None) -> bool:
        """Whether flag `name` is on for this subject, evaluated locally (no call to the control plane)."""
        return self.evaluate_flag(name, subject_key, attributes).enabled

    def _no_config_message(self, timeout: float | None) -> str:
        last = self._last_error
        why = f" (last answer: {last.code().name}: {last.details()})" if last is not None else ""
        return f"no config for {self.service} from {self.control_plane} within {timeout}s{why}"

    def _failed(self, error: grpc.RpcError, delay: float) -> bool:
        """Record a failed stream; True when it is permanent and nothing was ever received."""
        self._last_error = error
        code = error.code()
        if code in PERMANENT_CODES and not self._follower.received:
            self._fatal = error
            return True
        log.warning(
            "config of %s/%s: watch failed (%s: %s); serving version %d, retrying in %.1fs",
            self.service,
            self.environment or "default",
            code.name if code else "?",
            error.details(),
            self.version,
            delay,
        )
        return False


class ConfigClient(_ClientBase):
    """Live configuration for a synchronous service, kept by a background thread.

    `backoff` bounds the pauses between reconnects, in seconds.
    """

    def __init__(
        self,
        service: str,
        environment: str = "",
        control_plane: str | Connection = "127.0.0.1:50051",
        *,
        resolve_secrets: bool = False,
        backoff: Backoff | None = None,
    ) -> None:
        super().__init__(service, environment, control_plane, resolve_secrets=resolve_secrets, backoff=backoff)
        self._stopping = threading.Event()
        self._ready = threading.Event()
        self._lock = threading.Lock()
        self._call: Any = None
        self._channel: grpc.Channel | None = None
        self._thread: threading.Thread | None = None

    def start(self, timeout: float | None = 10.0) -> ConfigClient:
        """Start following; wait up to `timeout` seconds for the first document (0: do not wait).

        Raises TimeoutError when none arrived in time, grpc.RpcError when the control plane refused the watch
        (e.g. an invalid service name); the client is stopped then.
        """
        if self._thread is not None:
            return self
        self._channel = as_connection(self.control_plane).channel()
        self._thread = threading.Thread(target=self._run, name=f"config-watch:{self.service}", daemon=True)
        self._thread.start()
        if timeout == 0:
            return self
        self._ready.wait(timeout)
        if self._fatal is not None:
            self.stop()
            raise self._fatal
        if not self._follower.received:
            self.stop()
            raise TimeoutError(self._no_config_message(timeout))
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Close the stream and wait for the thread to end (seconds)."""
        self._stopping.set()
        with self._lock:
            call = self._call
        if call is not None:
            call.cancel()
        if self._thread is not None:
            self._thread.join(timeout)
        if self._channel is not None:
            self._channel.close()

    def wait_for_version(self, version: int, timeout: float = 10.0) -> bool:
        """Block until a document of at least `version` arrived (True) or `timeout` seconds passed (False)."""
        return self._follower.wait_for_version(version, timeout)

    def __enter__(self) -> ConfigClient:
        return self.start() if self._thread is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        assert self._channel is not None
        stub = config_pb2_grpc.ConfigServiceStub(self._channel)
        delay = self._backoff.initial
        while not self._stopping.is_set():
            try:
                call = stub.WatchConfig(self._request)
                with self._lock:
                    self._call = call
                if self._stopping.is_set():
                    call.cancel()
                for response in call:
                    self._follower.accept(response)
                    self._connected = True
                    self._ready.set()
                    delay = self._backoff.initial
                log.info("config of %s: the control plane ended the watch; reconnecting", self.service)
            except grpc.RpcError as error:
                if self._stopping.is_set():
                    break
                if self._failed(error, delay):
                    self._ready.set()
                    return
            finally:
                self._connected = False
            self._stopping.wait(delay)
            delay = self._backoff.next(delay)


class AsyncConfigClient(_ClientBase):
    """Live configuration for an asyncio service, kept by a task on the running loop."""

    def __init__(
        self,
        service: str,
        environment: str = "",
        control_plane: str | Connection = "127.0.0.1:50051",
        *,
        resolve_secrets: bool = False,
        backoff: Backoff | None = None,
    ) -> None:
        super().__init__(service, environment, control_plane, resolve_secrets=resolve_secrets, backoff=backoff)
        self._channel: grpc.aio.Channel | None = None
        self._task: asyncio.Task[None] | None = None
        self._ready: asyncio.Event | None = None

    async def start(self, timeout: float | None = 10.0) -> AsyncConfigClient:
        """As ConfigClient.start, awaiting instead of blocking."""
        self._ready = asyncio.Event()
        self._channel = as_connection(self.control_plane).aio_channel()
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"config-watch:{self.service}")
        if timeout == 0:
            return self
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._ready.wait(), timeout)
        if self._fatal is not None:
            await self.stop()
            raise self._fatal
        if not self._follower.received:
            await self.stop()
            raise TimeoutError(self._no_config_message(timeout))
        return self

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._channel is not None:
            await self._channel.close()

    async def wait_for_version(self, version: int, timeout: float = 10.0) -> bool:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, self._follower.wait_for_version, version, timeout)

    async def __aenter__(self) -> AsyncConfigClient:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _run(self) -> None:
        assert self._channel is not None and self._ready is not None
        stub = config_pb2_grpc.ConfigServiceStub(self._channel)
        delay = self._backoff.initial
        while True:
            try:
                async for response in stub.WatchConfig(self._request):
                    self._follower.accept(response)
                    self._connected = True
                    self._ready.set()
                    delay = self._backoff.initial
                log.info("config of %s: the control plane ended the watch; reconnecting", self.service)
            except grpc.RpcError as error:
                if self._failed(error, delay):
                    self._ready.set()
                    return
            finally:
                self._connected = False
            await asyncio.sleep(delay)
            delay = self._backoff.next(delay)
