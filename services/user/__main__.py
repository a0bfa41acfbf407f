"""Run the user service: `python -m services.user`."""

import sys

import grpc
from demo.user.v1 import user_pb2

from services.common.runner import ServiceSpec, main

SERVICE_NAME = user_pb2.DESCRIPTOR.services_by_name["UserService"].full_name


def add_to_server(server: grpc.Server) -> None:
    """Business RPCs answer UNIMPLEMENTED until the demo's servicers land."""


SPEC = ServiceSpec(name="user", grpc_services=[SERVICE_NAME], add_to_server=add_to_server, default_port=50061)

if __name__ == "__main__":
    sys.exit(main(SPEC))
