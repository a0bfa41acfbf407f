"""`controlplane config set`: key=value edits on one layer, keeping the rest of it."""

from __future__ import annotations

import subprocess
import sys
from concurrent import futures

import grpc
import pytest
from google.protobuf import json_format

from controlplane.cli.config_cmd import apply_edits, parse_edit, set_
from controlplane.v1 import config_pb2, config_pb2_grpc
from tests.helpers import ROOT


def cli(control_plane: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "controlplane", "--control-plane", control_plane, *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )


def test_values_parse_as_json_and_fall_back_to_strings():
    assert parse_edit("a.b=1") == (["a", "b"], 1)
    assert parse_edit("flag=true") == (["flag"], True)
    assert parse_edit("name=payments east") == (["name"], "payments east")
    with pytest.raises(ValueError):
        parse_edit("no-equals-sign")


def test_edits_create_nested_keys_and_keep_siblings():
    assert apply_edits({"faults": {"latency_ms": 5}, "x": 1}, ["faults.failure_rate=0.5"]) == {
        "faults": {"latency_ms": 5, "failure_rate": 0.5},
        "x": 1,
    }


def test_config_set_changes_one_key_of_an_environment_layer_and_keeps_the_others(control_plane, channel):
    service = "cli-config-demo"
    first = cli(control_plane.address, "config", "set", service, "--env", "dev", "faults.latency_ms=5", "name=east")
    assert first.returncode == 0, first.stderr
    second = cli(control_plane.address, "config", "set", service, "--env", "dev", "faults.failure_rate=1")
    assert second.returncode == 0, second.stderr
    stub = config_pb2_grpc.ConfigServiceStub(channel)
    reply = stub.GetConfig(config_pb2.GetConfigRequest(service=service, environment="dev"), timeout=10)
    assert json_format.MessageToDict(reply.document.content) == {
        "faults": {"latency_ms": 5.0, "failure_rate": 1.0},
        "name": "east",
    }
    shown = cli(control_plane.address, "config", "get", service, "--env", "dev")
    assert shown.returncode == 0 and '"failure_rate": 1.0' in shown.stdout


def test_config_get_of_an_unknown_service_fails_with_the_status(control_plane):
    done = cli(control_plane.address, "config", "get", "never-configured")
    assert done.returncode == 1
    assert "NOT_FOUND" in done.stderr


class LostAnswers(config_pb2_grpc.ConfigServiceServicer):
    """A config service whose first SetConfig is applied but answered DEADLINE_EXCEEDED, as a write Consul
    applied after the control plane stopped waiting for it."""

    def __init__(self) -> None:
        self.version, self.content, self.writes = 0, {}, 0

    def GetConfig(self, request, context):
        if not self.version:
            context.abort(grpc.StatusCode.NOT_FOUND, "no config")
        return config_pb2.GetConfigResponse(layer_versions={request.environment: self.version})

    def GetVersion(self, request, context):
        response = config_pb2.GetVersionResponse()
        response.document.content.update(self.content)
        return response

    def SetConfig(self, request, context):
        if request.expected_version != self.version:
            context.abort(grpc.StatusCode.ABORTED, "version moved")
        self.writes += 1
        self.version, self.content = self.version + 1, json_format.MessageToDict(request.content)
        if self.writes == 1:
            context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, "Consul did not answer the write in time")
        return config_pb2.SetConfigResponse()


def test_a_write_whose_answer_was_lost_is_read_back_not_written_twice(capsys):
    servicer = LostAnswers()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    config_pb2_grpc.add_ConfigServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            assert set_(channel, "payment", "dev", ["faults.failure_rate=1"], "") == 0
    finally:
        server.stop(0)
    assert servicer.writes == 1
    assert servicer.content == {"faults": {"failure_rate": 1}}
    assert "the write was applied" in capsys.readouterr().out
