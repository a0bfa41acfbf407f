"""JSON Schema checks: is a schema valid, and every way a document violates it (with paths).

The draft is the schema's "$schema" (2020-12 when absent). Formats are checked where `jsonschema` can.
Only references inside the schema ("#...") are allowed: the control plane fetches nothing from outside.

Secret references are checked as the strings they resolve to: `{"$secret": "db/password"}` where the
schema wants a string passes, where it wants an integer fails. Constraints on the value itself (pattern,
length, enum) cannot be checked without resolving, so they are not reported at a secret's path.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote

from jsonschema import validators
from jsonschema.exceptions import ValidationError as SchemaViolation
from jsonschema.protocols import Validator
from referencing import Registry
from referencing.exceptions import Unresolvable

from controlplane.config.document import SECRET, is_secret_ref, render_path, walk
from controlplane.errors import FieldViolation

MAX_DESCRIPTION = 300
_LOOP = "its references loop back to where they started without consuming any input (e.g. a $ref to itself)"
# Keywords whose subschemas apply to the same instance: a cycle through them never ends.
_SAME_INSTANCE_LISTS = ("allOf", "anyOf", "oneOf")
_SAME_INSTANCE_ONE = ("not", "if", "then", "else")


def check_schema(schema: Mapping[str, Any], root: str = "schema") -> list[FieldViolation]:
    """Every reason `schema` is not a usable JSON Schema, with paths under `root`."""
    cls = _validator_class(schema)
    meta = cls(cls.META_SCHEMA, format_checker=cls.FORMAT_CHECKER)
    problems = [
        FieldViolation(render_path(list(e.absolute_path), root), _shorten(e.message))
        for e in sorted(meta.iter_errors(schema), key=lambda e: list(map(str, e.absolute_path)))
    ]
    if problems:
        return problems
    for path, value in walk(schema):
        if isinstance(value, dict) and isinstance(value.get("$ref"), str):
            problem = _local_ref_problem(schema, value["$ref"])
            if problem:
                problems.append(FieldViolation(render_path([*path, "$ref"], root), problem))
    if not problems and _loops(schema):
        problems.append(FieldViolation(root, _LOOP))
    return problems


def violations(schema: Mapping[str, Any], document: Any, root: str = "content") -> list[FieldViolation]:
    """Every way `document` violates `schema`, each with its path under `root`; [] when it conforms."""
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


def _shorten(text: str) -> str:
    return text if len(text) <= MAX_DESCRIPTION else text[: MAX_DESCRIPTION - 1] + "…"


def _validator_class(schema: Mapping[str, Any]) -> type[Validator]:
    return validators.validator_for(schema, default=validators.Draft202012Validator)


def _validator(schema: Mapping[str, Any]) -> Validator:
    cls = _validator_class(schema)
    # An empty registry: a reference outside the schema fails instead of being fetched.
    return cls(schema, registry=Registry(), format_checker=cls.FORMAT_CHECKER)  # type: ignore[call-arg]


def _loops(schema: Mapping[str, Any]) -> bool:
    """True when following $ref and same-instance keywords from some subschema comes back to it."""
    state: dict[int, int] = {}  # id(node) -> 1 while being visited, 2 when done

    def same_instance(node: Mapping[str, Any]) -> list[Any]:
        found: list[Any] = []
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#") and _local_ref_problem(schema, ref) is None:
            found.append(_resolve_pointer(schema, ref))
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
        elif isinstance(target, list) and token.isdigit() and int(token) < len(target):
            target = target[int(token)]
        else:
            return f"points at nothing in this schema: {ref!r}"
    return None
