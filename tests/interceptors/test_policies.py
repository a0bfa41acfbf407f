"""Policies: defaults, construction from plain dicts/JSON, and clear errors for bad settings."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import grpc
import pytest

from controlplane.interceptors import (
    BreakerPolicy,
    BulkheadPolicy,
    ClientPolicy,
    DeadlinePolicy,
    RetryPolicy,
    RetryThrottling,
    channel_options,
    service_config,
)

REPO = Path(__file__).resolve().parents[2]


def test_importing_the_interceptors_pulls_in_neither_consul_nor_the_otel_sdk() -> None:
    probe = textwrap.dedent(
        """
        import sys
        import controlplane.interceptors
        heavy = [m for m in sys.modules if m.split(".")[0] == "consul"
                 or m.startswith(("opentelemetry.sdk", "opentelemetry.instrumentation", "controlplane.v1"))]
        print(heavy)
        """
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True, cwd=REPO, env=env
    )
    assert result.stdout.strip() == "[]"


def test_default_breaker_counts_server_trouble_but_not_client_errors() -> None:
    codes = BreakerPolicy().failure_codes
    trouble = {"UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", "INTERNAL", "UNKNOWN"}
    assert {c.name for c in codes} == trouble
    for client_error in ("INVALID_ARGUMENT", "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED"):
        assert grpc.StatusCode[client_error] not in codes


def test_breaker_policy_from_dict_takes_status_names_in_any_case() -> None:
    policy = BreakerPolicy.from_dict(
        {"failure_codes": ["unavailable", "INTERNAL"], "window": "time", "window_size": 30, "wait_in_open": 2}
    )
    assert policy.failure_codes == {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.INTERNAL}
    assert (policy.window, policy.window_size, policy.wait_in_open) == ("time", 30, 2.0)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"failure_rate_treshold": 0.5}, "unknown BreakerPolicy setting"),
        ({"failure_rate_threshold": 1.5}, "failure_rate_threshold must be a fraction in (0, 1], got 1.5"),
        ({"window": "sliding"}, "window must be one of ['count', 'time']"),
        ({"failure_codes": ["BROKEN"]}, "unknown status code 'BROKEN'"),
        ({"minimum_calls": 2.5}, "minimum_calls must be an integer"),
        ({"wait_in_open": "10s"}, "wait_in_open must be a number"),
    ],
)
def test_breaker_policy_from_dict_rejects_bad_settings_with_a_clear_message(data: dict, message: str) -> None:
    with pytest.raises((ValueError, TypeError)) as error:
        BreakerPolicy.from_dict(data)
    assert message in str(error.value)


def test_deadline_policy_prefers_method_over_service_over_default() -> None:
    policy = DeadlinePolicy.from_dict({"default_timeout": 5, "timeouts": {"pkg.Search": 2, "/pkg.Search/Deep/": 8}})
    assert policy.timeout_for("/pkg.Search/Deep") == 8.0
    assert policy.timeout_for("/pkg.Search/Quick") == 2.0
    assert policy.timeout_for("/pkg.Other/Any") == 5.0
    assert DeadlinePolicy(default_timeout=None).timeout_for("/pkg.Other/Any") is None


def test_deadline_policy_rejects_non_positive_and_infinite_timeouts() -> None:
    with pytest.raises(ValueError, match=r"timeouts\['pkg.S'\] must be a finite number of seconds > 0"):
        DeadlinePolicy(timeouts={"pkg.S": 0})
    for bad in (float("inf"), float("nan"), -1.0):
        with pytest.raises(ValueError, match="default_timeout must be a finite number"):
            DeadlinePolicy(default_timeout=bad)
        with pytest.raises(ValueError, match="timeouts"):
            DeadlinePolicy(timeouts={"pkg.S/M": bad})


def test_streams_and_methods_named_none_get_no_default_deadline() -> None:
    policy = DeadlinePolicy(default_timeout=5.0, timeouts={"pkg.S/Watch": None, "pkg.S/Slow": 60.0})
    assert policy.timeout_for("/pkg.S/Get") == 5.0
    assert policy.timeout_for("/pkg.S/Get", streaming=True) is None  # a response stream: none by default
    assert policy.timeout_for("/pkg.S/Watch") is None  # "no deadline for this method"
    assert policy.timeout_for("/pkg.S/Slow", streaming=True) == 60.0  # named: applies to streams too
    assert DeadlinePolicy(stream_timeout=600.0).timeout_for("/pkg.S/Follow", streaming=True) == 600.0
    assert DeadlinePolicy.from_dict({"timeouts": {"pkg.S/Watch": None}}).timeout_for("/pkg.S/Watch") is None


def test_bulkhead_policy_from_dict() -> None:
    assert BulkheadPolicy.from_dict({"max_concurrent": 3, "max_wait": 0.25}) == BulkheadPolicy(3, 0.25)
    with pytest.raises(ValueError, match="max_concurrent must be >= 1"):
        BulkheadPolicy(max_concurrent=0)


def test_client_policy_from_json_keeps_defaults_and_switches_off_null_sections() -> None:
    policy = ClientPolicy.from_json(
        json.dumps({"breaker": None, "bulkhead": {"max_concurrent": 7}, "retry": {"idempotent_methods": ["a.B"]}})
    )
    assert policy.breaker is None
    assert policy.deadlines == DeadlinePolicy()
    assert policy.bulkhead == BulkheadPolicy(max_concurrent=7)
    assert policy.retry == RetryPolicy(idempotent_methods=("a.B",))


def test_retry_service_config_names_only_idempotent_methods() -> None:
    policy = RetryPolicy(
        idempotent_methods=("pkg.Orders/Get", "pkg.Catalog"),
        max_attempts=4,
        initial_backoff=0.05,
        max_backoff=2,
        backoff_multiplier=3,
        retryable_codes=("unavailable", "RESOURCE_EXHAUSTED"),
        throttling=RetryThrottling(max_tokens=20, token_ratio=0.25),
    )
    assert service_config(policy) == {
        "methodConfig": [
            {
                "name": [{"service": "pkg.Orders", "method": "Get"}, {"service": "pkg.Catalog"}],
                "retryPolicy": {
                    "maxAttempts": 4,
                    "initialBackoff": "0.05s",
                    "maxBackoff": "2s",
                    "backoffMultiplier": 3.0,
                    "retryableStatusCodes": ["UNAVAILABLE", "RESOURCE_EXHAUSTED"],
                },
            }
        ],
        "retryThrottling": {"maxTokens": 20, "tokenRatio": 0.25},
    }


def test_channel_options_carry_the_service_config_as_json() -> None:
    options = dict(channel_options(ClientPolicy(retry=RetryPolicy(idempotent_methods=("a.B/C",)))))
    assert options["grpc.enable_retries"] == 1
    assert json.loads(options["grpc.service_config"])["methodConfig"][0]["name"] == [{"service": "a.B", "method": "C"}]
    assert channel_options(ClientPolicy()) == []


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"max_attempts": 6}, "max_attempts must be 2..5"),
        ({"retryable_codes": ("OK",)}, "is not a gRPC error status name"),
        ({"idempotent_methods": ("a/b/c",)}, "is not 'pkg.Service' or 'pkg.Service/Method'"),
        ({"initial_backoff": 0}, "initial_backoff must be > 0 seconds"),
    ],
)
def test_retry_policy_rejects_configs_grpc_would_ignore(settings: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RetryPolicy(**settings)
