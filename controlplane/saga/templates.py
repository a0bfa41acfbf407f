"""Request templates and response mappings: "$.a.b" references into saga data, field paths into responses.

A template is JSON; a string value of the form "$.a.b" stands for the saga data at that path, any other
value is copied as it is. A response mapping says which response field (proto field names, dotted)
goes to which saga data path.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

REFERENCE = re.compile(r"^\$(\.[A-Za-z_][A-Za-z0-9_-]*)+$")
DATA_PATH = re.compile(r"^(\$\.)?[A-Za-z_][A-Za-z0-9_-]*(\.[A-Za-z_][A-Za-z0-9_-]*)*$")
FIELD_PATH = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


class TemplateError(ValueError):
    """A template cannot be rendered with the saga data at hand."""


def is_reference(value: Any) -> bool:
    return isinstance(value, str) and value.startswith("$")


def valid_reference(value: str) -> bool:
    return len(value) <= 256 and REFERENCE.fullmatch(value) is not None


def contains_reference(value: Any) -> bool:
    if isinstance(value, Mapping):
        return any(contains_reference(v) for v in value.values())
    if isinstance(value, list):
        return any(contains_reference(v) for v in value)
    return is_reference(value)


def split_data_path(path: str) -> list[str]:
    """'$.a.b' or 'a.b' -> ['a', 'b']."""
    return path.removeprefix("$.").split(".")


def render(template: Any, data: Mapping[str, Any]) -> Any:
    """The template with every "$.path" replaced by the saga data there (TemplateError if missing).

    Referenced values are shared with `data`, not copied: treat the result as read-only.
    """
    if isinstance(template, Mapping):
        return {key: render(value, data) for key, value in template.items()}
    if isinstance(template, list):
        return [render(value, data) for value in template]
    if is_reference(template):
        return lookup(data, template)
    return template


def lookup(data: Mapping[str, Any], path: str) -> Any:
    node: Any = data
    for part in split_data_path(path):
        if not isinstance(node, Mapping) or part not in node:
            raise TemplateError(f"{path} is not in the saga data")
        node = node[part]
    return node


def assigned(data: Mapping[str, Any], path: str, value: Any) -> dict[str, Any]:
    """The saga data with `path` set to `value`, creating intermediate objects.

    `data` is left as it is: only the objects along the path are copied, the rest is shared, so saga
    data can be treated as an immutable value (see SagaState).
    """
    parts = split_data_path(path)
    top = dict(data)
    node = top
    for part in parts[:-1]:
        child = node.get(part)
        node[part] = dict(child) if isinstance(child, Mapping) else {}
        node = node[part]
    node[parts[-1]] = value
    return top


def extract(response: Mapping[str, Any], field_path: str) -> tuple[bool, Any]:
    """(found, value) of a dotted proto field path in a response dict."""
    node: Any = response
    for part in field_path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return False, None
        node = node[part]
    return True, node


def map_response(response: Mapping[str, Any], mapping: Mapping[str, str]) -> dict[str, Any]:
    """{data path: value} for every mapped response field that is present (values shared with `response`)."""
    added: dict[str, Any] = {}
    for data_path, field_path in mapping.items():
        found, value = extract(response, field_path)
        if found:
            added[data_path.removeprefix("$.")] = value
    return added
