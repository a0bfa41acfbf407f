"""Participant requests from JSON and responses to JSON: the proto JSON mapping of json_format, faster.

json_format walks every field in Python with many checks; on a saga's hot path (a request built and a
response converted per call) that was a good part of the orchestrator's CPU. These functions handle
the plain cases directly (scalars, enums, nested and repeated messages, proto field names) and hand
anything else (maps, oneofs, bytes, float32, camelCase names, numbers in strings, bad values) to
json_format, so results and errors are always json_format's.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from google.protobuf import json_format
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message

__all__ = ["to_json", "to_message"]

_INT32 = (FieldDescriptor.CPPTYPE_INT32, FieldDescriptor.CPPTYPE_UINT32)
_INT64 = (FieldDescriptor.CPPTYPE_INT64, FieldDescriptor.CPPTYPE_UINT64)


class _Unusual(Exception):
    """Leave this message to json_format."""


def to_message(payload: Mapping[str, Any], message_class: type[Message]) -> Message:
    """`json_format.ParseDict(payload, message_class())`; raises json_format.ParseError alike."""
    message = message_class()
    try:
        _fill(message, payload)
    except (_Unusual, TypeError, ValueError, json_format.ParseError):  # let json_format decide and say why
        message = message_class()
        json_format.ParseDict(payload, message)
    return message


def to_json(message: Message) -> dict[str, Any]:
    """`json_format.MessageToDict(message, preserving_proto_field_name=True)`."""
    try:
        return _print(message)
    except _Unusual:
        return json_format.MessageToDict(message, preserving_proto_field_name=True)


# -- JSON -> message ---------------------------------------------------------------------------------

def _fill(message: Message, payload: Mapping[str, Any]) -> None:
    if not isinstance(payload, Mapping):
        raise _Unusual
    fields = _plain_fields(message.DESCRIPTOR)
    for key, value in payload.items():
        field = fields.get(key)
        if field is None or value is None:
            raise _Unusual
        if field.is_repeated:
            if not isinstance(value, list):
                raise _Unusual
            target = getattr(message, key)
            if field.cpp_type == FieldDescriptor.CPPTYPE_MESSAGE:
                for item in value:
                    _fill(target.add(), item)
            else:
                target.extend([_scalar(field, item) for item in value])
        elif field.cpp_type == FieldDescriptor.CPPTYPE_MESSAGE:
            child = getattr(message, key)
            child.SetInParent()
            if field.message_type.full_name.startswith("google.protobuf."):
                json_format.ParseDict(value, child)  # well-known types have JSON forms of their own
            else:
                _fill(child, value)
        else:
            setattr(message, key, _scalar(field, value))


def _scalar(field: FieldDescriptor, value: Any) -> Any:
    kind, cls = field.cpp_type, type(value)
    if kind == FieldDescriptor.CPPTYPE_STRING:
        if cls is str:
            return value
    elif kind in _INT32 or kind in _INT64:
        if cls is int:
            return value
        if cls is float and value.is_integer():
            return int(value)
    elif kind == FieldDescriptor.CPPTYPE_DOUBLE:
        if (cls is int or cls is float) and math.isfinite(value):
            return value
    elif kind == FieldDescriptor.CPPTYPE_BOOL:
        if cls is bool:
            return value
    elif kind == FieldDescriptor.CPPTYPE_ENUM:
        found = (field.enum_type.values_by_name if cls is str else
                 field.enum_type.values_by_number if cls is int else {}).get(value)
        if found is not None:
            return found.number
    raise _Unusual


_PLAIN: dict[Descriptor, dict[str, FieldDescriptor]] = {}


def _plain_fields(descriptor: Descriptor) -> dict[str, FieldDescriptor]:
    """Fields by proto name when the message has nothing `_fill` leaves to json_format, else _Unusual."""
    found = _PLAIN.get(descriptor)
    if found is None:
        usual = not descriptor.GetOptions().map_entry and not descriptor.full_name.startswith("google.protobuf.") \
            and not any(oneof.fields and not getattr(oneof, "is_synthetic", False) for oneof in descriptor.oneofs)
        found = _PLAIN[descriptor] = {f.name: f for f in descriptor.fields if _plain(f)} if usual else {}
    if not found and descriptor.fields:
        raise _Unusual
    return found


def _plain(field: FieldDescriptor) -> bool:
    if field.type in (FieldDescriptor.TYPE_BYTES, FieldDescriptor.TYPE_FLOAT):
        return False
    message = field.message_type
    return message is None or not message.GetOptions().map_entry


# -- message -> JSON ---------------------------------------------------------------------------------

Printer = Callable[[Any], Any]
_PRINTERS: dict[FieldDescriptor, Printer] = {}


def _print(message: Message) -> dict[str, Any]:
    out = {}
    for field, value in message.ListFields():
        printer = _PRINTERS.get(field)
        if printer is None:
            printer = _PRINTERS[field] = _printer(field)
        out[field.name] = printer(value)
    return out


def _printer(field: FieldDescriptor) -> Printer:
    if field.is_extension or field.type in (FieldDescriptor.TYPE_BYTES, FieldDescriptor.TYPE_FLOAT):
        raise _Unusual
    message = field.message_type
    if message is not None and message.GetOptions().map_entry:
        raise _Unusual
    one = _value_printer(field)
    if field.is_repeated:
        return lambda values: [one(v) for v in values]
    return one


def _value_printer(field: FieldDescriptor) -> Printer:
    kind = field.cpp_type
    if kind == FieldDescriptor.CPPTYPE_MESSAGE:
        if field.message_type.full_name.startswith("google.protobuf."):
            return lambda value: json_format.MessageToDict(value, preserving_proto_field_name=True)
        return _print
    if kind in _INT64:
        return str
    if kind == FieldDescriptor.CPPTYPE_DOUBLE:
        return _finite
    if kind == FieldDescriptor.CPPTYPE_ENUM:
        names = {v.number: v.name for v in field.enum_type.values}
        if any(v.GetOptions().ListFields() for v in field.enum_type.values):
            raise _Unusual  # enum value options (such as a JSON name) are json_format's business

        def enum_name(value: int) -> str:
            name = names.get(value)
            if name is None:
                raise _Unusual
            return name

        return enum_name
    return _same  # strings, booleans, 32-bit integers


def _same(value: Any) -> Any:
    return value


def _finite(value: float) -> float:
    if not math.isfinite(value):
        raise _Unusual
    return value
