"""Read the local span files (JSON lines, one span per line) and show one trace as a tree."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import grpc


@dataclass
class Span:
    trace_id: str
    span_id: str
    parent_id: str | None
    name: str
    kind: str
    service: str
    start: datetime
    end: datetime
    code: str
    children: list[Span] = field(default_factory=list)

    @property
    def duration_ms(self) -> float:
        return (self.end - self.start).total_seconds() * 1000


def normalize_trace_id(trace_id: str) -> str:
    """Trace ids as 32 lowercase hex digits, with or without the 0x OpenTelemetry's JSON writes."""
    return trace_id.lower().removeprefix("0x").rjust(32, "0")


def read_spans(files: Iterable[Path], trace_id: str) -> list[Span]:
    wanted = normalize_trace_id(trace_id)
    return [span for path in files for span in _spans_in(path) if span.trace_id == wanted]


def _spans_in(path: Path) -> Iterator[Span]:
    with path.open(encoding="utf-8", errors="replace") as lines:
        for line in lines:
            try:
                raw = json.loads(line)
                context = raw["context"]
                attributes = raw.get("attributes") or {}
                status = attributes.get("rpc.grpc.status_code")
                code = grpc.StatusCode.OK.name
                if status is not None and status != 0:
                    code = next((c.name for c in grpc.StatusCode if c.value[0] == status), str(status))
                elif (raw.get("status") or {}).get("status_code") == "ERROR":
                    code = "ERROR"
                yield Span(
                    trace_id=normalize_trace_id(context["trace_id"]),
                    span_id=context["span_id"],
                    parent_id=raw.get("parent_id"),
                    name=raw["name"],
                    kind=raw.get("kind", "").removeprefix("SpanKind."),
                    service=(raw.get("resource") or {}).get("attributes", {}).get("service.name", path.stem),
                    start=datetime.fromisoformat(raw["start_time"].replace("Z", "+00:00")),
                    end=datetime.fromisoformat(raw["end_time"].replace("Z", "+00:00")),
                    code=code,
                )
            except (ValueError, KeyError, TypeError):
                continue  # a partly written last line, or a foreign record


def build_tree(spans: list[Span]) -> list[Span]:
    """The root spans, each with its children sorted by start time."""
    by_id = {span.span_id: span for span in spans}
    roots: list[Span] = []
    for span in sorted(spans, key=lambda s: s.start):
        parent = by_id.get(span.parent_id or "")
        (parent.children if parent else roots).append(span)
    return roots


def render(trace_id: str, spans: list[Span]) -> str:
    if not spans:
        return f"no spans of trace {normalize_trace_id(trace_id)} in the local span files"
    roots = build_tree(spans)
    start = min(s.start for s in spans)
    end = max(s.end for s in spans)
    services = sorted({s.service for s in spans})
    out = [
        f"trace {normalize_trace_id(trace_id)}: {len(spans)} spans across {', '.join(services)}, "
        f"{(end - start).total_seconds() * 1000:.1f} ms"
    ]

    def walk(span: Span, depth: int) -> None:
        offset = (span.start - start).total_seconds() * 1000
        out.append(
            f"{'  ' * depth}{span.service:<10} {span.kind:<6} {span.name}  "
            f"+{offset:.1f} ms  {span.duration_ms:.1f} ms  {span.code}"
        )
        for child in span.children:
            walk(child, depth + 1)

    for root in roots:
        walk(root, 1)
    return "\n".join(out)
