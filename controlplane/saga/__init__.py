"""Sagas: business transactions across services, recorded as event streams in Consul. See docs/saga.md.

Layout, by role:
- `definitions.py` (checked against descriptors via `methods.py`, templates in `templates.py`): sagas as data.
- `state.py` (the fold of a saga's events) and `planner.py` (what to do next): pure domain logic.
- `eventstore/`: the generic append-only event store on Consul KV (group commit, subscriptions).
- `repository.py`, `projections.py`, `definition_store.py`: saga persistence and read models in Consul.
- `leases.py`: which replica drives which saga (a Consul session and a lock per saga).
- `invoker.py`: generic gRPC calls to participants; `orchestrator.py`: drives sagas.
- `servicer.py` (with `convert.py`): controlplane.v1.SagaService on the wire; `service.py` wires it all.
- `idempotency.py`: the participant-side helper that makes repeated steps harmless.
"""
