"""Feature flags: one pure evaluation used by both the EvaluateFlag RPC and ConfigClient, so they agree.

Flags live under the top-level "flags" key of a service's merged config document:

    "flags": {
      "dark-mode": true,                       # on for everyone; false: off for everyone
      "new-checkout": {
        "enabled": true,                       # master switch (default true); false: off for everyone
        "description": "free text, ignored",
        "rules": [                             # targeting, first match wins
          {"match": {"country": ["NL", "BE"], "plan": "pro"}, "enabled": true},
          {"match": {"plan": "free"}, "enabled": false}
        ],
        "rollout": 25                          # percent of subject keys (0..100, fractions allowed)
      }
    }

Evaluation, in order: unknown flag -> off ("unknown_flag"); master switch off -> off ("disabled"); the first
rule whose every `match` attribute holds (attribute value equal to the string, or in the list) decides
("targeted"); with a `rollout`, the subject is on when its bucket is below the percentage ("rollout");
otherwise on ("default").

Buckets are stable: sha256("<flag>:<subject_key>"), first 8 bytes as an unsigned big-endian integer,
modulo 10000, compared with rollout * 100. The same subject keeps its answer, flags bucket independently,
and raising the percentage only ever adds subjects. An empty subject key is outside any partial rollout
(0 < rollout < 100), so anonymous callers all get the same, conservative, answer.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from controlplane import names
from controlplane.config.document import render_path
from controlplane.errors import FieldViolation

FLAGS_KEY = "flags"
BUCKETS = 10_000
FLAG_NAME = names.FLAG.pattern
_FLAG_FIELDS = frozenset({"enabled", "description", "rules", "rollout"})
_RULE_FIELDS = frozenset({"match", "enabled"})

DISABLED = "disabled"
TARGETED = "targeted"
ROLLOUT = "rollout"
DEFAULT = "default"
UNKNOWN_FLAG = "unknown_flag"
# Only for a definition that bypassed validation (it cannot be written through the API).
INVALID_FLAG = "invalid_flag"


@dataclass(frozen=True)
class FlagDecision:
    """Whether a flag is on for one subject, and which rule decided ("disabled", "targeted", ...)."""

    enabled: bool
    reason: str


def bucket(flag: str, subject_key: str) -> int:
    """The subject's stable bucket for `flag`, 0..9999."""
    digest = hashlib.sha256(f"{flag}:{subject_key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


def in_rollout(flag: str, subject_key: str, percent: float) -> bool:
    """True when the subject falls inside a `percent` (0..100) rollout of `flag`."""
    if percent >= 100:
        return True
    if percent <= 0 or not subject_key:
        return False
    return bucket(flag, subject_key) < percent * (BUCKETS / 100)


def evaluate(
    document: Mapping[str, Any], flag: str, subject_key: str = "", attributes: Mapping[str, str] | None = None
) -> FlagDecision:
    """Evaluate `flag` of a merged config document for one subject. Pure; never raises."""
    flags = document.get(FLAGS_KEY)
    definition = flags.get(flag) if isinstance(flags, Mapping) else None
    if definition is None:
        return FlagDecision(False, UNKNOWN_FLAG)
    if isinstance(definition, bool):
        return FlagDecision(definition, DEFAULT if definition else DISABLED)
    if not isinstance(definition, Mapping) or check_flag(definition):
        return FlagDecision(False, INVALID_FLAG)
    if not definition.get("enabled", True):
        return FlagDecision(False, DISABLED)
    attributes = attributes or {}
    for rule in definition.get("rules", []):
        if _matches(rule["match"], attributes):
            return FlagDecision(bool(rule.get("enabled", True)), TARGETED)
    if "rollout" in definition:
        return FlagDecision(in_rollout(flag, subject_key, float(definition["rollout"])), ROLLOUT)
    return FlagDecision(True, DEFAULT)


def _matches(match: Mapping[str, Any], attributes: Mapping[str, str]) -> bool:
    for name, wanted in match.items():
        have = attributes.get(name)
        if have is None:
            return False
        if have not in (wanted if isinstance(wanted, list) else [wanted]):
            return False
    return True


def check_flags(document: Mapping[str, Any], root: str = "content") -> list[FieldViolation]:
    """Every problem with the "flags" section of a document, with its path; [] when it is valid or absent."""
    if FLAGS_KEY not in document:
        return []
    flags = document[FLAGS_KEY]
    if not isinstance(flags, Mapping):
        return [FieldViolation(render_path([FLAGS_KEY], root), "must be an object of flag definitions by name")]
    problems: list[FieldViolation] = []
    for name, definition in flags.items():
        where = (FLAGS_KEY, name)
        if not FLAG_NAME.fullmatch(name):
            problems.append(
                FieldViolation(
                    render_path(where, root),
                    "flag names are 1..128 letters, digits, '_', '.' or '-', starting with a letter or digit",
                )
            )
        if isinstance(definition, bool):
            continue
        if not isinstance(definition, Mapping):
            problems.append(FieldViolation(render_path(where, root), "a flag is true, false or an object"))
            continue
        problems += [
            FieldViolation(render_path((*where, *path), root), text) for path, text in _flag_problems(definition)
        ]
    return problems


def check_flag(definition: Mapping[str, Any]) -> list[str]:
    """The problems of one flag object, as text (empty when valid)."""
    return [f"{render_path(path)}: {text}" for path, text in _flag_problems(definition)]


def _flag_problems(definition: Mapping[str, Any]) -> list[tuple[tuple[str | int, ...], str]]:
    problems: list[tuple[tuple[str | int, ...], str]] = []
    for key in sorted(set(definition) - _FLAG_FIELDS):
        problems.append(((key,), f"unknown flag field; allowed: {', '.join(sorted(_FLAG_FIELDS))}"))
    if "enabled" in definition and not isinstance(definition["enabled"], bool):
        problems.append((("enabled",), "must be true or false"))
    if "description" in definition and not isinstance(definition["description"], str):
        problems.append((("description",), "must be a string"))
    if "rollout" in definition:
        rollout = definition["rollout"]
        numeric = isinstance(rollout, int | float) and not isinstance(rollout, bool) and math.isfinite(rollout)
        if not numeric or not 0 <= rollout <= 100:
            problems.append((("rollout",), f"must be a percentage 0..100, got {rollout!r}"))
    rules = definition.get("rules", [])
    if not isinstance(rules, list):
        return [*problems, (("rules",), "must be a list of rules")]
    for i, rule in enumerate(rules):
        problems += [(("rules", i, *path), text) for path, text in _rule_problems(rule)]
    return problems


def _rule_problems(rule: Any) -> list[tuple[tuple[str | int, ...], str]]:
    if not isinstance(rule, Mapping):
        return [((), 'a rule is an object {"match": {...}, "enabled": true|false}')]
    problems: list[tuple[tuple[str | int, ...], str]] = [
        ((key,), "unknown rule field; allowed: enabled, match") for key in sorted(set(rule) - _RULE_FIELDS)
    ]
    if "enabled" in rule and not isinstance(rule["enabled"], bool):
        problems.append((("enabled",), "must be true or false"))
    match = rule.get("match")
    if not isinstance(match, Mapping) or not match:
        problems.append((("match",), "required: an object of attribute name -> string or list of strings"))
        return problems
    for name, wanted in match.items():
        values = wanted if isinstance(wanted, list) else [wanted]
        if not all(isinstance(v, str) for v in values):
            problems.append((("match", name), "must be a string or a list of strings"))
    return problems
