"""Change summaries for history: what a write changed in one layer, in a line a person can read.

`set db.pool=10; removed feature.x` — leaves that were added or changed are `set path=value` (compact
JSON, long values shortened), keys that disappeared are `removed path`. Objects are compared key by key;
arrays and secret references are compared whole. Layers hold secret references, never secret values,
so a summary can show at most a reference name.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from controlplane.config.document import SECRET, is_delete, is_secret_ref, render_path
from controlplane.text import cut

MAX_VALUE_CHARS = 40
MAX_SUMMARY_CHARS = 1000


@dataclass(frozen=True)
class Change:
    """One changed path: `value` is None with `removed` set for a removal."""

    path: tuple[str | int, ...]
    removed: bool = False
    value: Any = None

    def describe(self) -> str:
        if self.removed:
            return f"removed {render_path(self.path)}"
        return f"set {render_path(self.path)}={_short(self.value)}"


def changes(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[Change]:
    """Every leaf-level difference between two layers, in path order."""
    found: list[Change] = []
    _compare(before, after, (), found)
    return found


def summarize(before: Mapping[str, Any], after: Mapping[str, Any], limit: int = MAX_SUMMARY_CHARS) -> str:
    """One line for history; "no change" when the layers are equal, "... and N more" past `limit` characters."""
    found = changes(before, after)
    if not found:
        return "no change"
    parts: list[str] = []
    used = 0
    for i, change in enumerate(found):
        text = change.describe()
        if parts and used + len(text) + 2 > limit:
            return "; ".join(parts) + f"; ... and {len(found) - i} more"
        parts.append(text)
        used += len(text) + 2
    return "; ".join(parts)


def _object(value: Any) -> bool:
    return isinstance(value, dict) and not is_secret_ref(value) and not is_delete(value)


def _compare(before: Any, after: Any, path: tuple[str | int, ...], found: list[Change]) -> None:
    if _object(before) and _object(after):
        for key in sorted(before.keys() | after.keys()):
            if key not in after:
                found.append(Change((*path, key), removed=True))
            elif key not in before:
                _added(after[key], (*path, key), found)
            else:
                _compare(before[key], after[key], (*path, key), found)
    elif before != after or type(before) is not type(after):
        _added(after, path, found)


def _added(value: Any, path: tuple[str | int, ...], found: list[Change]) -> None:
    if _object(value) and value:
        for key in sorted(value):
            _added(value[key], (*path, key), found)
    else:
        found.append(Change(path, value=value))


def _short(value: Any) -> str:
    if is_secret_ref(value):
        return f"$secret({value[SECRET]})"
    if is_delete(value):
        return "$delete"
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return cut(text, MAX_VALUE_CHARS)
