"""The one grammar for identifiers that reach Consul (keys, service names, URLs) or gRPC metadata.

Every pattern is matched in full (`fullmatch`): `$` in Python also matches before a final newline,
which let "order\\n" through as a new, distinct and unremovable name. Grammars allow no whitespace and
no control characters and bound the length, so a name is always safe as a Consul key segment, in a
URL path and as a metadata value. `shown()` bounds what an error message echoes of a client's value.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from controlplane.errors import FieldViolation

# Longest part of a client's value an error message repeats.
MAX_ECHO = 64


@dataclass(frozen=True)
class Grammar:
    """A named identifier grammar: `pattern` must match the whole value; `rule` says it in words."""

    what: str
    pattern: re.Pattern[str]
    rule: str

    def matches(self, value: str) -> bool:
        return self.pattern.fullmatch(value) is not None

    def check(self, value: str, field: str, *, required: bool = True) -> list[FieldViolation]:
        """[] when `value` is valid (or empty and not `required`), else one violation naming the rule."""
        if not value:
            return [FieldViolation(field, f"required: the {self.what}")] if required else []
        if self.matches(value):
            return []
        return [FieldViolation(field, f"must be {self.rule}, got {shown(value)}")]


def grammar(what: str, pattern: str, rule: str) -> Grammar:
    return Grammar(what, re.compile(pattern, re.ASCII), rule)


# Service names become Consul service names, key segments and DNS labels.
SERVICE = grammar(
    "service name", r"[a-z][a-z0-9-]{0,62}", "1..63 lowercase letters, digits or '-', starting with a letter"
)
# Instance ids, saga ids, order ids, skus...: safe in a key, a URL path and gRPC metadata.
IDENTIFIER = grammar(
    "identifier",
    r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}",
    "1..128 letters, digits, '_', '.', ':' or '-', starting with a letter or digit",
)
ENVIRONMENT = grammar(
    "environment", r"[a-z][a-z0-9-]{0,62}", "1..63 lowercase letters, digits or '-', starting with a letter"
)
DEFINITION = grammar(
    "definition name", r"[a-z][a-z0-9._-]{0,62}", "1..63 of a-z, 0-9, '.', '_' or '-', starting with a letter"
)
STEP = grammar(
    "step name", r"[A-Za-z][A-Za-z0-9_-]{0,62}", "1..63 letters, digits, '_' or '-', starting with a letter"
)
FLAG = grammar(
    "flag name",
    r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}",
    "1..128 letters, digits, '_', '.' or '-', starting with a letter or digit",
)
SECRET = grammar(
    "secret name",
    r"[A-Za-z0-9][A-Za-z0-9_./-]{0,254}",
    "1..255 letters, digits, '_', '.', '/' or '-', starting with a letter or digit",
)
# What a breaker guards, as operators name it in `breaker_overrides`: "pkg.Service", "pkg.Service/Method",
# either with "@host:port" for a breaker kept per instance.
BREAKER_TARGET = grammar(
    "breaker target",
    r"[A-Za-z_][A-Za-z0-9_.]{0,199}(/[A-Za-z_][A-Za-z0-9_]{0,99})?(@[A-Za-z0-9_.:\[\]-]{1,100})?",
    "a gRPC service ('pkg.Service') or method ('pkg.Service/Method'), optionally '@host:port'",
)


def shown(value: object, limit: int = MAX_ECHO) -> str:
    """`repr(value)` cut to about `limit` characters, saying how long the whole was."""
    text = repr(value)
    if len(text) <= limit:
        return text
    size = f"{len(value)} characters" if isinstance(value, str | bytes) else f"{len(text)} characters as text"
    return f"{text[:limit]}… ({size})"


def printable_text(value: str, field: str, limit: int, *, multiline: bool = False) -> list[FieldViolation]:
    """Free text a person reads (names, reasons): bounded, no control or bidirectional-override characters
    (`multiline` allows line feeds and tabs)."""
    if len(value) > limit:
        return [FieldViolation(field, f"at most {limit} characters, got {len(value)}")]
    bad = next((c for c in value if _unsafe(c) and not (multiline and c in "\n\t")), None)
    if bad is not None:
        return [FieldViolation(field, f"must not contain control or direction-override characters (U+{ord(bad):04X})")]
    return []


# Controls, and the characters that reorder how text around them is displayed (Trojan Source).
_BIDI = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _unsafe(char: str) -> bool:
    code = ord(char)
    return code < 0x20 or 0x7F <= code < 0xA0 or char in _BIDI or 0xD800 <= code < 0xE000
