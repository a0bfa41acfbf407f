"""Run the order service: `python -m services.order`."""

import sys

import grpc
from demo.order.v1 import order_pb2

from services.common.runner import ServiceSpec, main

SERVICE_NAME = order_pb2.DESCRIPTOR.services_by_name["OrderService"].full_name


def add_to_server(server: grpc.Server) -> None:
    """Business RPCs answer UNIMPLEMENTED until the demo's servicers land."""


SPEC = ServiceSpec(name="order", grpc_services=[SERVICE_NAME], add_to_server=add_to_server, default_port=50062)

if __name__ == "__main__":
    sys.exit(main(SPEC))
