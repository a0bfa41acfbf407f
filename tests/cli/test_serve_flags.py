"""`controlplane serve`'s numeric flags: a value out of range or not a number is a usage error (exit 2,
argparse's message naming the flag) before anything starts, whether it came as a flag or from the
environment variable that defaults it; and every default still parses."""

from __future__ import annotations

import dataclasses

import pytest

from controlplane.flags import seconds, whole
from controlplane.settings import ServerSettings

# flag -> (its environment variable, a good value, bad values beyond the ones every flag refuses)
NUMERIC_FLAGS = {
    "--consul-timeout": ("CONTROLPLANE_CONSUL_TIMEOUT", "2.5", ["0", "601"]),
    "--consul-probe-interval": ("CONTROLPLANE_CONSUL_PROBE_INTERVAL", "0.1", ["0"]),
    "--consul-probe-timeout": ("CONTROLPLANE_CONSUL_PROBE_TIMEOUT", "0.5", ["0"]),
    "--blocking-wait": ("CONTROLPLANE_BLOCKING_WAIT", "30", ["0", "601"]),
    "--retry-max": ("CONTROLPLANE_RETRY_MAX", "0.2", ["0"]),
    "--shutdown-grace": ("CONTROLPLANE_SHUTDOWN_GRACE", "0", ["3601"]),
    "--max-concurrent-rpcs": ("CONTROLPLANE_MAX_CONCURRENT_RPCS", "2", ["0", "1000001", "1.5"]),
    "--saga-session-ttl": ("CONTROLPLANE_SAGA_SESSION_TTL", "12", ["9.9", "86401"]),
    "--saga-liveness-ttl": ("CONTROLPLANE_SAGA_LIVENESS_TTL", "0", ["0.01"]),
    "--saga-group-commit-window": ("CONTROLPLANE_SAGA_GROUP_COMMIT_WINDOW", "0", ["1.5"]),
    "--saga-group-commit-max-ops": ("CONTROLPLANE_SAGA_GROUP_COMMIT_MAX_OPS", "64", ["0", "65", "1.5"]),
    "--saga-group-commit-max-inflight": ("CONTROLPLANE_SAGA_GROUP_COMMIT_MAX_INFLIGHT", "1", ["0", "1001"]),
    "--saga-snapshot-every": ("CONTROLPLANE_SAGA_SNAPSHOT_EVERY", "1", ["0"]),
    "--saga-takeover-interval": ("CONTROLPLANE_SAGA_TAKEOVER_INTERVAL", "0.001", ["0"]),
    "--saga-max-watches": ("CONTROLPLANE_SAGA_MAX_WATCHES", "7", ["0", "10001"]),
    "--saga-retry-max": ("CONTROLPLANE_SAGA_RETRY_MAX", "0.2", ["0"]),
    "--saga-definitions-reassert": ("CONTROLPLANE_SAGA_DEFINITIONS_REASSERT", "1", ["0"]),
    "--saga-compensation-breaker-wait": ("CONTROLPLANE_SAGA_COMPENSATION_BREAKER_WAIT", "0", []),
    "--config-history": ("CONTROLPLANE_CONFIG_HISTORY", "3", ["0", "1000001", "1.5"]),
    "--max-streams": ("CONTROLPLANE_MAX_STREAMS", "5", ["1000001", "1.5"]),
    "--max-streams-per-caller": ("CONTROLPLANE_MAX_STREAMS_PER_CALLER", "4", ["1000001", "1.5"]),
    "--saga-max-driving": ("CONTROLPLANE_SAGA_MAX_DRIVING", "3", ["0", "1000001", "1.5"]),
    "--saga-max-driving-per-caller": ("CONTROLPLANE_SAGA_MAX_DRIVING_PER_CALLER", "7", ["1000001", "1.5"]),
    "--saga-retention": ("CONTROLPLANE_SAGA_RETENTION", "0", ["0.5", str(3651 * 86400)]),
    "--saga-sweep-interval": ("CONTROLPLANE_SAGA_SWEEP_INTERVAL", "0.5", ["0", "0.05"]),
}
REFUSED_BY_EVERY_FLAG = ["x", "", "nan", "inf", "-inf", "-1", "1e999", "9" * 400, "1\x00"]

