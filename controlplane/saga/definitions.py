"""Saga definitions are data: checked against the participants' descriptors, then compiled for running.

`compile_definition` turns a controlplane.v1.SagaDefinition into a `Definition` with resolved methods
and defaults filled in, or raises ValidationError naming every problem (unknown method, template
field the request type lacks, literal that cannot be built, response field that does not exist).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from google.protobuf import json_format, message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor

from controlplane import names
from controlplane.errors import FieldViolation, ValidationError
from controlplane.registry.validation import check_service_name
from controlplane.saga import methods, templates
from controlplane.saga.methods import MethodSpec
from controlplane.v1 import saga_pb2
from controlplane.wire_checks import duration_seconds, struct_problems

MAX_STEPS = 50
# A definition is stored as one Consul value next to its version pointer, in one transaction.
MAX_DEFINITION_BYTES = 128 * 1024
# Services no saga step may call: the control plane itself.
RESERVED_PACKAGES = ("controlplane.", "grpc.")
DEFAULT_STEP_TIMEOUT = 5.0


@dataclass(frozen=True)
class Retry:
    """How a failed call is tried again: `max_attempts` in all, waiting initial * multiplier^n seconds."""

    max_attempts: int = 3
    initial: float = 0.1
    maximum: float = 2.0
    multiplier: float = 2.0

    def delay(self, failures: int) -> float:
        """Seconds to wait before the attempt that follows `failures` failed ones."""
        return min(self.maximum, self.initial * self.multiplier ** max(0, failures - 1))


DEFAULT_RETRY = Retry()
DEFAULT_COMPENSATION_RETRY = Retry(max_attempts=5)


@dataclass(frozen=True)
class Step:
    name: str
    target_service: str
    action: MethodSpec
    compensation: MethodSpec | None
    request_template: Mapping[str, Any]
    compensation_template: Mapping[str, Any]
    response_mapping: Mapping[str, str]
    timeout: float  # seconds per attempt
    retry: Retry
    compensate_always: bool = False  # undo whenever the saga compensates, whatever the action did


@dataclass(frozen=True)
class Definition:
    """A compiled, immutable saga definition version."""

    name: str
    version: int
    steps: tuple[Step, ...]
    timeout: float | None  # seconds for the whole saga; None: no limit
    compensation_retry: Retry
    proto: saga_pb2.SagaDefinition


def compile_definition(proto: saga_pb2.SagaDefinition, field: str = "definition") -> Definition:
    """The runnable form of `proto`, or ValidationError listing every problem."""
    size = proto.ByteSize()
    if size > MAX_DEFINITION_BYTES:
        raise ValidationError.single(field, f"is {size} bytes; at most {MAX_DEFINITION_BYTES} bytes are accepted")
    problems: list[FieldViolation] = names.DEFINITION.check(proto.name, f"{field}.name")
    if not 1 <= len(proto.steps) <= MAX_STEPS:
        problems.append(FieldViolation(f"{field}.steps", f"must have 1..{MAX_STEPS} steps, got {len(proto.steps)}"))
    steps: list[Step] = []
    seen: set[str] = set()
    for i, step in enumerate(proto.steps):
        where = f"{field}.steps[{i}]"
        if step.name in seen:
            problems.append(FieldViolation(f"{where}.name", f"step names must be unique; {step.name!r} repeats"))
        seen.add(step.name)
        compiled, found = _compile_step(step, where)
        problems += found
        if compiled is not None:
            steps.append(compiled)
    timeout = None
    if proto.HasField("timeout"):
        timeout, found = duration_seconds(proto.timeout, f"{field}.timeout")
        problems += found
        if not found and not 0 < timeout <= 30 * 86400:
            problems.append(FieldViolation(f"{field}.timeout", f"must be between 0s and 30 days, got {timeout:g}s"))
    compensation_retry, found = _retry(proto.compensation_retry if proto.HasField("compensation_retry") else None,
                                       f"{field}.compensation_retry", DEFAULT_COMPENSATION_RETRY)
    problems += found
    if problems:
        raise ValidationError(problems)
    return Definition(
        name=proto.name,
        version=proto.version,
        steps=tuple(steps),
        timeout=timeout,
        compensation_retry=compensation_retry,
        proto=proto,
    )


def _compile_step(step: saga_pb2.SagaStep, where: str) -> tuple[Step | None, list[FieldViolation]]:
    problems: list[FieldViolation] = names.STEP.check(step.name, f"{where}.name")
    problems += check_service_name(step.target_service, f"{where}.target_service")
    action = _method(step.action, f"{where}.action", problems)
    compensation = _method(step.compensation, f"{where}.compensation", problems) if step.compensation else None
    template_problems = (struct_problems(step.request_template, f"{where}.request_template")
                         + struct_problems(step.compensation_template, f"{where}.compensation_template"))
    if template_problems:
        return None, problems + template_problems
    request_template = json_format.MessageToDict(step.request_template)
    compensation_template = json_format.MessageToDict(step.compensation_template)
    if action is not None:
        problems += check_template(request_template, action.request_descriptor, f"{where}.request_template")
        problems += _check_mapping(dict(step.response_mapping), action.response_descriptor,
                                   f"{where}.response_mapping")
    if compensation is not None:
        if not compensation_template:
            # Unset: the fields of the action's request that the compensation's request also has.
            fields = compensation.request_descriptor.fields_by_name
            compensation_template = {k: v for k, v in request_template.items() if k in fields}
        problems += check_template(compensation_template, compensation.request_descriptor,
                                   f"{where}.compensation_template")
    elif compensation_template:
        problems.append(FieldViolation(f"{where}.compensation_template", "set, but the step has no compensation"))
    if step.compensate_always and compensation is None and not step.compensation:
        problems.append(FieldViolation(f"{where}.compensate_always", "set, but the step has no compensation"))
    timeout, found = (duration_seconds(step.timeout, f"{where}.timeout") if step.HasField("timeout")
                      else (DEFAULT_STEP_TIMEOUT, []))
    problems += found
    if not found and not 0 < timeout <= 3600:
        problems.append(FieldViolation(f"{where}.timeout", f"must be between 0s and 3600s, got {timeout:g}s"))
    retry, found = _retry(step.retry if step.HasField("retry") else None, f"{where}.retry", DEFAULT_RETRY)
    problems += found
    if problems or action is None:
        return None, problems
    return Step(
        name=step.name,
        target_service=step.target_service,
        action=action,
        compensation=compensation,
        request_template=request_template,
        compensation_template=compensation_template,
        response_mapping=dict(step.response_mapping),
        timeout=timeout,
        retry=retry,
        compensate_always=step.compensate_always,
    ), problems


def _method(path: str, where: str, problems: list[FieldViolation]) -> MethodSpec | None:
    if not path:
        problems.append(FieldViolation(where, "required: a full gRPC method name such as "
                                              "/demo.inventory.v1.InventoryService/Reserve"))
        return None
    if len(path) > 256 or not path.isprintable():
        problems.append(FieldViolation(where, f"must be a gRPC method name, got {names.shown(path)}"))
        return None
    if path.removeprefix("/").startswith(RESERVED_PACKAGES):
        problems.append(FieldViolation(where, f"a saga step cannot call the control plane's own or gRPC's "
                                              f"built-in services, got {names.shown(path)}"))
        return None
    try:
        return methods.resolve(path)
    except methods.UnknownMethod as exc:
        problems.append(FieldViolation(where, str(exc)))
        return None


def _retry(proto: saga_pb2.RetryPolicy | None, where: str, default: Retry) -> tuple[Retry, list[FieldViolation]]:
    if proto is None:
        return default, []
    problems: list[FieldViolation] = []
    attempts = proto.max_attempts or default.max_attempts
    initial, maximum = default.initial, None
    if proto.HasField("initial_backoff"):
        initial, found = duration_seconds(proto.initial_backoff, f"{where}.initial_backoff")
        problems += found
    if proto.HasField("max_backoff"):
        maximum, found = duration_seconds(proto.max_backoff, f"{where}.max_backoff")
        problems += found
    if problems:
        return default, problems
    maximum = max(default.maximum, initial) if maximum is None else maximum
    multiplier = proto.backoff_multiplier or default.multiplier
    if not 1 <= attempts <= 100:
        problems.append(FieldViolation(f"{where}.max_attempts", f"must be 1..100, got {attempts}"))
    if not 0 <= initial <= 3600 or not 0 <= maximum <= 3600:
        problems.append(FieldViolation(f"{where}", "backoffs must be between 0s and 3600s"))
    if maximum < initial:
        problems.append(FieldViolation(f"{where}.max_backoff", f"must be at least initial_backoff ({initial:g}s)"))
    if not 1 <= multiplier <= 100:  # NaN fails this too
        problems.append(FieldViolation(f"{where}.backoff_multiplier", f"must be 1..100, got {multiplier:g}"))
    return Retry(attempts, initial, maximum, multiplier), problems


def check_template(template: Mapping[str, Any], descriptor: Descriptor, where: str) -> list[FieldViolation]:
    """Problems of a request template against the request type: unknown fields, bad references, literals."""
    problems: list[FieldViolation] = []
    for key, value in template.items():
        field = descriptor.fields_by_name.get(key) or descriptor.fields_by_camelcase_name.get(key)
        at = f"{where}.{key}"
        if field is None:
            known = ", ".join(descriptor.fields_by_name) or "none"
            problems.append(FieldViolation(at, f"{descriptor.full_name} has no field {key!r} (fields: {known})"))
            continue
        problems += _check_value(value, field, at)
    return problems


def _check_value(value: Any, field: FieldDescriptor, at: str) -> list[FieldViolation]:
    if templates.is_reference(value):
        if templates.valid_reference(value):
            return []
        return [FieldViolation(at, f"references look like $.a.b, got {value!r}")]
    message = field.message_type
    plain_message = message is not None and not message.GetOptions().map_entry and \
        not message.full_name.startswith("google.protobuf.")
    if field.is_repeated and isinstance(value, list) and plain_message:
        problems: list[FieldViolation] = []
        for i, item in enumerate(value):
            if isinstance(item, Mapping):
                problems += check_template(item, message, f"{at}[{i}]")
            elif templates.is_reference(item):
                problems += _check_value(item, field, f"{at}[{i}]")
            else:
                problems.append(FieldViolation(f"{at}[{i}]", f"must be an object ({message.full_name})"))
        return problems
    if plain_message and isinstance(value, Mapping) and not field.is_repeated:
        return check_template(value, message, at)
    if templates.contains_reference(value):
        return []  # checked when rendered: the data's type is known only then
    try:
        holder = message_factory.GetMessageClass(field.containing_type)()
        json_format.ParseDict({field.name: value}, holder)
    except json_format.ParseError as exc:
        return [FieldViolation(at, f"cannot be built: {exc}")]
    return []


def _check_mapping(mapping: Mapping[str, str], descriptor: Descriptor, where: str) -> list[FieldViolation]:
    problems = []
    for data_path, field_path in mapping.items():
        at = f"{where}[{names.shown(data_path, 40)}]"
        if len(data_path) > 256 or not templates.DATA_PATH.fullmatch(data_path):
            problems.append(FieldViolation(at, f"saga data paths look like $.a.b or a.b, got {names.shown(data_path)}"))
        if len(field_path) > 256 or not templates.FIELD_PATH.fullmatch(field_path):
            problems.append(FieldViolation(at, f"response field paths look like a.b, got {names.shown(field_path)}"))
            continue
        node: Descriptor | None = descriptor
        for part in field_path.split("."):
            field = node.fields_by_name.get(part) if node is not None else None
            if field is None:
                problems.append(FieldViolation(at, f"{descriptor.full_name} has no field path {field_path!r}"))
                break
            node = field.message_type
    return problems


def same_content(a: saga_pb2.SagaDefinition, b: saga_pb2.SagaDefinition) -> bool:
    """Equal apart from the version number."""
    a2, b2 = saga_pb2.SagaDefinition(), saga_pb2.SagaDefinition()
    a2.CopyFrom(a)
    b2.CopyFrom(b)
    a2.version = b2.version = 0
    return a2.SerializeToString(deterministic=True) == b2.SerializeToString(deterministic=True)


def load_definitions_file(path: str | Path) -> list[saga_pb2.SagaDefinition]:
    """Definitions from a YAML or JSON file: one definition, a list, or {"definitions": [...]}.

    Fields use the proto JSON form: durations as "5s", templates as objects.
    """
    raw = yaml.safe_load(Path(path).read_text())
    items = raw.get("definitions", [raw]) if isinstance(raw, Mapping) else raw
    if not isinstance(items, list):
        raise ValueError(f"{path}: expected a definition, a list of them, or {{definitions: [...]}}")
    found = []
    for i, item in enumerate(items):
        try:
            found.append(json_format.ParseDict(json.loads(json.dumps(item)), saga_pb2.SagaDefinition()))
        except json_format.ParseError as exc:
            raise ValueError(f"{path}: definition #{i}: {exc}") from exc
    return found
