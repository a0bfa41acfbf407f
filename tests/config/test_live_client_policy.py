"""A service's client policy in its ConfigService document applies to its running channels, live.

Real control plane and Consul; the called service is a loopback test server. Change notifications are
events (a callback on the config client), so the tests wait on them, never on the clock.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import grpc
import pytest

from controlplane.config.client import ConfigClient
from controlplane.interceptors import BreakerOpen, LivePolicy, State, client_interceptors
from controlplane.v1 import config_pb2
from controlplane.watch import Backoff
from tests.config.conftest import set_config
from tests.helpers import ROOT
from tests.interceptors.servers import UNARY, Behavior, sync_served

FAST = Backoff(initial=0.05, maximum=0.5)


def followed(client: ConfigClient, live: LivePolicy) -> threading.Event:
    """Set each time the live policy has taken a new document version in."""
    applied = threading.Event()
    live.on_change(lambda policy: applied.set())
    live.follow(client)
    return applied


def cli(control_plane: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "controlplane", "--control-plane", control_plane, *args],
                          capture_output=True, text=True, cwd=ROOT, timeout=60)


def test_a_set_config_changes_the_deadline_of_running_calls_within_a_second(control_plane, config, service):
    behavior = Behavior()
    live = LivePolicy()
    with ConfigClient(service, "", control_plane.address, backoff=FAST) as client:
        applied = followed(client, live)
        with sync_served(behavior, client_interceptors(live, tracing=False)) as channel:
            unary = channel.unary_unary(UNARY)
            unary(b"x")
            applied.clear()
            written = time.monotonic()
            set_config(config, service, {"client_policy": {"deadlines": {"default_timeout": 1.5}}})
            assert applied.wait(5)
            took = time.monotonic() - written
            unary(b"x")
    assert took < 1.0, f"applied {took:.3f} s after the SetConfig was acknowledged"
    first, second = behavior.time_remaining
    assert first > 29 and second <= 1.5 * 1.01


def test_an_operator_forces_a_breaker_open_and_resets_it_from_the_cli(control_plane, config, service):
    behavior = Behavior()
    live = LivePolicy()
    with ConfigClient(service, "", control_plane.address, backoff=FAST) as client:
        applied = followed(client, live)
        with sync_served(behavior, client_interceptors(live, tracing=False)) as channel:
            unary = channel.unary_unary(UNARY)
            assert unary(b"x") == b"x"
            applied.clear()
            forced = cli(control_plane.address, "breaker", service, "test.Echo", "force-open")
            assert forced.returncode == 0, forced.stderr
            assert applied.wait(5)
            with pytest.raises(grpc.RpcError) as refused:
                unary(b"x")
            cause = refused.value.cause  # type: ignore[attr-defined]
            assert isinstance(cause, BreakerOpen) and cause.state is State.FORCED_OPEN
            applied.clear()
            reset = cli(control_plane.address, "breaker", service, "test.Echo", "reset")
            assert reset.returncode == 0, reset.stderr
            assert applied.wait(5)
            assert unary(b"x") == b"x"
    assert behavior.calls == 2  # the refused call never reached the server


def test_a_document_the_policy_cannot_take_keeps_the_running_one(control_plane, config, service):
    live = LivePolicy()
    with ConfigClient(service, "", control_plane.address, backoff=FAST) as client:
        set_config(config, service, {"client_policy": {"deadlines": {"default_timeout": 4}}})
        assert client.wait_for_version(1)
        live.follow(client)
        assert live.policy.deadlines is not None and live.policy.deadlines.default_timeout == 4
        seen = threading.Event()  # callbacks run in order: this one runs after the live policy's
        client.on_change(lambda snapshot: seen.set() if snapshot.version == 2 else None)
        set_config(config, service, {"client_policy": {"deadlines": {"default_timeout": "soon"}}}, expected=1)
        assert seen.wait(5)
    assert live.policy.deadlines.default_timeout == 4


def test_the_cli_refuses_an_open_for_without_seconds(control_plane, service):
    done = cli(control_plane.address, "breaker", service, "test.Echo", "open-for")
    assert done.returncode == 2 and "open-for takes SECONDS" in done.stderr


@pytest.mark.parametrize("target", ["pkg S", "a" * 400, "pkg.S/"])
def test_the_cli_refuses_what_is_not_a_breaker_target_and_writes_nothing(control_plane, config, service, target):
    done = cli(control_plane.address, "breaker", service, target, "force-open")
    assert done.returncode == 2 and "is not a breaker target" in done.stderr
    with pytest.raises(grpc.RpcError) as missing:
        config.GetConfig(config_pb2.GetConfigRequest(service=service), timeout=5)
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND
