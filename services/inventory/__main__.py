"""Run the inventory service: `python -m services.inventory`."""

import sys

import grpc

from demo.inventory.v1 import inventory_pb2, inventory_pb2_grpc
from services.common.database import Database
from services.common.idempotency import key_store
from services.common.runner import Runtime, ServiceSpec, main
from services.inventory.servicer import InventoryServicer
from services.inventory.store import SCHEMA, InventoryStore

SERVICE_NAME = inventory_pb2.DESCRIPTOR.services_by_name["InventoryService"].full_name


def add_to_server(server: grpc.Server, runtime: Runtime) -> None:
    db = Database.for_service("inventory", SCHEMA)
    keys = key_store("inventory")
    runtime.closers.append(keys.close)
    runtime.closers.append(db.close)
    inventory_pb2_grpc.add_InventoryServiceServicer_to_server(
        InventoryServicer(InventoryStore(db), runtime.fault_injector(), keys), server
    )


SPEC = ServiceSpec(name="inventory", grpc_services=[SERVICE_NAME], add_to_server=add_to_server, default_port=50064)

if __name__ == "__main__":
    sys.exit(main(SPEC))
