"""Run the order service: `python -m services.order`."""

import argparse
import os
import sys
from collections.abc import Mapping

import grpc

from controlplane.endpoints import START_SAGA
from controlplane.flags import seconds
from demo.order.v1 import order_pb2, order_pb2_grpc
from services.common.database import Database
from services.common.idempotency import key_store
from services.common.runner import Runtime, ServiceSpec, main
from services.order.dependencies import SagaStarter, UserCheck
from services.order.outbox import SagaOutbox
from services.order.servicer import OrderServicer
from services.order.store import SCHEMA, OrderStore

SERVICE_NAME = order_pb2.DESCRIPTOR.services_by_name["OrderService"].full_name


def outbox_interval(environ: Mapping[str, str]) -> float:
    """ORDER_OUTBOX_INTERVAL, seconds between the outbox's passes (0.01..3600, default 1)."""
    raw = environ.get("ORDER_OUTBOX_INTERVAL", "1.0")
    try:
        return seconds(0.01, 3600)(raw)
    except argparse.ArgumentTypeError as exc:
        raise SystemExit(f"order: ORDER_OUTBOX_INTERVAL {exc}") from None


def add_to_server(server: grpc.Server, runtime: Runtime) -> None:
    interval = outbox_interval(os.environ)
    db = Database.for_service("order", SCHEMA)
    keys = key_store("order")
    runtime.closers += [db.close, keys.close]
    store = OrderStore(db)
    outbox = SagaOutbox(store, SagaStarter(runtime.control_plane_channel(idempotent=[START_SAGA])),
                        interval=interval).start()
    runtime.closers.append(outbox.stop)
    servicer = OrderServicer(store, check_user=UserCheck(runtime.channel_to("user")), place=outbox.place, keys=keys)
    order_pb2_grpc.add_OrderServiceServicer_to_server(servicer, server)


SPEC = ServiceSpec(name="order", grpc_services=[SERVICE_NAME], add_to_server=add_to_server, default_port=50062)

if __name__ == "__main__":
    sys.exit(main(SPEC))
