"""`controlplane trace`: one request's spans across services, as a tree, from the local span files."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.helpers import ROOT

TRACE = "0x" + "ab" * 16


def span(service: str, span_id: str, parent: str | None, name: str, start: str, end: str, code: int = 0) -> str:
    return json.dumps(
        {
            "name": name,
            "context": {"trace_id": TRACE, "span_id": span_id},
            "kind": "SpanKind.SERVER",
            "parent_id": parent,
            "start_time": f"2026-01-01T00:00:{start}Z",
            "end_time": f"2026-01-01T00:00:{end}Z",
            "attributes": {"rpc.grpc.status_code": code},
            "resource": {"attributes": {"service.name": service}},
        }
    )


def test_trace_prints_the_span_tree_across_service_files_with_timings(tmp_path):
    (tmp_path / "order.jsonl").write_text(
        span("order", "0x1", None, "/o.Order/Create", "00.000", "00.050")
        + "\n"
        + span("order", "0x9", None, "/other", "00.000", "00.001").replace("ab" * 16, "cd" * 16)
        + "\n"
        + "{not json\n"
    )
    (tmp_path / "payment.jsonl").write_text(
        span("payment", "0x2", "0x1", "/p.Pay/Charge", "00.010", "00.030", 14) + "\n"
    )
    done = subprocess.run(
        [sys.executable, "-m", "controlplane", "trace", "ab" * 16, "--dir", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=30,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == f"trace {'ab' * 16}: 2 spans across order, payment, 50.0 ms"
    assert lines[1].split() == ["order", "SERVER", "/o.Order/Create", "+0.0", "ms", "50.0", "ms", "OK"]
    assert lines[2].startswith("    payment") and lines[2].split()[-5:] == ["+10.0", "ms", "20.0", "ms", "UNAVAILABLE"]
    assert len(lines) == 3


def test_trace_without_span_files_explains_where_spans_go(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "controlplane", "trace", "ab" * 16, "--dir", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=30,
    )
    assert done.returncode == 1
    assert "OTEL_EXPORTER_OTLP_ENDPOINT" in done.stderr