CASES = [(flag, bad) for flag, (_, _, own) in NUMERIC_FLAGS.items() for bad in REFUSED_BY_EVERY_FLAG + own]


def _usage_error(argv: list[str], env: dict[str, str], capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as exit_:
        ServerSettings.from_args(argv, env=env)
    assert exit_.value.code == 2
    return capsys.readouterr().err


@pytest.mark.parametrize(("flag", "value"), CASES)
def test_a_bad_number_as_a_flag_is_a_usage_error(flag: str, value: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert f"argument {flag}:" in _usage_error([flag, value], {}, capsys)


@pytest.mark.parametrize(("flag", "value"), CASES)
def test_a_bad_number_from_the_environment_is_a_usage_error(
    flag: str, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    variable = NUMERIC_FLAGS[flag][0]
    assert f"argument {flag}:" in _usage_error([], {variable: value}, capsys)


def test_good_values_reach_the_settings_from_flags_and_from_the_environment() -> None:
    argv = [part for flag, (_, good, _) in NUMERIC_FLAGS.items() for part in (flag, good)]
    env = {variable: good for variable, good, _ in NUMERIC_FLAGS.values()}
    for settings in (ServerSettings.from_args(argv, env={}), ServerSettings.from_args([], env=env)):
        assert settings.consul_timeout == 2.5
        assert settings.max_concurrent_rpcs == 2
        assert (settings.max_streams, settings.max_streams_per_caller) == (5, 4)
        assert settings.config.history == 3
        assert settings.cache.blocking_wait == 30.0
        assert settings.saga.session_ttl == 12.0
        assert settings.saga.liveness_ttl == 0.0
        assert settings.saga.group_commit_max_ops == 64
        assert settings.saga.max_watches == 7
        assert settings.saga.consul_backoff.maximum == 0.2
        assert (settings.saga.max_driving, settings.saga.retention, settings.saga.sweep_interval) == (3, 0.0, 0.5)
        assert settings.saga.max_driving_per_caller == 7
        assert settings.saga.caller_share == 3  # never more than the replica's own cap


def test_one_callers_share_of_a_replica_is_half_its_cap_unless_given() -> None:
    shares = [ServerSettings.from_args(argv, env={}).saga.caller_share for argv in (
        [], ["--saga-max-driving", "1"], ["--saga-max-driving", "9"],
        ["--saga-max-driving", "9", "--saga-max-driving-per-caller", "9"])]
    assert shares == [2500, 1, 4, 9]


def test_with_nothing_given_the_settings_are_the_defaults() -> None:
    defaults = ServerSettings()
    assert ServerSettings.from_args([], env={}) == dataclasses.replace(defaults, consul_advertise=defaults.consul_addr)


@pytest.mark.parametrize("text", ["\u0663", "\uff11", "1" * 5000, "\u0663.5"])
def test_the_types_read_ascii_numbers_only(text: str) -> None:
    with pytest.raises(Exception, match="not a whole number"):
        whole(1, 10**6)(text)
    with pytest.raises(Exception, match="not a number of seconds"):
        seconds(0, 10**6)(text)


def test_the_types_name_the_allowed_range() -> None:
    with pytest.raises(Exception, match=r"must be 0 or 0\.1\.\.86400 seconds"):
        seconds(0.1, zero=True)("0.05")
    with pytest.raises(Exception, match=r"must be 1\.\.64"):
        whole(1, 64)("65")


@pytest.mark.parametrize("value", ["0", "-3", "x", "100001"])
def test_saga_list_refuses_a_limit_out_of_range_before_calling_anyone(
    value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from controlplane.cli import main

    with pytest.raises(SystemExit) as exit_:
        main(["--control-plane", "127.0.0.1:1", "saga", "list", "--limit", value])
    assert exit_.value.code == 2
    assert "argument --limit:" in capsys.readouterr().err
