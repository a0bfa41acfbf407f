"""The instance cache against a real Consul: when every watch is taken, Discover still answers."""

from __future__ import annotations

import asyncio
import uuid

from consul.aio import Consul

from controlplane.consul.access import split_address
from controlplane.consul.local_agent import LocalConsul
from controlplane.registry.cache import CacheSettings, InstanceCache
from controlplane.registry.model import Instance
from controlplane.registry.store import Registration, RegistryStore, TtlCheck


def test_with_every_watch_followed_a_service_without_one_is_answered_from_consul(consul: LocalConsul) -> None:
    # Watch streams on as many services as the cache watches (256; 1 here) made Discover of any other
    # service RESOURCE_EXHAUSTED for every client, and saga steps to such a service UNAVAILABLE (the saga
    # invoker resolves participants through the same cache).
    async def scenario() -> tuple[list[str], bool]:
        host, port = split_address(consul.http_addr)
        client = Consul(host=host, port=port)
        store = RegistryStore(client, client)
        cache = InstanceCache(store, CacheSettings(max_watches=1))
        followed, other = (f"cache-{name}-{uuid.uuid4().hex[:6]}" for name in ("followed", "other"))
        try:
            for n, service in enumerate((followed, other)):
                await store.register(Registration(Instance(service, f"{service}-0", "127.0.0.1", 7000 + n),
                                                  TtlCheck(30)))
            await cache.current(followed)
            follower = cache.watch(followed).subscribe()
            await follower.__anext__()  # the one watch has a subscriber: it cannot be dropped
            answer = await asyncio.wait_for(cache.current(other), 10)
            still_one = not cache._watches.has(other)
            await follower.aclose()
            return [i.instance_id for i in answer.value or ()], still_one
        finally:
            await cache.stop()
            await store.close()
            await client.close()

    ids, no_new_watch = asyncio.run(scenario())
    assert len(ids) == 1 and ids[0].startswith("cache-other-") and no_new_watch
