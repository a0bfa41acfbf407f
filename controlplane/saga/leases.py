"""Which replica drives which saga: one Consul session per replica, one lock key per running saga.

    locks/<saga_id>    held by the session of the replica driving the saga; deleted when it ends

A saga's lock is taken in the same transaction that starts it, every later append checks it
(`check-session`), and the append that ends the saga deletes it. So a replica that lost its lock can
never record another transition: its append fails and it stops driving that saga.

The session has a TTL (Consul: at least 10 s) and is bound to the TTL check of a `controlplane-saga`
service instance the replica registers for itself and passes every second (Consul
drops a dead replica's instance a minute after it went critical). The check is passed on the local
agent whether or not the session could be renewed: a renewal needs a leader, a check pass does not,
so an election costs no session, and a pause of the agent shorter than `liveness_ttl` costs none
either; nor is the session bound to the node's `serfHealth`, which the cluster fails within seconds
of an agent's pause (a dead node's session lapses within twice its TTL instead). A session lost
anyway (a longer pause) is noticed, re-created, and the replica's sagas are
taken over again, by it or another replica.
When a replica dies its session is invalidated, its locks are released (lock delay 0), and the
others, which follow the session list with a blocking query, take the orphaned sagas over. A replica
restarting with the same id destroys its previous session first, so it resumes its own sagas at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import Callable
from typing import Any

import consul.aio

from controlplane.consul.client import consul_call
from controlplane.errors import ConsulUnavailable
from controlplane.saga.eventstore.txn import Op, delete_op, lock_op
from controlplane.watch import Backoff, BlockingQueryWatch

log = logging.getLogger(__name__)

# Each replica registers itself under this service, with the TTL check its session is bound to.
LIVENESS_SERVICE = "controlplane-saga"


def _check_session_op(key: str, session: str) -> Op:
    return {"KV": {"Verb": "check-session", "Key": key, "Session": session}}


class Leases:
    """This replica's Consul session and the saga locks it holds."""

    def __init__(
        self,
        client: consul.aio.Consul,
        blocking_client: consul.aio.Consul,
        prefix: str,
        replica_id: str,
        *,
        session_ttl: float = 10.0,
        liveness_ttl: float = 15.0,
        backoff: Backoff | None = None,
        watch_wait: float = 30.0,
        advertise: tuple[str, int] | None = None,
    ) -> None:
        self._consul = client
        self._advertise = advertise
        self._blocking = blocking_client
        self._base = f"{prefix}locks/"
        self.replica_id = replica_id
        self._session_ttl = max(10.0, session_ttl)
        self._liveness_ttl = liveness_ttl
        self._backoff = backoff or Backoff()
        self._watch_wait = watch_wait
        self._session_name = f"controlplane-saga {replica_id}"
        self._service_id = f"{LIVENESS_SERVICE}-" + re.sub(r"[^A-Za-z0-9_.-]", "-", replica_id)
        self._check_id = f"{self._service_id}-alive"
        self.session_id: str | None = None
        self._ready = asyncio.Event()
        # Set whenever some replica's session appeared or vanished, or ours was re-established.
        self.changed = asyncio.Event()
        self._watch: BlockingQueryWatch[frozenset[str]] | None = None
        self._suspect = asyncio.Event()  # set when a write found the session invalid: check it now
        self._established = asyncio.Event()  # set by every new session

    def lock_key(self, saga_id: str) -> str:
        return f"{self._base}{saga_id}"

    def _session(self) -> str:
        if self.session_id is None:
            raise ConsulUnavailable("this replica has no Consul session yet; retry shortly")
        return self.session_id

    def lock_op(self, saga_id: str) -> Op:
        """Take the saga's lock (in the transaction that starts it)."""
        return lock_op(self.lock_key(saga_id), self.replica_id, self._session())

    def check_op(self, saga_id: str) -> Op:
        """Fail the transaction unless this replica still holds the saga's lock."""
        return _check_session_op(self.lock_key(saga_id), self._session())

    def release_op(self, saga_id: str) -> Op:
        """Delete the saga's lock (in the transaction that ends it)."""
        return delete_op(self.lock_key(saga_id))

    @property
    def ready(self) -> bool:
        """Whether this replica holds a Consul session now."""
        return self._ready.is_set()

    async def wait_ready(self) -> None:
        await self._ready.wait()

    # -- session lifecycle ----------------------------------------------------------------------

    async def _put(self, path: str, body: dict[str, Any]) -> Any:
        def answer(response: Any) -> Any:
            if response.code != 200:
                raise consul.ConsulException(f"{response.code} {response.body}")
            return json.loads(response.body) if response.body else None

        return await consul_call(self._consul.http.put(answer, path, data=json.dumps(body)), what=path)

    async def establish(self) -> str:
        """Replace any session this replica id left behind and create a fresh one."""
        _, sessions = await consul_call(self._consul.session.list(), what="list sessions")
        for old in sessions or []:
            if old.get("Name") == self._session_name:
                log.info("destroying session %s left by an earlier run of replica %s", old["ID"], self.replica_id)
                await consul_call(self._consul.session.destroy(old["ID"]), what="destroy session")
        # Not bound to the node's serfHealth: the cluster marks a paused agent failed within seconds,
        # which would cost the session in any pause. A dead node still loses it within twice the TTL.
        # (Consul 1.8 adds serfHealth as a node check unless NodeChecks says otherwise.)
        node_checks = [] if self._liveness_ttl > 0 else ["serfHealth"]
        service_checks = []
        if self._liveness_ttl > 0:
            # A service-level check: a node-level one would mark every service on the node critical
            # whenever a replica died.
            await self._put("/v1/agent/service/register", {
                "Name": LIVENESS_SERVICE,
                "ID": self._service_id,
                "Meta": {"replica": self.replica_id},
                **({"Address": self._advertise[0], "Port": self._advertise[1]} if self._advertise else {}),
                "Check": {
                    "CheckID": self._check_id,
                    "Name": f"saga replica {self.replica_id} alive",
                    "TTL": f"{int(self._liveness_ttl * 1000)}ms",
                    "Status": "passing",
                    "DeregisterCriticalServiceAfter": "1m",
                },
            })
            # Re-registering keeps a check's old status (critical, after a crash): pass it explicitly.
            await consul_call(self._consul.agent.check.ttl_pass(self._check_id), what="pass liveness")
            service_checks.append({"ID": self._check_id})
        created = await self._put("/v1/session/create", {
            "Name": self._session_name,
            "TTL": f"{int(self._session_ttl)}s",
            "LockDelay": "0s",
            "Behavior": "release",
            "NodeChecks": node_checks,
            "ServiceChecks": service_checks,
        })
        self.session_id = created["ID"]
        self._ready.set()
        self._established.set()
        self.changed.set()
        log.info("replica %s holds Consul session %s", self.replica_id, self.session_id)
        return self.session_id

    def suspect(self) -> None:
        """A write found the session invalid: check it now rather than at the next renewal."""
        self._suspect.set()

    async def run(self, on_lost: Callable[[], None]) -> None:
        """Establish the session and keep it alive; `on_lost` is called when Consul invalidated it."""
        liveness = asyncio.ensure_future(self._pass_liveness()) if self._liveness_ttl > 0 else None
        try:
            await self._renew(on_lost)
        finally:
            if liveness is not None:
                liveness.cancel()

    async def _pass_liveness(self) -> None:
        """Pass the liveness check every second (at most every third of its TTL), on the local agent: no
        leader needed, and a pass that changes nothing costs Consul no write. Frequent passes make the
        check survive an agent pause of nearly its whole TTL."""
        while True:
            await asyncio.sleep(min(1.0, self._liveness_ttl / 3))
            if self.session_id is None:
                continue  # establish() passes it when it registers the check again
            with contextlib.suppress(ConsulUnavailable, consul.ConsulException):
                await consul_call(self._consul.agent.check.ttl_pass(self._check_id), what="pass liveness")

    async def _renew(self, on_lost: Callable[[], None]) -> None:
        delay = self._backoff.initial
        interval = self._session_ttl / 3
        while True:
            try:
                if self.session_id is None:
                    await self.establish()
                self._suspect.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._suspect.wait(), interval)
                renewed = await consul_call(self._consul.session.renew(self.session_id), what="renew session")
                if renewed is None:
                    raise _SessionLost("Consul no longer knows the session")
                delay = self._backoff.initial
            except (_SessionLost, consul.ConsulException) as exc:
                log.warning("replica %s lost its Consul session (%s); stopping its drivers", self.replica_id, exc)
                self.session_id = None
                self._ready.clear()
                on_lost()
            except ConsulUnavailable as exc:
                log.warning("keeping the saga session alive failed: %s; retrying in %.2fs", exc, delay)
                await asyncio.sleep(delay)
                delay = self._backoff.next(delay)

    async def watch_sessions(self) -> None:
        """Set `changed` whenever the set of sessions changes (a replica came or went)."""

        async def fetch(index: int, wait: float) -> tuple[int, frozenset[str]]:
            new_index, sessions = await consul_call(
                self._blocking.session.list(index=index or None, wait=f"{int(wait * 1000)}ms"), what="watch sessions"
            )
            return int(new_index), frozenset(s["ID"] for s in sessions or [])

        self._watch = BlockingQueryWatch("saga sessions", fetch, wait=self._watch_wait, backoff=self._backoff).start()
        async with contextlib.aclosing(self._watch.subscribe()) as updates:
            async for _ in updates:
                self.changed.set()

    async def close(self) -> None:
        """Destroy the session, releasing every lock at once so other replicas take over without delay."""
        if self._watch is not None:
            await self._watch.stop()
        session, self.session_id = self.session_id, None
        self._ready.clear()
        with contextlib.suppress(Exception):
            if session:
                await consul_call(self._consul.session.destroy(session), what="destroy session")
            if self._liveness_ttl > 0:
                await consul_call(self._consul.agent.service.deregister(self._service_id), what="deregister")

    async def renewed_after_loss(self, timeout: float) -> bool:
        """After a write found this replica's session invalid: whether it was indeed gone and a new one
        is in place within `timeout` seconds (False: the session was valid, so the write failed for
        another reason, or no new session came in time)."""
        old = self.session_id
        if old is not None:
            info = await consul_call(self._consul.session.info(old), what="read session")
            if info[1] is not None:
                return False
        self._established.clear()
        self.suspect()
        try:
            await asyncio.wait_for(self._established.wait(), timeout)
        except TimeoutError:
            return False
        return True

    # -- locks ----------------------------------------------------------------------------------

    async def unowned(self) -> tuple[list[str], list[str]]:
        """(sagas whose lock no session holds, sagas whose lock this replica holds): the first lost their
        driver; of the second, any without a driver here lost it too (e.g. StartSaga's answer was lost)."""
        _, entries = await consul_call(self._consul.kv.get(self._base, recurse=True), what="list saga locks")
        free, mine = [], []
        for entry in entries or []:
            holder = entry.get("Session")
            if not holder:
                free.append(entry["Key"].removeprefix(self._base))
            elif holder == self.session_id:
                mine.append(entry["Key"].removeprefix(self._base))
        return sorted(free), sorted(mine)

    async def acquire(self, saga_id: str) -> bool:
        """Try to take an orphaned saga's lock."""
        return bool(await consul_call(
            self._consul.kv.put(self.lock_key(saga_id), self.replica_id, acquire=self._session()), what="acquire"
        ))

    async def holds(self, saga_id: str) -> bool:
        """Whether this replica's session holds the saga's lock right now."""
        _, entry = await consul_call(self._consul.kv.get(self.lock_key(saga_id)), what="read saga lock")
        return bool(entry) and self.session_id is not None and entry.get("Session") == self.session_id


class _SessionLost(Exception):
    pass
