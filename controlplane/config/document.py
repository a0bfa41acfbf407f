"""Config documents: JSON objects layered by a deep merge, with canonical bytes and checksums.

A service's merged document for environment E is the default layer with E's layer merged over it:

- where both sides hold an object, the objects are merged key by key, recursively;
- anywhere else the environment's value replaces the default's: scalars, arrays (replaced whole, never
  concatenated) and changes of type alike;
- `{"$delete": true}` as a value in an environment layer removes that key from the merged document
  (the marker itself never appears in a merged document); `null` is an ordinary value, not a deletion;
- a secret reference `{"$secret": "<ref>"}` is a leaf: it replaces, or is replaced, whole.

Numbers travel as doubles on the wire (google.protobuf.Struct); integral values are kept as integers, so
`10` stays `10` in canonical JSON, in checksums and for JSON Schema's "integer".
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

DELETE = "$delete"
SECRET = "$secret"

# Largest integer a double holds exactly; integral doubles up to it become ints.
_EXACT_INT = 2**53
_PLAIN_KEY = re.compile(r"^[A-Za-z_$][A-Za-z0-9_$-]*$")


def is_delete(value: Any) -> bool:
    """True for the deletion marker `{"$delete": true}`."""
    return isinstance(value, dict) and len(value) == 1 and value.get(DELETE) is True


def is_secret_ref(value: Any) -> bool:
    """True for a secret reference `{"$secret": "<ref>"}` (the reference may still be ill-formed)."""
    return isinstance(value, dict) and len(value) == 1 and isinstance(value.get(SECRET), str)


def _mergeable(value: Any) -> bool:
    return isinstance(value, dict) and not is_secret_ref(value)


def strip_markers(value: Any) -> Any:
    """`value` without deletion markers (a deletion of a key that is not there removes nothing)."""
    if _mergeable(value):
        return {k: strip_markers(v) for k, v in value.items() if not is_delete(v)}
    return value


def merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """`override` deep-merged over `base` by the rules above; neither argument is changed."""
    result = {k: strip_markers(v) for k, v in base.items() if not is_delete(v)}
    for key, value in override.items():
        if is_delete(value):
            result.pop(key, None)
        elif _mergeable(value) and _mergeable(result.get(key)):
            result[key] = merge(result[key], value)
        else:
            result[key] = strip_markers(value)
    return result


def normalize_numbers(value: Any) -> Any:
    """Integral floats (as Struct delivers every number) turned into ints, recursively."""
    if isinstance(value, float):
        return int(value) if value.is_integer() and abs(value) <= _EXACT_INT else value
    if isinstance(value, dict):
        return {k: normalize_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [normalize_numbers(v) for v in value]
    return value


def canonical_json(document: Any) -> bytes:
    """The one byte form of a document: sorted keys, no whitespace, UTF-8. Checksums and sizes use it."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def checksum(document: Any) -> str:
    """sha256 of the canonical JSON, hex. Computed on unresolved documents: it reveals nothing of secrets."""
    return hashlib.sha256(canonical_json(document)).hexdigest()


def render_path(parts: Sequence[str | int], root: str = "") -> str:
    """A readable JSON path: `db.pool`, `servers[0].port`, `labels["a.b"]`, prefixed by `root` if given."""
    out = root
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _PLAIN_KEY.match(part):
            out += f".{part}" if out else part
        else:
            out += f"[{json.dumps(part, ensure_ascii=False)}]"
    return out or "(document)"


def walk(value: Any, path: tuple[str | int, ...] = ()) -> Iterator[tuple[tuple[str | int, ...], Any]]:
    """Every (path, value) pair in a document, parents before children."""
    yield path, value
    if isinstance(value, dict):
        for key, item in value.items():
            yield from walk(item, (*path, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from walk(item, (*path, i))


def depth(value: Any) -> int:
    """Nesting depth in containers: a scalar is 0, `{}` is 1, `{"a": []}` is 2."""
    if isinstance(value, dict):
        return 1 + max((depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((depth(v) for v in value), default=0)
    return 0


def non_finite_numbers(value: Any) -> list[tuple[str | int, ...]]:
    """Paths of NaN and infinite numbers, which JSON cannot represent."""
    return [path for path, item in walk(value) if isinstance(item, float) and not math.isfinite(item)]
