"""`controlplane serve`'s saga flags: a bad count is a usage error before anything starts."""

from __future__ import annotations

import pytest

from controlplane.settings import ServerSettings


@pytest.mark.parametrize("value", ["0", "-3", "x", "", "10001", "9" * 400, "1\x00"])
def test_a_max_watches_out_of_range_or_not_a_number_is_refused_with_a_usage_error(
    value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        ServerSettings.from_args(["--saga-max-watches", value], env={})
    assert exit_.value.code == 2
    assert "argument --saga-max-watches:" in capsys.readouterr().err


def test_max_watches_reaches_the_saga_settings() -> None:
    assert ServerSettings.from_args(["--saga-max-watches", "7"], env={}).saga.max_watches == 7


def test_a_bad_count_from_the_environment_is_a_usage_error_too(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        ServerSettings.from_args([], env={"CONTROLPLANE_SAGA_MAX_WATCHES": "0"})
    assert exit_.value.code == 2
    assert "argument --saga-max-watches:" in capsys.readouterr().err
    assert ServerSettings.from_args([], env={"CONTROLPLANE_SAGA_MAX_WATCHES": "9"}).saga.max_watches == 9
