"""Participant methods by name: request and response classes from the protobuf descriptor pool.

The orchestrator calls any unary method generically; it needs only the message classes, which the
descriptors of the imported generated modules provide. The demo protos are importable by default;
more modules can be named in settings.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

from google.protobuf import descriptor_pool, message_factory
from google.protobuf.descriptor import Descriptor, MethodDescriptor
from google.protobuf.message import Message

DEFAULT_PROTO_MODULES = (
    "demo.inventory.v1.inventory_pb2",
    "demo.payment.v1.payment_pb2",
    "demo.order.v1.order_pb2",
    "demo.user.v1.user_pb2",
)


class UnknownMethod(LookupError):
    """No unary method of that name is known."""


@dataclass(frozen=True)
class MethodSpec:
    """A unary gRPC method and its message classes."""

    path: str  # "/pkg.Service/Method"
    request_type: type[Message]
    response_type: type[Message]

    @property
    def request_descriptor(self) -> Descriptor:
        return self.request_type.DESCRIPTOR

    @property
    def response_descriptor(self) -> Descriptor:
        return self.response_type.DESCRIPTOR


def load_proto_modules(modules: Iterable[str] = DEFAULT_PROTO_MODULES) -> None:
    """Import generated modules so their descriptors are in the default pool."""
    for name in modules:
        importlib.import_module(name)


@lru_cache(maxsize=1024)
def resolve(path: str) -> MethodSpec:
    """The MethodSpec of "/pkg.Service/Method"; UnknownMethod says what is wrong."""
    load_proto_modules()
    service_name, _, method_name = path.removeprefix("/").partition("/")
    if not path.startswith("/") or not service_name or not method_name:
        raise UnknownMethod(f"must look like /package.Service/Method, got {path!r}")
    pool = descriptor_pool.Default()
    try:
        service = pool.FindServiceByName(service_name)
    except KeyError:
        raise UnknownMethod(f"unknown service {service_name!r} (its generated module is not loaded)") from None
    method: MethodDescriptor | None = service.methods_by_name.get(method_name)
    if method is None:
        known = ", ".join(sorted(service.methods_by_name))
        raise UnknownMethod(f"{service_name} has no method {method_name!r}; it has {known}")
    if method.client_streaming or method.server_streaming:
        raise UnknownMethod(f"{path} is a streaming method; saga steps call unary methods")
    return MethodSpec(
        path=f"/{service_name}/{method_name}",
        request_type=message_factory.GetMessageClass(method.input_type),
        response_type=message_factory.GetMessageClass(method.output_type),
    )
