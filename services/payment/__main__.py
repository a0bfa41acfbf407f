"""Run the payment service: `python -m services.payment`."""

import sys

import grpc

from demo.payment.v1 import payment_pb2, payment_pb2_grpc
from services.common.database import Database
from services.common.dependencies import UserCheck
from services.common.idempotency import key_store
from services.common.runner import Runtime, ServiceSpec, main
from services.payment.servicer import PaymentServicer
from services.payment.store import SCHEMA, PaymentStore

SERVICE_NAME = payment_pb2.DESCRIPTOR.services_by_name["PaymentService"].full_name


def add_to_server(server: grpc.Server, runtime: Runtime) -> None:
    db = Database.for_service("payment", SCHEMA)
    keys = key_store("payment")
    runtime.closers.append(keys.close)
    runtime.closers.append(db.close)
    payment_pb2_grpc.add_PaymentServiceServicer_to_server(
        PaymentServicer(PaymentStore(db), runtime.fault_injector(), keys, UserCheck(runtime.channel_to("user"))),
        server,
    )


SPEC = ServiceSpec(name="payment", grpc_services=[SERVICE_NAME], add_to_server=add_to_server, default_port=50063)

if __name__ == "__main__":
    sys.exit(main(SPEC))
