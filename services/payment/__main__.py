"""Run the payment service: `python -m services.payment`."""

import sys

import grpc
from demo.payment.v1 import payment_pb2

from services.common.runner import ServiceSpec, main

SERVICE_NAME = payment_pb2.DESCRIPTOR.services_by_name["PaymentService"].full_name


def add_to_server(server: grpc.Server) -> None:
    """Business RPCs answer UNIMPLEMENTED until the demo's servicers land."""


SPEC = ServiceSpec(name="payment", grpc_services=[SERVICE_NAME], add_to_server=add_to_server, default_port=50063)

if __name__ == "__main__":
    sys.exit(main(SPEC))
