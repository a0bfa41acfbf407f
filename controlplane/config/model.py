"""What a service's configuration is made of, and the documents it merges into.

Versions are service-wide: every write to any layer of a service takes the next number (1, 2, 3, ...),
so one number orders a service's whole history. A layer's version is the version of its last write; a
merged document's version is the highest of the layers that went into it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from controlplane.config.document import checksum, merge, strip_markers

DEFAULT_LAYER = ""


def environment_label(environment: str) -> str:
    """How an environment is named in messages: the default layer is "default"."""
    return environment or "default"


@dataclass(frozen=True)
class Layer:
    """One layer of a service's configuration as stored: its content and its last write."""

    environment: str
    content: Mapping[str, Any]
    version: int
    author: str
    updated_at: float  # Unix seconds
    message: str = ""
    # Consul's ModifyIndex of the stored key: the token of a compare-and-set. 0 when not stored yet.
    modify_index: int = 0


@dataclass(frozen=True)
class SchemaRecord:
    """A service's JSON Schema. Its version counts schema writes only (1, 2, ...)."""

    schema: Mapping[str, Any]
    version: int
    author: str
    updated_at: float  # Unix seconds
    modify_index: int = 0


@dataclass(frozen=True)
class VersionEntry:
    """One write in a service's history: the layer as written, and why."""

    version: int
    environment: str
    content: Mapping[str, Any]
    author: str
    created_at: float  # Unix seconds
    message: str
    change_summary: str
    rolled_back_from: int = 0  # the earlier version whose content a rollback restored

    @property
    def checksum(self) -> str:
        return checksum(self.content)


@dataclass(frozen=True)
class MergedDocument:
    """What GetConfig serves for one environment: the merge of the default and that environment's layer."""

    service: str
    environment: str
    content: Mapping[str, Any]
    version: int
    checksum: str
    author: str
    updated_at: float | None
    message: str
    layer_versions: Mapping[str, int]

    @classmethod
    def empty(cls, service: str, environment: str) -> MergedDocument:
        """The document of a service nobody has configured yet (version 0)."""
        return cls(service, environment, {}, 0, checksum({}), "", None, "", {})


@dataclass(frozen=True)
class ServiceState:
    """Everything needed to serve and to write a service's configuration, read in one consistent snapshot."""

    service: str
    layers: Mapping[str, Layer] = field(default_factory=dict)
    schema: SchemaRecord | None = None
    head: int = 0  # the newest version number taken
    head_index: int = 0  # Consul's ModifyIndex of the version counter; 0 when absent

    @property
    def environments(self) -> list[str]:
        return sorted(env for env in self.layers if env != DEFAULT_LAYER)

    def with_layer(self, layer: Layer) -> ServiceState:
        """This state as it would be after writing `layer` (for validating a write before making it)."""
        layers = dict(self.layers)
        layers[layer.environment] = layer
        return ServiceState(self.service, layers, self.schema, max(self.head, layer.version), self.head_index)

    def merged(self, environment: str) -> MergedDocument | None:
        """The document for `environment` ("" for the default layer alone); None when no layer exists."""
        used = [layer for layer in (self.layers.get(DEFAULT_LAYER), self.layers.get(environment)) if layer]
        if environment == DEFAULT_LAYER:
            used = used[:1]
        if not used:
            return None
        content: dict[str, Any] = strip_markers(dict(used[0].content))
        for layer in used[1:]:
            content = merge(content, layer.content)
        newest = max(used, key=lambda layer: layer.version)
        return MergedDocument(
            service=self.service,
            environment=environment,
            content=content,
            version=newest.version,
            checksum=checksum(content),
            author=newest.author,
            updated_at=newest.updated_at,
            message=newest.message,
            layer_versions={layer.environment: layer.version for layer in used},
        )

    def document(self, environment: str) -> MergedDocument:
        """The document for `environment`, or the empty version-0 document when nothing is configured."""
        return self.merged(environment) or MergedDocument.empty(self.service, environment)

    def served_documents(self) -> dict[str, MergedDocument]:
        """Every document GetConfig can serve now, by environment: each must satisfy the schema.

        The default layer is served alone (environment "") and under any environment without a layer
        of its own, so it is checked by itself too.
        """
        found = {env: self.merged(env) for env in (DEFAULT_LAYER, *self.environments)}
        return {env: doc for env, doc in found.items() if doc is not None}

    def affected_by(self, environment: str) -> dict[str, MergedDocument]:
        """The served documents a write to `environment`'s layer changes."""
        served = self.served_documents()
        if environment == DEFAULT_LAYER:
            return served
        return {env: doc for env, doc in served.items() if env == environment}
