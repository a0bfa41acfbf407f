"""Secret references: `{"$secret": "payment/api-key"}` in a document stands for a value kept elsewhere.

Documents, history, diffs and checksums only ever hold the reference. Values are looked up from a
`SecretProvider` for callers that ask for resolution, and exist only in that caller's answer: they are
never stored, logged or put in an error message (errors name the reference and its path).

The default provider reads environment variables of the control-plane process: `payment/api-key` ->
`CONTROLPLANE_SECRET_PAYMENT_API_KEY` (upper-cased, every character other than A-Z and 0-9 becomes `_`;
so `a/b-c` and `a/b_c` name the same variable). Another store plugs in by implementing `get`.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from controlplane import names
from controlplane.config.document import SECRET, is_secret_ref, render_path, walk
from controlplane.errors import FieldViolation, PreconditionError

REFERENCE = names.SECRET.pattern
DEFAULT_ENV_PREFIX = "CONTROLPLANE_SECRET_"

log = logging.getLogger(__name__)


class SecretProvider(Protocol):
    """Where secret values come from. `get` returns None for an unknown reference.

    It is called on the event loop for each resolving read: a provider backed by a remote store should
    answer from a cache it refreshes on its own.
    """

    def get(self, reference: str) -> str | None: ...


@dataclass(frozen=True)
class EnvSecretProvider:
    """Secrets from environment variables: `payment/api-key` -> `CONTROLPLANE_SECRET_PAYMENT_API_KEY`."""

    prefix: str = DEFAULT_ENV_PREFIX
    environ: Mapping[str, str] = field(default_factory=lambda: os.environ)

    def variable(self, reference: str) -> str:
        return self.prefix + re.sub(r"[^A-Z0-9]", "_", reference.upper())

    def get(self, reference: str) -> str | None:
        return self.environ.get(self.variable(reference))


@dataclass(frozen=True)
class MappingSecretProvider:
    """Secrets from a mapping of reference -> value (embedding, tests)."""

    values: Mapping[str, str]

    def get(self, reference: str) -> str | None:
        return self.values.get(reference)


def references(document: Any) -> list[tuple[tuple[str | int, ...], str]]:
    """(path, reference) of every secret reference in a document."""
    return [(path, value[SECRET]) for path, value in walk(document) if is_secret_ref(value)]


def check_references(document: Any, root: str = "content") -> list[FieldViolation]:
    """Ill-formed `$secret` objects, with their paths."""
    problems = []
    for path, value in walk(document):
        if isinstance(value, dict) and SECRET in value:
            if not is_secret_ref(value):
                problems.append(
                    FieldViolation(render_path(path, root), 'a secret reference is exactly {"$secret": "<reference>"}')
                )
            elif not REFERENCE.fullmatch(value[SECRET]):
                problems.append(
                    FieldViolation(
                        render_path(path, root),
                        "secret references are 1..255 letters, digits, '_', '.', '/' or '-', "
                        f"starting with a letter or digit, got {names.shown(value[SECRET])}",
                    )
                )
    return problems


def resolve(document: Any, provider: SecretProvider) -> Any:
    """A copy of `document` with every reference replaced by its value.

    Raises PreconditionError naming every reference that could not be resolved (never a value).
    """
    missing: list[str] = []

    def replace(value: Any, path: tuple[str | int, ...]) -> Any:
        if is_secret_ref(value):
            reference = value[SECRET]
            try:
                found = provider.get(reference)
            except Exception as exc:  # a provider's failure text could quote anything: keep only its type
                log.warning("secret provider failed for reference %r: %s", reference, type(exc).__name__)
                found = None
            if found is None:
                missing.append(f"{reference!r} at {render_path(path, 'content')}")
            return found
        if isinstance(value, dict):
            return {k: replace(v, (*path, k)) for k, v in value.items()}
        if isinstance(value, list):
            return [replace(v, (*path, i)) for i, v in enumerate(value)]
        return value

    resolved = replace(document, ())
    if missing:
        raise PreconditionError(
            f"cannot resolve secret reference(s) {', '.join(missing)}: the secret provider has no value for them"
        )
    return resolved
