"""EvaluateFlag gives the same answers as the client library's local evaluation, from the same module."""

from __future__ import annotations

import grpc
import pytest

from controlplane.config.client import ConfigClient
from controlplane.config.flags import evaluate
from controlplane.errors import field_violations
from controlplane.v1 import config_pb2
from tests.config.conftest import set_config

FLAGS = {
    "flags": {
        "checkout": {
            "rules": [
                {"match": {"country": ["NL", "BE"]}, "enabled": True},
                {"match": {"plan": "free"}, "enabled": False},
            ],
            "rollout": 30,
        },
        "dark-mode": True,
    }
}


def rpc(stub, service: str, flag: str, subject: str = "", environment: str = "", **attributes: str):
    request = config_pb2.EvaluateFlagRequest(
        service=service, environment=environment, flag=flag, subject_key=subject, attributes=attributes
    )
    return stub.EvaluateFlag(request, timeout=5)


def test_rpc_and_local_evaluation_agree_for_every_subject(control_plane, config, service):
    set_config(config, service, FLAGS)
    cases = [(f"user-{i}", {}) for i in range(150)] + [
        ("user-1", {"country": "NL"}),
        ("user-2", {"plan": "free"}),
        ("", {}),
        ("user-3", {"country": "DE", "plan": "pro"}),
    ]
    with ConfigClient(service, "prod", control_plane.address) as client:
        for subject, attributes in cases:
            answer = rpc(config, service, "checkout", subject, "prod", **attributes)
            local = client.evaluate_flag("checkout", subject, attributes)
            assert (answer.enabled, answer.reason) == (local.enabled, local.reason), (subject, attributes)
            assert answer.version == client.version == 1
    enabled = sum(rpc(config, service, "checkout", f"user-{i}").enabled for i in range(150))
    assert 20 < enabled < 70  # about 30% of 150


def test_bucketing_is_stable_across_calls_and_environment_overrides_apply(config, service):
    set_config(config, service, FLAGS)
    first = [rpc(config, service, "checkout", f"user-{i}").enabled for i in range(40)]
    assert first == [rpc(config, service, "checkout", f"user-{i}").enabled for i in range(40)]
    set_config(config, service, {"flags": {"checkout": {"rollout": 100}}}, environment="prod")
    assert all(rpc(config, service, "checkout", f"user-{i}", "prod").enabled for i in range(40))
    assert [rpc(config, service, "checkout", f"user-{i}").enabled for i in range(40)] == first


def test_reasons_cover_unknown_disabled_targeted_rollout_and_default(config, service):
    set_config(config, service, {**FLAGS, "flags": {**FLAGS["flags"], "off": False}})
    assert rpc(config, service, "nope").reason == "unknown_flag"
    assert rpc(config, service, "off").reason == "disabled"
    assert rpc(config, service, "checkout", "u", country="BE").reason == "targeted"
    assert rpc(config, service, "checkout", "u").reason == "rollout"
    assert rpc(config, service, "dark-mode").reason == "default"
    assert evaluate(FLAGS, "dark-mode").reason == "default"


def test_a_flag_of_an_unconfigured_service_is_unknown_at_version_zero(config, service):
    answer = rpc(config, service, "anything", "u")
    assert (answer.enabled, answer.reason, answer.version) == (False, "unknown_flag", 0)


def test_an_invalid_flag_name_is_invalid_argument(config, service):
    with pytest.raises(grpc.RpcError) as failure:
        rpc(config, service, "")
    assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.parametrize(("subject", "attributes", "field"), [
    ("s" * 513, {}, "subject_key"),
    ("", {f"a{n}": "x" for n in range(65)}, "attributes"),
    ("", {"plan": "p" * 513}, "attributes['plan']"),
    ("", {"": "pro"}, "attributes['']"),
])
def test_a_subject_larger_than_any_rule_could_use_is_invalid_argument(config, service, subject, attributes, field):
    set_config(config, service, FLAGS)
    with pytest.raises(grpc.RpcError) as failure:
        rpc(config, service, "new-checkout", subject, **attributes)
    assert failure.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert [v.field for v in field_violations(failure.value)] == [field]
    assert rpc(config, service, "new-checkout", "s" * 512, **{"k" * 128: "v" * 512}).reason  # at the limits: fine
