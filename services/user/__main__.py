"""Run the user service: `python -m services.user`."""

import sys

import grpc

from demo.user.v1 import user_pb2, user_pb2_grpc
from services.common.database import Database
from services.common.runner import Runtime, ServiceSpec, main
from services.user.servicer import UserServicer
from services.user.store import SCHEMA, UserStore

SERVICE_NAME = user_pb2.DESCRIPTOR.services_by_name["UserService"].full_name


def add_to_server(server: grpc.Server, runtime: Runtime) -> None:
    db = Database.for_service("user", SCHEMA)
    runtime.closers.append(db.close)
    user_pb2_grpc.add_UserServiceServicer_to_server(UserServicer(UserStore(db)), server)


SPEC = ServiceSpec(name="user", grpc_services=[SERVICE_NAME], add_to_server=add_to_server, default_port=50061)

if __name__ == "__main__":
    sys.exit(main(SPEC))
