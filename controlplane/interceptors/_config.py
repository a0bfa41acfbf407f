"""Builds policy dataclasses from plain dicts (JSON, YAML, a config service), checking names and types.

Field types drive the conversion: numbers, booleans, strings, `X | None`, `Literal[...]`, string tuples,
`Mapping[str, float]`, sets of `grpc.StatusCode` (given by name, e.g. "UNAVAILABLE") and nested
policies (anything with a `from_dict`). Unknown keys are errors, so a typo never silently means "default".
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from typing import Any, TypeVar

import grpc

T = TypeVar("T")


def status_codes(names: Any, *, setting: str) -> frozenset[grpc.StatusCode]:
    """`["UNAVAILABLE", "internal"]` -> the matching `grpc.StatusCode`s; codes pass through unchanged."""
    if isinstance(names, str | grpc.StatusCode):
        names = [names]
    codes = set()
    for name in names:
        if isinstance(name, grpc.StatusCode):
            codes.add(name)
            continue
        try:
            codes.add(grpc.StatusCode[str(name).upper()])
        except KeyError:
            allowed = ", ".join(code.name for code in grpc.StatusCode)
            raise ValueError(f"{setting}: unknown status code {name!r}; allowed: {allowed}") from None
    return frozenset(codes)


def from_mapping(cls: type[T], data: Mapping[str, Any]) -> T:
    """An instance of the dataclass `cls` from `data`, converting each value to its field's type."""
    if not isinstance(data, Mapping):
        raise TypeError(f"{cls.__name__}.from_dict expects a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]
    code_only = sorted(name for name in data if name in fields and fields[name].metadata.get("code_only"))
    if code_only:
        raise ValueError(f"{cls.__name__} setting(s) {code_only} can only be set in code, not from a document")
    unknown = sorted(set(data) - set(fields))
    if unknown:
        known = sorted(name for name, f in fields.items() if not f.metadata.get("code_only"))
        raise ValueError(f"unknown {cls.__name__} setting(s) {unknown}; known: {known}")
    hints = typing.get_type_hints(cls)
    kwargs = {name: _convert(value, hints[name], f"{cls.__name__}.{name}") for name, value in data.items()}
    return cls(**kwargs)


def _convert(value: Any, hint: Any, setting: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (types.UnionType, typing.Union):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _convert(value, inner, setting)
    if origin is typing.Literal:
        if value not in args:
            raise ValueError(f"{setting} must be one of {list(args)}, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError(f"{setting} must be a number (seconds, counts or fractions as documented), got {value!r}")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{setting} must be an integer, got {value!r}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise TypeError(f"{setting} must be true or false, got {value!r}")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise TypeError(f"{setting} must be a string, got {value!r}")
        return value
    if origin is frozenset and args == (grpc.StatusCode,):
        return status_codes(value, setting=setting)
    if origin is tuple:
        if isinstance(value, str) or not isinstance(value, list | tuple):
            raise TypeError(f"{setting} must be a list of strings, got {value!r}")
        return tuple(_convert(v, args[0], setting) for v in value)
    if origin in (Mapping, dict):
        if not isinstance(value, Mapping):
            raise TypeError(f"{setting} must be a mapping, got {value!r}")
        return {str(k): _convert(v, args[1], f"{setting}[{k!r}]") for k, v in value.items()}
    from_dict = getattr(hint, "from_dict", None)
    if from_dict is not None:
        return value if isinstance(value, hint) else from_dict(value)
    raise TypeError(f"{setting}: no conversion for type {hint!r}")  # a bug in a policy definition
