"""controlplane.text: cutting texts and reading decimal numbers and ports that clients and operators send."""

from __future__ import annotations

import pytest

from controlplane.text import cut, decimal, tcp_port


@pytest.mark.parametrize(("text", "digits", "expected"), [
    ("0", 5, 0), ("65535", 5, 65535), ("00080", 5, 80), ("123456", 5, None), ("", 5, None), ("²", 5, None),
    ("٣", 5, None), ("1" * 5000, 18, None), ("-1", 5, None), ("+1", 5, None), (" 1", 5, None), ("1_0", 5, None),
    ("\uff11", 5, None),  # a fullwidth digit one
])
def test_decimal_reads_only_short_runs_of_ascii_digits(text: str, digits: int, expected: int | None) -> None:
    assert decimal(text, digits) == expected


def test_cut_keeps_short_texts_and_ends_long_ones_with_an_ellipsis() -> None:
    assert cut("abc", 3) == "abc"
    assert cut("abcd", 3) == "ab…" and len(cut("x" * 10_000, 512)) == 512


@pytest.mark.parametrize(("text", "lowest", "expected"), [
    ("1", 1, 1), ("65535", 1, 65535), ("0", 1, None), ("0", 0, 0), ("65536", 0, None), ("99999", 1, None),
    ("²", 1, None), ("", 0, None), ("8080 ", 1, None),
])
def test_tcp_port_is_ascii_digits_in_range(text: str, lowest: int, expected: int | None) -> None:
    assert tcp_port(text, lowest) == expected
