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


class Tally:
    """One command's outcomes: calls by the backend that answered, failures by code, latencies."""

    def __init__(self) -> None:
        self.by, self.errors, self.ms = {}, {}, []
        self.started = 0.0

    def start(self) -> None:
        self.started = time.perf_counter()

    def answered(self, who: bytes) -> None:
        self.by[who.decode()] = self.by.get(who.decode(), 0) + 1
        self.ms.append((time.perf_counter() - self.started) * 1000)

    def failed(self, error: grpc.RpcError) -> None:
        self.errors[error.code().name] = self.errors.get(error.code().name, 0) + 1
        self.ms.append((time.perf_counter() - self.started) * 1000)

    def answer(self) -> None:
        sys.stdout.write(json.dumps({"by": self.by, "errors": self.errors, "ms": self.ms}) + "\n")
        sys.stdout.flush()


def options(command: dict) -> dict:
    return {"timeout": command.get("timeout", 5), "metadata": command.get("metadata") or None,
            "wait_for_ready": command.get("wait_for_ready")}


def run_sync() -> None:
    channels = {}
    for line in sys.stdin:
        command = json.loads(line)
        target = command["target"]
        if target not in channels:
            channels[target] = grpc.insecure_channel(target).unary_unary(METHOD)
        call, tally = channels[target], Tally()
        for _ in range(command["calls"]):
            tally.start()
            try:
                tally.answered(call(b"", **options(command)))
            except grpc.RpcError as error:
                tally.failed(error)
        tally.answer()


async def run_aio() -> None:
    channels = {}
    reader = asyncio.StreamReader()
    await asyncio.get_running_loop().connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        command = json.loads(line)
        target = command["target"]
        if target not in channels:
            channels[target] = grpc.aio.insecure_channel(target).unary_unary(METHOD)
        call, tally = channels[target], Tally()
        for _ in range(command["calls"]):
            tally.start()
            try:
                tally.answered(await call(b"", **options(command)))
            except grpc.RpcError as error:
                tally.failed(error)
        tally.answer()


if __name__ == "__main__":
    if sys.argv[1:] == ["aio"]:
        asyncio.run(run_aio())
    else:
        run_sync()
