"""What the sagas Consul keeps cost: a ListSagas page, and sweeping sagas past their retention.

Run: `make bench` or `.venv/bin/python bench/list_sagas_bench.py [--sizes 1000,10000,50000]` (about a minute).
A throwaway Consul dev agent on loopback gets N sagas' view entries (and, for the sweep, their slot
entries and heads); the bench reads one ListSagas page from `SagasByStatus` with an event-loop probe
running beside it, then lets `EndedSagas.sweep()` remove them. Page times are shown as ratios to the page
of the smallest size, measured in the same run: ListSagas lists its view's keys for each page, so its
cost grows with the sagas kept, which `--saga-retention` bounds (docs/saga.md, "Retention").
"""

from __future__ import annotations

import argparse
import asyncio
import time

import consul.aio

from controlplane.consul.local_agent import LocalConsul
from controlplane.saga.eventstore import EventStore, GroupCommitter
from controlplane.saga.eventstore.txn import run_txn, set_op
from controlplane.saga.projections import SagasByStatus
from controlplane.saga.retention import EndedSagas

PREFIX = "bench/saga/"
ENDED_AT = 1_000_000.0  # long past: every slot is past any retention
AIM_STALL_MS = 50.0  # the longest event-loop stall a page may cause (saga_bench's stall bound at 150/s)


async def _fill(client: consul.aio.Consul, ended: EndedSagas, view: SagasByStatus, count: int) -> None:
    batch = []
    for n in range(count):
        saga_id = f"saga-{n:08d}-{count}"
        status_key = f"{view.base}completed/place-order/{saga_id}"
        slot = f"{ended.base}{int(ENDED_AT) + 60:012d}/{saga_id}"
        batch += [set_op(status_key, {"saga_id": saga_id, "definition_name": "place-order", "status": 3}),
                  set_op(slot, status_key), set_op(f"{PREFIX}heads/{saga_id}", {"version": 8, "snapshot": 0})]
        if len(batch) >= 60:
            await run_txn(client, batch)
            batch = []
    if batch:
        await run_txn(client, batch)


async def _page(view: SagasByStatus) -> tuple[float, float]:
    """(ms for one page of 100, the longest event-loop stall meanwhile in ms)."""
    worst, running = 0.0, True

    async def probe() -> None:
        nonlocal worst
        while running:
            began = time.perf_counter()
            await asyncio.sleep(0.002)
            worst = max(worst, time.perf_counter() - began - 0.002)

    prober = asyncio.get_running_loop().create_task(probe())
    await asyncio.sleep(0.01)
    best = float("inf")
    for _ in range(3):
        began = time.perf_counter()
        page, _ = await view.list(None, "", 100, "")
        assert len(page) == 100
        best = min(best, time.perf_counter() - began)
    running = False
    await prober
    return best * 1000, worst * 1000


async def measure(http_addr: str, sizes: list[int]) -> None:
    host, port = http_addr.split(":")
    client = consul.aio.Consul(host=host, port=int(port))
    committer = GroupCommitter(lambda ops: run_txn(client, ops), window=0.0)  # only for the store's key layout
    store = EventStore(client, client, committer, PREFIX)
    view = SagasByStatus(client, PREFIX)
    ended = EndedSagas(client, store, view.key, retention=60.0, clock=lambda: ENDED_AT + 3600)
    baseline = None
    print(f"{'sagas kept':>10}  {'page ms':>8}  {'vs first':>8}  {'loop stall ms':>13}  {'sweep sagas/s':>13}")
    try:
        for count in sizes:
            await _fill(client, ended, view, count)
            page_ms, stall_ms = await _page(view)
            baseline = baseline or page_ms
            began = time.perf_counter()
            removed = await ended.sweep()
            rate = removed / (time.perf_counter() - began)
            assert removed == count, (removed, count)
            verdict = "ok" if stall_ms <= AIM_STALL_MS else "NOT met"
            print(f"{count:>10,}  {page_ms:>8.1f}  {page_ms / baseline:>7.2f}x  {stall_ms:>8.1f} ({verdict})  "
                  f"{rate:>13,.0f}")
    finally:
        await client.close()
    print(f"Aim: a page stalls the event loop at most {AIM_STALL_MS:.0f} ms (the sizes a day's retention keeps "
          "at the demo's rates are far larger: size the retention, docs/saga.md)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,50000", help="sagas kept, comma-separated")
    sizes = [int(s) for s in parser.parse_args().sizes.split(",")]
    agent = LocalConsul(dev=True).start()
    try:
        asyncio.run(measure(agent.http_addr, sizes))
    finally:
        agent.kill()


if __name__ == "__main__":
    main()
