"""Hypothesis strategies that build any request message from its protobuf descriptor.

Fields are set at random (a random subset, at most one member of each oneof), with values drawn from
three pools: plausible ones (names the demo really has, so requests reach the stores), boundary ones
(0, -1, the limits of each integer type, NaN, Infinity, Durations with out-of-range nanos), and hostile
ones (trailing newlines, control and direction-override characters, NUL, huge strings, deep Structs,
catastrophic-backtracking patterns). Well-known types (Duration, Timestamp, Struct, Value) get values
of their own shape.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import duration_pb2, struct_pb2, timestamp_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from hypothesis import strategies as st

# Names that exist in the demo or that the fuzz itself creates, so some requests succeed.
PLAUSIBLE = [
    "order", "payment", "inventory", "user", "fuzz-svc", "dev", "prod", "alice", "bob", "apple", "pear",
    "place-order", "fuzz-def", "fuzz-saga-1", "EUR", "127.0.0.1", "localhost", "0.1.0", "v1",
    "/demo.inventory.v1.InventoryService/Reserve", "/demo.payment.v1.PaymentService/Charge",
    "/demo.order.v1.OrderService/CancelOrder", "$.order_id", "$.user_id", "order_id",
    "alice@example.com", "controlplane-saga", "grpc.health.v1.Health",
]
HOSTILE = [
    "", " ", "x\n", "order\n", "dev\n", "alice\n", "apple\n", "EUR\n", "\n", "\x00", "a\x00b", "\t",
    "²", "١٢٣", "\u202eevil", "a\u2066b", "\ud7ff", "é" * 10, "../../etc/passwd", "a/b", "%2F", "?x=1", "#",
    "a" * 129, "a" * 600, "x" * 20_000, "{}", "[]", "null", "$", "$.", "$..a", "$.a.b.c.d", "0.0.0.0", "::",
    "224.0.0.1", "999.1.1.1", "-", "_", ".", "controlplane", "consul", "/controlplane.v1.RegistryService/Deregister",
    "/grpc.health.v1.Health/Check", "/no.Such/Method", "Infinity", "NaN", "1e309", "-0", "0x10",
    "^(a+)+$", "(a|aa)*c", "(?<=a)b", "(" * 200 + ")" * 200, "\\", "'", '"', "';DROP TABLE orders;--",
]
INT_EDGES = [0, 1, -1, 2, 7, 59, 60, 61, 100, 1000, 65535, 65536, 2**31 - 1, -(2**31), 10**9]
UINT32_EDGES = [0, 1, 2, 100, 1000, 10**6, 10**6 + 1, 2**31 - 1, 2**32 - 1]
INT64_EDGES = [*INT_EDGES, 2**53 + 1, 2**63 - 1, -(2**63), 10**12]
UINT64_EDGES = [0, 1, 2**32, 2**63, 2**64 - 1]
FLOATS = st.one_of(
    st.sampled_from([0.0, -0.0, 0.5, 1.0, 1.5, 2.0, 100.0, 1e308, -1e308, float("nan"), float("inf"), float("-inf")]),
    st.floats(allow_nan=True, allow_infinity=True),
)

strings = st.one_of(
    st.sampled_from(PLAUSIBLE),
    st.sampled_from(HOSTILE),
    st.text(max_size=24),
    st.from_regex(r"[a-z][a-z0-9-]{0,20}", fullmatch=True),
)


def _json(max_leaves: int = 12) -> st.SearchStrategy[Any]:
    scalars = st.one_of(st.none(), st.booleans(), FLOATS, st.integers(-(2**60), 2**60), strings)
    return st.recursive(
        scalars,
        lambda children: st.one_of(
            st.lists(children, max_size=4), st.dictionaries(strings, children, max_size=4)
        ),
        max_leaves=max_leaves,
    )


def _deep(depth: int) -> Any:
    value: Any = {"leaf": 1}
    for i in range(depth):
        value = {"n": value} if i % 2 else [value]
    return value


SCHEMAS = [
    {"type": "object", "properties": {"a": {"type": "string", "pattern": "^(a+)+$"}}},
    {"properties": {"x": {"$ref": "#"}}, "$ref": "#"},
    {"$anchor": "a", "$ref": "#a"},
    {"$schema": ["draft"]}, {"$schema": 7}, {"$schema": True}, {"$schema": {"a": 1}},
    {"$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object"},
    {"type": "object", "patternProperties": {"(" * 1000 + "a" + ")" * 1000: {}}},
    {"type": "object", "properties": {f"p{i}": {"type": "integer"} for i in range(3000)}},
    {"type": "object", "properties": {"a": {"pattern": "(?<=x)y"}}},
    {"$ref": "#/$defs/a", "$defs": {"a": {"$ref": "#/$defs/b"}, "b": {"$ref": "#/$defs/a"}}},
    {"type": "object", "additionalProperties": False, "patternProperties": {"^(a|a)*$": {}}},
]

json_values = st.one_of(
    _json(),
    st.sampled_from([_deep(20), _deep(33), _deep(40), {"a" * 5000: 1}, {"$delete": True}, {"$secret": "x\n"}]),
    st.sampled_from(SCHEMAS),
)


def _set_value(value: struct_pb2.Value, data: Any) -> None:
    if data is None:
        value.null_value = struct_pb2.NULL_VALUE
    elif isinstance(data, bool):
        value.bool_value = data
    elif isinstance(data, int | float):
        value.number_value = float(data)
    elif isinstance(data, str):
        value.string_value = data
    elif isinstance(data, list):
        value.list_value.SetInParent()
        for item in data:
            _set_value(value.list_value.values.add(), item)
    else:
        value.struct_value.SetInParent()
        for key, item in data.items():
            _set_value(value.struct_value.fields[str(key)], item)


def struct_from(data: Any) -> struct_pb2.Struct:
    message = struct_pb2.Struct()
    if isinstance(data, dict):
        for key, item in data.items():
            _set_value(message.fields[str(key)], item)
    else:
        _set_value(message.fields["value"], data)
    return message


@st.composite
def durations(draw: st.DrawFn) -> duration_pb2.Duration:
    seconds = draw(st.one_of(st.sampled_from([0, 1, -1, 5, 59, 60, 3600, 86400, 10**9, 315_576_000_001, -(2**40)]),
                             st.integers(-(2**63), 2**63 - 1)))
    nanos = draw(st.one_of(st.sampled_from([0, 1, -1, 500_000_000, 999_999_999, -999_999_999, 10**9, -(10**9),
                                            2**31 - 1]), st.integers(-(2**31), 2**31 - 1)))
    return duration_pb2.Duration(seconds=seconds, nanos=nanos)


@st.composite
def timestamps(draw: st.DrawFn) -> timestamp_pb2.Timestamp:
    return timestamp_pb2.Timestamp(seconds=draw(st.integers(-(2**40), 2**40)), nanos=draw(st.integers(-5, 10**9)))


def _scalar(field: FieldDescriptor) -> st.SearchStrategy[Any]:
    t = field.type
    if t == FieldDescriptor.TYPE_STRING:
        return strings
    if t == FieldDescriptor.TYPE_BYTES:
        return st.one_of(st.binary(max_size=64), st.just(b"\xff" * 3000))
    if t == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if t in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return FLOATS
    if t == FieldDescriptor.TYPE_ENUM:
        known = [v.number for v in field.enum_type.values]
        return st.one_of(st.sampled_from(known), st.integers(-5, 1000))
    if t in (FieldDescriptor.TYPE_UINT32, FieldDescriptor.TYPE_FIXED32):
        return st.one_of(st.sampled_from(UINT32_EDGES), st.integers(0, 2**32 - 1))
    if t in (FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_FIXED64):
        return st.one_of(st.sampled_from(UINT64_EDGES), st.integers(0, 2**64 - 1))
    if t in (FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_SINT64, FieldDescriptor.TYPE_SFIXED64):
        return st.one_of(st.sampled_from(INT64_EDGES), st.integers(-(2**63), 2**63 - 1))
    return st.one_of(st.sampled_from(INT_EDGES), st.integers(-(2**31), 2**31 - 1))


def _fill(message: Message, field: FieldDescriptor, draw: st.DrawFn, depth: int) -> None:
    """Set `field` of `message` to drawn values (several for a repeated field or a map)."""
    if field.message_type is not None and field.message_type.GetOptions().map_entry:
        key_field = field.message_type.fields_by_name["key"]
        value_field = field.message_type.fields_by_name["value"]
        target = getattr(message, field.name)
        for _ in range(draw(st.sampled_from([0, 1, 2, 3, 70]))):
            key = draw(_scalar(key_field))
            if value_field.message_type is not None:
                draw_message(target[key], draw, depth + 1)
            else:
                target[key] = draw(_scalar(value_field))
        return
    if field.is_repeated:
        count = draw(st.sampled_from([0, 1, 2, 3, 4, 101, 300]))
        target = getattr(message, field.name)
        for _ in range(count if field.message_type is None or count < 101 else 101):
            if field.message_type is not None:
                draw_message(target.add(), draw, depth + 1)
            else:
                target.append(draw(_scalar(field)))
        return
    if field.message_type is not None:
        draw_message(getattr(message, field.name), draw, depth + 1)
        return
    setattr(message, field.name, draw(_scalar(field)))


def draw_message(message: Message, draw: st.DrawFn, depth: int = 0) -> Message:
    """Fill `message` in place with drawn fields; returns it."""
    descriptor: Descriptor = message.DESCRIPTOR
    name = descriptor.full_name
    if name == "google.protobuf.Struct":
        message.CopyFrom(struct_from(draw(json_values)))
        return message
    if name == "google.protobuf.Value":
        _set_value(message, draw(json_values))  # type: ignore[arg-type]
        return message
    if name == "google.protobuf.Duration":
        message.CopyFrom(draw(durations()))
        return message
    if name == "google.protobuf.Timestamp":
        message.CopyFrom(draw(timestamps()))
        return message
    message.SetInParent()
    if depth > 4:
        return message
    oneofs = {f.name for o in descriptor.oneofs for f in o.fields}
    for oneof in descriptor.oneofs:
        choice = draw(st.sampled_from([None, *oneof.fields]))
        if choice is not None:
            _fill(message, choice, draw, depth)
    for field in descriptor.fields:
        if field.name in oneofs:
            continue
        if draw(st.booleans()):
            _fill(message, field, draw, depth)
    return message


def requests(message_class: type[Message]) -> st.SearchStrategy[bytes]:
    """Serialized requests for `message_class`, and now and then bytes that are no message at all."""

    @st.composite
    def build(draw: st.DrawFn) -> bytes:
        if draw(st.integers(0, 19)) == 0:
            return draw(st.sampled_from([b"\xff\xff\xff", b"\x0a\xff\xff\xff\xff\x0f", b"\x08" * 7,
                                         b"garbage body", b"\x12\x05abc"]))
        return draw_message(message_class(), draw).SerializeToString()

    return build()
