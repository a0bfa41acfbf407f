"""Definitions are data, checked against the participants' descriptors when registered."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from google.protobuf import json_format

from controlplane.errors import ValidationError
from controlplane.saga.definitions import compile_definition, load_definitions_file
from controlplane.v1 import saga_pb2
from tests.saga.sagas import order_definition

SERVICES = {"inventory": "inventory", "payment": "payment", "order": "order"}


def problems(definition: saga_pb2.SagaDefinition) -> dict[str, str]:
    with pytest.raises(ValidationError) as refused:
        compile_definition(definition)
    return {v.field: v.description for v in refused.value.violations}


def test_order_definition_compiles_with_defaults_filled_in() -> None:
    definition = compile_definition(order_definition("order", SERVICES))

    reserve = definition.steps[0]
    assert reserve.action.request_type.DESCRIPTOR.full_name == "demo.inventory.v1.ReserveRequest"
    assert reserve.compensation is not None
    assert reserve.compensation.response_type.DESCRIPTOR.full_name == "demo.inventory.v1.ReleaseResponse"
    # No compensation template: the action's fields the compensation's request also has.
    assert reserve.compensation_template == {"order_id": "$.order_id"}
    assert (reserve.timeout, reserve.retry.max_attempts, definition.timeout) == (2.0, 3, None)


def test_unknown_method_is_named_with_what_the_service_has() -> None:
    definition = order_definition("order", SERVICES)
    definition.steps[0].action = "/demo.inventory.v1.InventoryService/Reserv"
    definition.steps[1].action = "/demo.nothing.v1.Nope/Call"

    found = problems(definition)

    assert "has no method 'Reserv'; it has AddStock, GetStock, Release, Reserve" in found[
        "definition.steps[0].action"]
    assert "unknown service 'demo.nothing.v1.Nope'" in found["definition.steps[1].action"]


def test_template_fields_and_literals_are_checked_against_the_request_type() -> None:
    definition = order_definition("order", SERVICES)
    definition.steps[0].request_template.update({"warehouse": "$.warehouse"})
    definition.steps[1].request_template.update({"amount_cents": "a lot", "user_id": "$.bad..path"})

    found = problems(definition)

    assert "demo.inventory.v1.ReserveRequest has no field 'warehouse'" in found[
        "definition.steps[0].request_template.warehouse"]
    assert "cannot be built" in found["definition.steps[1].request_template.amount_cents"]
    assert "references look like $.a.b" in found["definition.steps[1].request_template.user_id"]


def test_response_mapping_must_name_response_fields() -> None:
    definition = order_definition("order", SERVICES)
    definition.steps[1].response_mapping["payment_id"] = "payment.id"

    found = problems(definition)

    assert "has no field path 'payment.id'" in found["definition.steps[1].response_mapping['payment_id']"]


def test_names_steps_and_retry_limits_are_checked_together() -> None:
    definition = order_definition("Order Saga", SERVICES)
    definition.steps[2].name = "reserve"
    definition.steps[0].retry.max_attempts = 1000
    definition.steps[0].target_service = "Not A Service"

    found = problems(definition)

    assert set(found) == {"definition.name", "definition.steps[2].name", "definition.steps[0].retry.max_attempts",
                          "definition.steps[0].target_service"}


def test_definitions_load_from_yaml_files(tmp_path: Path) -> None:
    raw = json_format.MessageToDict(order_definition("order", SERVICES))
    path = tmp_path / "sagas.yaml"
    path.write_text(yaml.safe_dump({"definitions": [raw, {**raw, "name": "order-b"}]}))

    loaded = load_definitions_file(path)

    assert [d.name for d in loaded] == ["order", "order-b"]
    assert compile_definition(loaded[1]).steps[2].compensation_template["reason"] == "saga compensated"
