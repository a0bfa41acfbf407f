"""Run the inventory service: `python -m services.inventory`."""

import sys

import grpc
from demo.inventory.v1 import inventory_pb2

from services.common.runner import ServiceSpec, main

SERVICE_NAME = inventory_pb2.DESCRIPTOR.services_by_name["InventoryService"].full_name


def add_to_server(server: grpc.Server) -> None:
    """Business RPCs answer UNIMPLEMENTED until the demo's servicers land."""


SPEC = ServiceSpec(name="inventory", grpc_services=[SERVICE_NAME], add_to_server=add_to_server, default_port=50064)

if __name__ == "__main__":
    sys.exit(main(SPEC))
