"""Place an order with a stock gRPC client: grpcio, the demo's .proto files and an xDS bootstrap, nothing else.

    GRPC_XDS_BOOTSTRAP_CONFIG="$(.venv/bin/controlplane xds bootstrap)" \
        .venv/bin/python examples/xds/place_order.py alice apple 2

The channel dials xds:///order: gRPC's own xDS client asks the control plane where `order` runs and which
traffic policy applies (timeouts, retries, splits, faults), and follows it as it changes.
"""

import sys
import time
from pathlib import Path

import grpc

# The messages and stubs come from the .proto files at run time (grpcio-tools), not from generated code.
sys.path.append(str(Path(__file__).resolve().parents[2] / "protos"))
order_pb2, order_grpc = grpc.protos_and_services("demo/order/v1/order.proto")


def main(user: str, sku: str, quantity: int) -> int:
    with grpc.insecure_channel("xds:///order") as channel:
        orders = order_grpc.OrderServiceStub(channel)
        item = order_pb2.OrderItem(sku=sku, quantity=quantity, unit_price_cents=150)
        placed = orders.CreateOrder(order_pb2.CreateOrderRequest(user_id=user, items=[item]), timeout=10,
                                    wait_for_ready=True)
        order = placed.order
        for _ in range(200):  # the saga settles it: CONFIRMED, or CANCELLED when a step failed
            if order.status != order_pb2.ORDER_STATUS_PENDING:
                break
            time.sleep(0.05)
            order = orders.GetOrder(order_pb2.GetOrderRequest(order_id=order.order_id), timeout=5).order
        print(f"order {order.order_id}: {order_pb2.OrderStatus.Name(order.status)} (saga {placed.saga_id})")
        return 0 if order.status != order_pb2.ORDER_STATUS_PENDING else 1


if __name__ == "__main__":
    user, sku, quantity = [*sys.argv[1:], "alice", "apple", "1"][:3] if len(sys.argv) == 1 else sys.argv[1:4]
    sys.exit(main(user, sku, int(quantity)))
