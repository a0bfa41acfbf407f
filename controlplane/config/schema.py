"""JSON Schema checks: is a schema valid, and every way a document violates it (with paths).

The draft is the schema's "$schema" (2020-12 when absent). Formats are checked where `jsonschema` can.
Only references inside the schema ("#...") are allowed: the control plane fetches nothing from outside.

Secret references are checked as the strings they resolve to: `{"$secret": "db/password"}` where the
schema wants a string passes, where it wants an integer fails. Constraints on the value itself (pattern,
length, enum) cannot be checked without resolving, so they are not reported at a secret's path.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote

from jsonschema import validators
from jsonschema.exceptions import ValidationError as SchemaViolation
from jsonschema.protocols import Validator
from referencing import Registry
from referencing.exceptions import Unresolvable

from controlplane.config import safe_regex
from controlplane.config.document import SECRET, is_secret_ref, render_path, walk
from controlplane.errors import FieldViolation
from controlplane.text import cut, decimal

safe_regex.install()

MAX_DESCRIPTION = 300
# Objects and arrays in one schema: bounds the cost of checking a schema and of validating with it.
MAX_SCHEMA_NODES = 2000
_DRAFTS = {
    uri.rstrip("#"): cls
    for uri, cls in validators._META_SCHEMAS.items()  # type: ignore[attr-defined]
}
_LOOP = "its references loop back to where they started without consuming any input (e.g. a $ref to itself)"
# Keywords whose subschemas apply to the same instance: a cycle through them never ends.
_SAME_INSTANCE_LISTS = ("allOf", "anyOf", "oneOf")
_SAME_INSTANCE_ONE = ("not", "if", "then", "else")


def check_schema(schema: Mapping[str, Any], root: str = "schema") -> list[FieldViolation]:
    """Every reason `schema` is not a usable JSON Schema, with paths under `root`.

    CPU-heavy for large schemas: call it through `check_queue.off_loop` from asyncio code.
    """
    nodes = sum(1 for _, value in walk(schema) if isinstance(value, dict | list))
    if nodes > MAX_SCHEMA_NODES:
        return [FieldViolation(root, f"has {nodes} objects and arrays; at most {MAX_SCHEMA_NODES} are accepted")]
    if "$schema" in schema and _declared_draft(schema) is None:
        known = ", ".join(sorted(_DRAFTS))
        return [FieldViolation(render_path(["$schema"], root), f"must name a JSON Schema draft ({known})")]
    cls = _validator_class(schema)
    meta = cls(cls.META_SCHEMA, format_checker=cls.FORMAT_CHECKER)
    try:
        found = sorted(meta.iter_errors(schema), key=lambda e: list(map(str, e.absolute_path)))
    except RecursionError:
        return [FieldViolation(root, "nests too deep to check")]
    problems = [FieldViolation(render_path(list(e.absolute_path), root), _describe_schema_error(e)) for e in found]
    if problems:
        return problems
    for path, value in walk(schema):
        if isinstance(value, dict) and isinstance(value.get("$ref"), str):
            problem = _local_ref_problem(schema, value["$ref"])
            if problem:
                problems.append(FieldViolation(render_path([*path, "$ref"], root), problem))
    try:
        if not problems and _loops(schema):
            problems.append(FieldViolation(root, _LOOP))
    except RecursionError:
        problems.append(FieldViolation(root, "its references chain too deep to check"))
    return problems


def violations(schema: Mapping[str, Any], document: Any, root: str = "content") -> list[FieldViolation]:
    """Every way `document` violates `schema`, each with its path under `root`; [] when it conforms.

    CPU-heavy for large documents: call it through `check_queue.off_loop` from asyncio code.
    """
    secrets = {path for path, value in walk(document) if is_secret_ref(value)}
    validator = _validator(schema)
    try:
        errors = list(validator.iter_errors(_secrets_as_strings(document)))
    except Unresolvable as exc:  # only reachable for a schema stored before check_schema knew the case
        return [FieldViolation("schema", f"has a reference that cannot be resolved: {exc}")]
    except RecursionError:  # likewise: check_schema refuses loops it can see
        return [FieldViolation("schema", _LOOP)]
    found = []
    for error in sorted(errors, key=lambda e: (list(map(str, e.absolute_path)), e.message)):
        path = tuple(error.absolute_path)
        if path in secrets and error.validator != "type":
            continue
        found.append(FieldViolation(render_path(path, root), _describe(error, path in secrets)))
    return found


def _secrets_as_strings(value: Any) -> Any:
    if is_secret_ref(value):
        return f"$secret({value[SECRET]})"
    if isinstance(value, dict):
        return {k: _secrets_as_strings(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_secrets_as_strings(v) for v in value]
    return value


def _describe(error: SchemaViolation, secret: bool) -> str:
    if secret:
        return f"a secret reference (a string) where the schema wants {error.validator_value!r}"
    return _shorten(error.message)


def _describe_schema_error(error: SchemaViolation) -> str:
    if error.validator == "format" and error.validator_value == "regex" and isinstance(error.cause, re.error):
        return _shorten(f"{error.instance!r:.80} is not a usable pattern: {error.cause}")
    return _shorten(error.message)


def _shorten(text: str) -> str:
    return cut(text, MAX_DESCRIPTION)


def _declared_draft(schema: Mapping[str, Any]) -> type[Validator] | None:
    """The validator of the draft `$schema` names; None when it names none we know (or is no string)."""
    draft = schema.get("$schema")
    return _DRAFTS.get(draft.rstrip("#")) if isinstance(draft, str) else None


def _validator_class(schema: Mapping[str, Any]) -> type[Validator]:
    return _declared_draft(schema) or validators.Draft202012Validator


def _validator(schema: Mapping[str, Any]) -> Validator:
    cls = _validator_class(schema)
    # An empty registry: a reference outside the schema fails instead of being fetched.
    return cls(schema, registry=Registry(), format_checker=cls.FORMAT_CHECKER)  # type: ignore[call-arg]


def _loops(schema: Mapping[str, Any]) -> bool:
    """True when following $ref and same-instance keywords from some subschema comes back to it."""
    state: dict[int, int] = {}  # id(node) -> 1 while being visited, 2 when done
    anchors: dict[str, Any] = {}
    for _, node in walk(schema):
        if isinstance(node, dict):
            for key in ("$anchor", "$dynamicAnchor"):
                if isinstance(node.get(key), str):
                    anchors.setdefault(node[key], node)
            if isinstance(node.get("$id"), str) and node["$id"].startswith("#"):  # drafts 4-7 name anchors so
                anchors.setdefault(node["$id"][1:], node)

    def same_instance(node: Mapping[str, Any]) -> list[Any]:
        found: list[Any] = []
        for key in ("$ref", "$dynamicRef", "$recursiveRef"):
            ref = node.get(key)
            if not isinstance(ref, str) or not ref.startswith("#"):
                continue
            if ref == "#" or ref.startswith("#/"):
                if _local_ref_problem(schema, ref) is None:
                    found.append(_resolve_pointer(schema, ref))
            else:
                found.append(anchors.get(ref[1:]))
        for key in _SAME_INSTANCE_LISTS:
            items = node.get(key)
            if isinstance(items, list):
                found += items
        found += [node[key] for key in _SAME_INSTANCE_ONE if key in node]
        if isinstance(node.get("dependentSchemas"), dict):
            found += list(node["dependentSchemas"].values())
        return [f for f in found if isinstance(f, dict)]

    def visit(node: Mapping[str, Any]) -> bool:
        mark = state.get(id(node))
        if mark == 1:
            return True
        if mark == 2:
            return False
        state[id(node)] = 1
        looped = any(visit(child) for child in same_instance(node))
        state[id(node)] = 2
        return looped

    return any(visit(node) for _, node in walk(schema) if isinstance(node, dict))


def _resolve_pointer(schema: Mapping[str, Any], ref: str) -> Any:
    target: Any = schema
    if ref.startswith("#/"):
        for token in ref[2:].split("/"):
            token = unquote(token).replace("~1", "/").replace("~0", "~")
            target = target[int(token)] if isinstance(target, list) else target[token]
    return target if ref == "#" or ref.startswith("#/") else None


def _local_ref_problem(schema: Mapping[str, Any], ref: str) -> str | None:
    if not ref.startswith("#"):
        return f"only references within the schema ('#/...') are allowed, got {ref!r}"
    if ref == "#" or not ref.startswith("#/"):
        return None  # the root, or a named anchor
    target: Any = schema
    for token in ref[2:].split("/"):
        token = unquote(token).replace("~1", "/").replace("~0", "~")
        if isinstance(target, dict) and token in target:
            target = target[token]
        elif isinstance(target, list) and (index := decimal(token, 9)) is not None and index < len(target):
            target = target[index]
        else:
            return f"points at nothing in this schema: {ref!r}"
    return None
