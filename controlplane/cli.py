"""`controlplane` command line: `controlplane serve` runs the control plane."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

from controlplane.server import ControlPlane
from controlplane.settings import ServerSettings


async def serve(settings: ServerSettings) -> int:
    plane = await ControlPlane(settings).start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(
        f"controlplane: serving on 127.0.0.1:{plane.port}"
        if settings.listen.startswith("127.0.0.1")
        else f"controlplane: serving on {settings.listen}",
        flush=True,
    )
    await stop.wait()
    logging.getLogger(__name__).info("shutting down (grace %.1fs)", settings.shutdown_grace)
    await plane.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: controlplane serve [--listen HOST:PORT] [--consul HOST:PORT] ...  (serve --help for all)")
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command == "serve":
        return asyncio.run(serve(ServerSettings.from_args(rest)))
    print(f"controlplane: unknown command {command!r}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
