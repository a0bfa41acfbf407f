"""The order service's ORDER_OUTBOX_INTERVAL: a bad value stops the service with a message, not a traceback."""

from __future__ import annotations

import pytest

from services.order.__main__ import outbox_interval


def test_a_good_interval_is_used_and_the_default_is_one_second() -> None:
    assert outbox_interval({"ORDER_OUTBOX_INTERVAL": "0.5"}) == 0.5
    assert outbox_interval({}) == 1.0


@pytest.mark.parametrize("value", ["nan", "inf", "0", "-1", "x", "", "3601"])
def test_a_bad_interval_stops_the_service_naming_the_variable(value: str) -> None:
    with pytest.raises(SystemExit, match=r"^order: ORDER_OUTBOX_INTERVAL (must be 0\.01\.\.3600 seconds|not a number)"):
        outbox_interval({"ORDER_OUTBOX_INTERVAL": value})
