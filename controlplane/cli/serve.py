"""`controlplane serve`: run the control plane until SIGTERM or SIGINT."""

from __future__ import annotations

import asyncio
import logging
import signal

from controlplane.interceptors import TraceContextFilter, setup_tracing
from controlplane.server import ControlPlane
from controlplane.settings import ServerSettings


async def serve(settings: ServerSettings) -> int:
    logging.getLogger().handlers[0].addFilter(TraceContextFilter())
    provider = setup_tracing("controlplane")
    plane = await ControlPlane(settings).start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"controlplane: serving on {settings.listen.rpartition(':')[0]}:{plane.port}", flush=True)
    await stop.wait()
    logging.getLogger(__name__).info("shutting down (grace %.1fs)", settings.shutdown_grace)
    await plane.stop()
    provider.shutdown()  # flushes the last spans
    return 0
