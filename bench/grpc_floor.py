"""The gRPC work a saga needs, and nothing else: the floor under the control plane's CPU per saga.

A grpc.aio process serves StartSaga and, for each request, makes the saga's three participant calls
(Reserve, Charge, ConfirmOrder, each with an idempotency key) to the bench's participants over one
channel: no interceptors, no Consul, no saga state, no JSON. Its CPU time per request, offered at the
same rates on the same machine in the same run, is what grpcio alone costs a saga here; `saga_bench.py`
prints it beside the control plane's CPU per saga.

    python bench/grpc_floor.py --listen HOST:PORT --participants HOST:PORT   (until SIGTERM)
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import time
from typing import Any

import grpc
import grpc.aio
from proc_cpu import cpu_seconds

from controlplane.v1 import saga_pb2, saga_pb2_grpc
from demo.inventory.v1 import inventory_pb2
from demo.order.v1 import order_pb2
from demo.payment.v1 import payment_pb2

READY = "floor ready"


def _method(channel: grpc.aio.Channel, path: str, request: Any, response: Any) -> Any:
    return channel.unary_unary(path, request_serializer=request.SerializeToString,
                               response_deserializer=response.FromString)


async def serve(listen: str, participants: str) -> None:
    """Serve StartSaga on `listen` until SIGTERM; each request makes the three participant calls."""
    channel = grpc.aio.insecure_channel(participants)
    reserve = _method(channel, "/demo.inventory.v1.InventoryService/Reserve", inventory_pb2.ReserveRequest,
                      inventory_pb2.ReserveResponse)
    charge = _method(channel, "/demo.payment.v1.PaymentService/Charge", payment_pb2.ChargeRequest,
                     payment_pb2.ChargeResponse)
    confirm = _method(channel, "/demo.order.v1.OrderService/ConfirmOrder", order_pb2.ConfirmOrderRequest,
                      order_pb2.ConfirmOrderResponse)

    class Floor(saga_pb2_grpc.SagaServiceServicer):
        async def StartSaga(self, request: saga_pb2.StartSagaRequest, context: Any) -> saga_pb2.StartSagaResponse:
            order, key = request.input["order_id"], request.saga_id
            await reserve(inventory_pb2.ReserveRequest(order_id=order, items=[inventory_pb2.StockItem(
                sku="sku-1", quantity=1)]), metadata=(("idempotency-key", f"{key}/0"),), timeout=10)
            await charge(payment_pb2.ChargeRequest(order_id=order, user_id="u1", amount_cents=1999),
                         metadata=(("idempotency-key", f"{key}/1"),), timeout=10)
            await confirm(order_pb2.ConfirmOrderRequest(order_id=order), metadata=(("idempotency-key", f"{key}/2"),),
                          timeout=10)
            return saga_pb2.StartSagaResponse(created=True)

    server = grpc.aio.server()
    saga_pb2_grpc.add_SagaServiceServicer_to_server(Floor(), server)
    server.add_insecure_port(listen)
    await server.start()
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    print(READY, flush=True)
    await stop.wait()
    await server.stop(0)
    await channel.close()


async def cpu_per_request(address: str, pid: int, rate: float, seconds: float) -> float | None:
    """CPU seconds process `pid` spends per StartSaga offered open loop at `rate` for `seconds` (None when /proc
    cannot tell)."""
    async with grpc.aio.insecure_channel(address) as channel:
        stub = saga_pb2_grpc.SagaServiceStub(channel)

        async def one(i: int) -> None:
            request = saga_pb2.StartSagaRequest(saga_id=f"floor-{rate:g}-{i}", definition_name="bench-order")
            request.input.update({"order_id": f"floor-{rate:g}-{i}", "user_id": "u1", "amount": 1999,
                                  "items": [{"sku": "sku-1", "quantity": 1}]})
            await stub.StartSaga(request, timeout=30)

        await asyncio.gather(*(one(-i) for i in range(1, 21)))  # warm: channels and first calls
        before = cpu_seconds(pid)
        begin, total, tasks = time.monotonic(), int(rate * seconds), []
        for i in range(total):
            delay = begin + i / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.ensure_future(one(i)))
        await asyncio.gather(*tasks)
        after = cpu_seconds(pid)
    return (after - before) / total if before is not None and after is not None and total else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", required=True)
    parser.add_argument("--participants", required=True)
    args = parser.parse_args()
    asyncio.run(serve(args.listen, args.participants))


if __name__ == "__main__":
    main()
