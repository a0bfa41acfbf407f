"""JSON Schema patterns run on RE2, whose matching time is linear in the input: no pattern can stall us.

Python's `re` backtracks: `^(a+)+$` against 28 `a`s and a `!` takes seconds, on the event loop. The
`jsonschema` package calls `re.search` for `pattern`, `patternProperties`, `additionalProperties` and
`unevaluatedProperties`, and `re.compile` for the `regex` format (the meta-schema's check of every
pattern). `install()` points the `re` name of exactly those jsonschema modules at this module, which
answers the same two calls with RE2 (Google's engine, through the `google-re2` package) and leaves
everything else in `re` as it is.

RE2 refuses what cannot run in linear time (back-references, look-around): such a pattern is not a
valid pattern here, and SetSchema says so. Compiled patterns are cached; RE2 bounds each pattern's
memory (`max_mem`), so a huge pattern is refused rather than compiled.
"""

from __future__ import annotations

import functools
import re
from typing import Any

import re2

# Attributes jsonschema reads from `re` besides search/compile.
error = re.error
ASCII = re.ASCII
IGNORECASE = re.IGNORECASE
VERBOSE = re.VERBOSE
MAX_PATTERN = 1000
_OPTIONS = re2.Options()
_OPTIONS.log_errors = False  # RE2 would print every refused pattern to stderr
_OPTIONS.max_mem = 4 << 20


class UnsupportedPattern(re.error):
    """A pattern RE2 cannot run (or that is too large); raised as `re.error` so callers' handling applies."""


def compile(pattern: str, flags: int = 0) -> Any:
    """The RE2 program for `pattern`, or UnsupportedPattern saying why."""
    if not isinstance(pattern, str):
        raise UnsupportedPattern(f"a pattern is a string, got {type(pattern).__name__}")
    return _compile(pattern, flags)


@functools.lru_cache(maxsize=2048)
def _compile(pattern: str, flags: int) -> Any:
    if len(pattern) > MAX_PATTERN:
        raise UnsupportedPattern(f"patterns are at most {MAX_PATTERN} characters, got {len(pattern)}")
    if flags:
        raise UnsupportedPattern("flags are not supported")
    try:
        return re2.compile(pattern, _OPTIONS)
    except re2.error as exc:
        reason = exc.args[0].decode(errors="replace") if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        raise UnsupportedPattern(f"not a pattern RE2 can run in linear time: {reason}") from None


def search(pattern: str, string: str, flags: int = 0) -> Any:
    return compile(pattern, flags).search(string)


def install() -> None:
    """Make jsonschema's keyword and format modules use RE2 for patterns (idempotent)."""
    from jsonschema import _format, _keywords, _legacy_keywords, _utils

    for module in (_format, _keywords, _legacy_keywords, _utils):
        module.re = _this()  # type: ignore[attr-defined]


def _this() -> Any:
    import sys

    return sys.modules[__name__]
