"""WatchConfig: the current document first, then every change, pushed from Consul blocking queries."""

from __future__ import annotations

import time

import grpc
import pytest

from controlplane.v1 import config_pb2
from tests.config.conftest import StreamReader, content_of, set_config, set_schema


def watch(stub, service: str, environment: str = "", **extra: object) -> StreamReader:
    request = config_pb2.WatchConfigRequest(service=service, environment=environment, **extra)
    return StreamReader(stub.WatchConfig(request, timeout=60))


def test_watch_sends_the_current_document_then_each_change(config, service):
    set_config(config, service, {"pool": 5})
    reader = watch(config, service, "prod")
    first = reader.next()
    assert (content_of(first.document), first.document.version, dict(first.layer_versions)) == ({"pool": 5}, 1, {"": 1})
    set_config(config, service, {"pool": 9}, environment="prod")
    second = reader.next()
    assert (content_of(second.document), second.document.version) == ({"pool": 9}, 2)
    set_config(config, service, {"pool": 5, "extra": True}, expected=1)
    assert content_of(reader.next().document) == {"pool": 9, "extra": True}
    reader.close()


def test_a_watch_of_an_unconfigured_service_starts_with_an_empty_version_zero(config, service):
    reader = watch(config, service)
    first = reader.next()
    assert (first.document.version, content_of(first.document)) == (0, {})
    set_config(config, service, {"a": 1})
    assert reader.next().document.version == 1
    reader.close()


def test_changes_that_do_not_change_the_watched_document_are_not_sent(config, service):
    set_config(config, service, {"a": 1})
    reader = watch(config, service, "prod")
    reader.next()
    set_config(config, service, {"b": 1}, environment="dev")  # another environment
    set_schema(config, service, {"type": "object"})  # the schema
    assert reader.nothing_within(0.5)
    set_config(config, service, {"c": 1}, environment="prod")
    assert content_of(reader.next().document) == {"a": 1, "c": 1}
    reader.close()


def test_many_streams_of_one_service_all_receive_each_change_quickly(config, service):
    set_config(config, service, {"n": 0})
    readers = [watch(config, service, env) for env in ("", "prod", "dev") for _ in range(10)]
    for reader in readers:
        reader.next()
    start = time.monotonic()
    set_config(config, service, {"n": 1}, expected=1)
    for reader in readers:
        assert content_of(reader.next().document) == {"n": 1}
    assert time.monotonic() - start < 2.0
    for reader in readers:
        reader.close()


def test_watch_with_an_invalid_name_is_invalid_argument(config):
    reader = watch(config, "Not A Name")
    with pytest.raises(grpc.RpcError) as failure:
        reader.next()
    assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT
