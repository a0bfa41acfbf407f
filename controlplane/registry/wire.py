"""Instances as the RegistryService answers them, and what one costs in an answer."""

from __future__ import annotations

from controlplane.registry.model import Instance
from controlplane.v1 import registry_pb2

__all__ = ["answer_bytes", "instance_to_proto"]

# A repeated message field's tag (1 byte) and length (at most 4 bytes for 256 MiB) around each instance.
_FRAMING = 5


def instance_to_proto(instance: Instance) -> registry_pb2.Instance:
    return registry_pb2.Instance(
        service=instance.service,
        instance_id=instance.instance_id,
        address=instance.address,
        port=instance.port,
        version=instance.version,
        tags=list(instance.tags),
        metadata=dict(instance.metadata),
        health=int(instance.health),
    )


def answer_bytes(instance: Instance) -> int:
    """Bytes `instance` adds to a Discover answer or a Watch message (its encoding and framing)."""
    return instance_to_proto(instance).ByteSize() + _FRAMING
