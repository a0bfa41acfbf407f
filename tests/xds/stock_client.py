"""A stock gRPC client: grpcio and nothing of this project, configured only by GRPC_XDS_BOOTSTRAP_CONFIG.

Reads one JSON command a line on stdin, answers one JSON line on stdout:
    {"calls": N, "target": "xds:///svc", "metadata": [[k, v]], "timeout": 5}
        -> {"by": {backend: count}, "errors": {code: count}, "ms": [latencies]}
Run as `stock_client.py sync` or `stock_client.py aio`. Channels are made once per target and kept, as an
application would, so policy changes reach a running client.
"""

import asyncio
import json
import sys
import time

import grpc

METHOD = "/xds.test.Echo/Who"


def answer(by: dict, errors: dict, ms: list) -> None:
    sys.stdout.write(json.dumps({"by": by, "errors": errors, "ms": ms}) + "\n")
    sys.stdout.flush()


def run_sync() -> None:
    channels = {}
    for line in sys.stdin:
        command = json.loads(line)
        target = command["target"]
        if target not in channels:
            channels[target] = grpc.insecure_channel(target).unary_unary(METHOD)
        call = channels[target]
        by, errors, ms = {}, {}, []
        for _ in range(command["calls"]):
            started = time.perf_counter()
            try:
                who = call(b"", timeout=command.get("timeout", 5), metadata=command.get("metadata") or None,
                           wait_for_ready=command.get("wait_for_ready"))
                by[who.decode()] = by.get(who.decode(), 0) + 1
            except grpc.RpcError as error:
                errors[error.code().name] = errors.get(error.code().name, 0) + 1
            ms.append((time.perf_counter() - started) * 1000)
        answer(by, errors, ms)


async def run_aio() -> None:
    channels = {}
    reader = asyncio.StreamReader()
    await asyncio.get_running_loop().connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        command = json.loads(line)
        target = command["target"]
        if target not in channels:
            channels[target] = grpc.aio.insecure_channel(target).unary_unary(METHOD)
        call = channels[target]
        by, errors, ms = {}, {}, []
        for _ in range(command["calls"]):
            started = time.perf_counter()
            try:
                who = await call(b"", timeout=command.get("timeout", 5), metadata=command.get("metadata") or None,
                                 wait_for_ready=command.get("wait_for_ready"))
                by[who.decode()] = by.get(who.decode(), 0) + 1
            except grpc.RpcError as error:
                errors[error.code().name] = errors.get(error.code().name, 0) + 1
            ms.append((time.perf_counter() - started) * 1000)
        answer(by, errors, ms)


if __name__ == "__main__":
    if sys.argv[1:] == ["aio"]:
        asyncio.run(run_aio())
    else:
        run_sync()
