"""Which methods a concern applies to: a selector of services and methods by name.

Patterns: "*" (every method), "pkg.Service" (every method of a service), "pkg.Service/Method" (one method).
Used instead of special cases: tracing leaves health checks out with
`MethodSelector.excluding("grpc.health.v1.Health")`, say.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["ALL_METHODS", "MethodSelector"]


class MethodSelector:
    """Accepts a method when an `include` pattern matches it and no `exclude` pattern does."""

    __slots__ = ("_cache", "exclude", "include")

    def __init__(self, include: Iterable[str] = ("*",), exclude: Iterable[str] = ()) -> None:
        self.include = tuple(_checked(p) for p in include)
        self.exclude = tuple(_checked(p) for p in exclude)
        self._cache: dict[str, bool] = {}

    @classmethod
    def excluding(cls, *patterns: str) -> MethodSelector:
        return cls(("*",), patterns)

    def accepts(self, method: str) -> bool:
        """`method` as "/pkg.Service/Method" or "pkg.Service/Method"."""
        verdict = self._cache.get(method)
        if verdict is None:
            qualified = method.lstrip("/")
            verdict = _any_match(self.include, qualified) and not _any_match(self.exclude, qualified)
            if len(self._cache) < 10_000:
                self._cache[method] = verdict
        return verdict

    __contains__ = accepts

    @property
    def everything(self) -> bool:
        return self.include == ("*",) and not self.exclude

    def __repr__(self) -> str:
        return f"MethodSelector(include={self.include!r}, exclude={self.exclude!r})"


def _checked(pattern: str) -> str:
    pattern = pattern.strip().lstrip("/")
    if not pattern or pattern.count("/") > 1 or ("*" in pattern and pattern != "*"):
        raise ValueError(f'method pattern {pattern!r}: use "*", "pkg.Service" or "pkg.Service/Method"')
    return pattern


def _any_match(patterns: tuple[str, ...], qualified: str) -> bool:
    service = qualified.partition("/")[0]
    return any(p in ("*", qualified, service) for p in patterns)


ALL_METHODS = MethodSelector()
