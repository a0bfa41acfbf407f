"""`controlplane config get|set`: read a merged document, change one layer with key=value edits."""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable, Sequence
from typing import Any

import grpc
from google.protobuf import json_format

from controlplane.v1 import config_pb2, config_pb2_grpc

CAS_ATTEMPTS = 5
RETRY_PAUSE = 0.5  # seconds before re-reading after an answer that left the outcome open


def parse_edit(edit: str) -> tuple[list[str], Any]:
    """'a.b=1' -> (['a', 'b'], 1). Values are JSON when they parse as JSON, else strings."""
    key, sep, raw = edit.partition("=")
    if not sep or not key:
        raise ValueError(f"expected KEY=VALUE, got {edit!r}")
    try:
        value = json.loads(raw)
    except ValueError:
        value = raw
    return key.split("."), value


def apply_edits(document: dict[str, Any], edits: Sequence[str]) -> dict[str, Any]:
    for edit in edits:
        path, value = parse_edit(edit)
        node = document
        for part in path[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        node[path[-1]] = value
    return document


def get(channel: grpc.Channel, service: str, environment: str) -> int:
    stub = config_pb2_grpc.ConfigServiceStub(channel)
    reply = stub.GetConfig(config_pb2.GetConfigRequest(service=service, environment=environment), timeout=10)
    doc = reply.document
    print(f"# {service} ({environment or 'default'}), version {doc.version}, by {doc.author or '-'}")
    print(json.dumps(json_format.MessageToDict(doc.content), indent=2, sort_keys=True))
    return 0


def set_(channel: grpc.Channel, service: str, environment: str, edits: Sequence[str], message: str) -> int:
    """Apply KEY=VALUE edits to the layer (see `update_layer`)."""
    return update_layer(channel, service, environment, lambda layer: apply_edits(layer, edits),
                        message or "set " + ", ".join(edits))


def update_layer(channel: grpc.Channel, service: str, environment: str,
                 change: Callable[[dict[str, Any]], dict[str, Any]], message: str) -> int:
    """Write `change(layer)` to the layer, compare-and-set on its version; re-read and retry on a lost race,
    and after an answer that leaves the outcome open (UNAVAILABLE, DEADLINE_EXCEEDED): the re-read shows
    whether the write was applied, and the compare-and-set makes a retry safe either way. `change` gets a
    fresh copy of the layer each attempt and must give the same answer for the same layer."""
    stub = config_pb2_grpc.ConfigServiceStub(channel)
    wanted: dict[str, Any] | None = None
    for attempt in range(CAS_ATTEMPTS):
        version, layer = _layer(stub, service, environment)
        if wanted is not None and layer == wanted:
            print(f"{service} ({environment or 'default'}) is now version {version} (the write was applied; "
                  "its answer was lost)")
            return 0
        request = config_pb2.SetConfigRequest(
            service=service,
            environment=environment,
            expected_version=version,
            author="controlplane-cli",
            message=message,
        )
        changed = change(copy.deepcopy(layer))
        request.content.update(changed)
        try:
            written = stub.SetConfig(request, timeout=10).document
        except grpc.RpcError as exc:
            unsure = exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
            if (exc.code() == grpc.StatusCode.ABORTED or unsure) and attempt + 1 < CAS_ATTEMPTS:
                wanted = changed if unsure else None
                if unsure:
                    time.sleep(RETRY_PAUSE)
                continue
            raise
        print(f"{service} ({environment or 'default'}) is now version {written.version}")
        return 0
    return 1


def _layer(stub: config_pb2_grpc.ConfigServiceStub, service: str, environment: str) -> tuple[int, dict[str, Any]]:
    """The layer's current version (0: none yet) and its own content."""
    try:
        merged = stub.GetConfig(config_pb2.GetConfigRequest(service=service, environment=environment), timeout=10)
    except grpc.RpcError as exc:
        if exc.code() == grpc.StatusCode.NOT_FOUND:
            return 0, {}
        raise
    version = merged.layer_versions.get(environment, 0)
    if not version:
        return 0, {}
    written = stub.GetVersion(config_pb2.GetVersionRequest(service=service, version=version), timeout=10)
    return version, json_format.MessageToDict(written.document.content)
