"""Configuration: per-service JSON documents in Consul KV, layered, validated, versioned and watched.

Roles, by file:
- `document.py`, `diff.py`, `flags.py`, `secrets.py`, `schema.py`, `validation.py`: pure rules (merge, change
  summaries, flag evaluation, secret references, JSON Schema checks, request checks), testable without a network.
- `model.py`: the records a service's configuration is made of, and the documents they merge into.
- `store.py`: where those records live in Consul (the key layout is documented there) and how they are written.
- `writer.py`: the versioned writes (optimistic concurrency, validation, history).
- `watches.py`: one Consul blocking query per watched service, fanned out to every WatchConfig stream.
- `servicer.py`: controlplane.v1.ConfigService, wire <-> domain.
- `client.py`: `ConfigClient`, what a service embeds to receive its configuration live.
"""
