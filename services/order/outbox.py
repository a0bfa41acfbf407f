"""Every recorded order gets its saga: the order table is the outbox of StartSaga.

CreateOrder records the order PENDING (`saga_started = 0`) and then starts its saga. StartSaga is
idempotent by saga id, so an answer that is lost, a control-plane replica that dies mid-call or an order
service that dies between the two steps is mended by starting it again: `place` retries ambiguous
failures for a while, and a sweep starts the saga of every PENDING order whose start was never
confirmed. Only a definite refusal (the saga service says it will never run this saga) cancels the
order; an ambiguous failure never does, since the saga may be running. Once started, the saga settles
the order: its first step is `compensate_always`, so any end but completion cancels it.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable

from services.common.dependencies import DependencyUnavailable
from services.order.dependencies import SagaRefused
from services.order.store import OrderStore

log = logging.getLogger(__name__)

# start_saga(saga_id, order): raises SagaRefused (it will never start) or DependencyUnavailable (unknown).
StartSaga = Callable[[str, sqlite3.Row], None]


class SagaOutbox:
    """Starts the sagas of recorded orders, now (`place`) and, for any left behind, in a sweep.

    interval: seconds between sweeps. grace: an order is swept only once it is this old, so a
    CreateOrder still starting its saga is left to finish (starting twice would be harmless anyway).
    """

    def __init__(self, store: OrderStore, start_saga: StartSaga, *, interval: float = 1.0, grace: float = 2.0,
                 clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._start_saga = start_saga
        self._interval = interval
        self._grace = grace
        self._clock = clock
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    def place(self, order: sqlite3.Row) -> None:
        """Start the order's saga and note that it started. A refusal cancels the order and re-raises;
        an ambiguous failure re-raises and leaves the order to the sweep."""
        try:
            self._start_saga(order["saga_id"], order)
        except SagaRefused as exc:
            self._store.cancel(order["order_id"], f"the saga could not start: {exc.message}")
            raise
        self._store.mark_saga_started(order["order_id"])

    def sweep(self) -> int:
        """Start the saga of every order left unstarted; how many were started or settled."""
        settled = 0
        for order in self._store.unstarted(self._clock() - self._grace):
            if self._stopped.is_set():
                break
            try:
                self.place(order)
            except SagaRefused as exc:
                log.warning("order %s cancelled: its saga was refused (%s)", order["order_id"], exc.message)
            except DependencyUnavailable as exc:
                log.info("order %s: its saga still cannot be started (%s); trying again", order["order_id"],
                         exc.message)
                break  # the saga service is down: the next sweep tries again
            else:
                log.info("order %s: started its saga %s from the outbox", order["order_id"], order["saga_id"])
            settled += 1
        return settled

    def start(self) -> SagaOutbox:
        self._thread = threading.Thread(target=self._run, name="order-outbox", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopped.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stopped.wait(self._interval):
            try:
                self.sweep()
            except Exception:
                log.exception("order outbox sweep failed; trying again")
