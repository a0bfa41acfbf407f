"""`controlplane` command line.

controlplane serve                  run the control plane
controlplane status                 registered services and instances, with health
controlplane trace TRACE_ID         the span tree of one request, from the local span files
controlplane config get|set         read or change a service's config
controlplane breaker SVC TARGET ACT force-open, disable, metrics-only, open-for N, reset a service's breakers
controlplane xds bootstrap|status   a bootstrap for stock gRPC xDS clients; each replica's ADS streams
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from pathlib import Path

import grpc

from controlplane.cli import breaker_cmd, config_cmd, saga_cmd, traces, xds_cmd
from controlplane.client import as_connection
from controlplane.flags import whole


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "serve":  # serve owns its flags (see `controlplane serve --help`)
        from controlplane.cli.serve import serve
        from controlplane.settings import ServerSettings

        logging.basicConfig(
            level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s trace=%(trace_id)s: %(message)s"
        )
        return asyncio.run(serve(ServerSettings.from_args(argv[1:])))
    parser = argparse.ArgumentParser(
        prog="controlplane", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--control-plane",
        default=os.environ.get("CONTROLPLANE_ADDR", "127.0.0.1:50051"),
        help="control plane address [env CONTROLPLANE_ADDR, default %(default)s]",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("serve", help="run the control plane (serve --help for its flags)")
    commands.add_parser("status", help="registered services and instances, with health")
    trace = commands.add_parser("trace", help="the span tree of one request, from the local span files")
    trace.add_argument("trace_id")
    trace.add_argument(
        "--dir",
        default=os.environ.get("CONTROLPLANE_TRACE_DIR", ".traces"),
        help="folder of the span files [env CONTROLPLANE_TRACE_DIR, default %(default)s]",
    )
    config = commands.add_parser("config", help="read or change a service's config").add_subparsers(
        dest="action", required=True
    )
    for action in ("get", "set"):
        sub = config.add_parser(action)
        sub.add_argument("service")
        sub.add_argument("--env", default="", help="environment (default: the default layer)")
        if action == "set":
            sub.add_argument("edits", nargs="+", metavar="KEY=VALUE")
            sub.add_argument("--message", default="")
    breaker = commands.add_parser("breaker", help="an operator's state for a service's circuit breakers")
    breaker.add_argument("service", help="whose instances apply it (their config document is written)")
    breaker.add_argument("target", help='what the breakers guard: "pkg.Service" or "pkg.Service/Method"')
    breaker.add_argument("action", choices=sorted(breaker_cmd.ACTIONS))
    breaker.add_argument("seconds", nargs="?", type=float, help="for open-for: how long")
    breaker.add_argument("--env", default="", help="environment (default: the default layer)")
    saga = commands.add_parser("saga", help="where sagas stand").add_subparsers(dest="action", required=True)
    saga_list = saga.add_parser("list")
    saga_list.add_argument("--status", default="", help="running, compensating, completed, compensated, ...")
    saga_list.add_argument("--definition", default="")
    saga_list.add_argument("--limit", type=whole(1, 100_000), default=50)
    saga.add_parser("show").add_argument("saga_id")
    xds = commands.add_parser("xds", help="xDS for stock gRPC clients").add_subparsers(dest="action", required=True)
    boot = xds.add_parser("bootstrap", help="print a bootstrap (GRPC_XDS_BOOTSTRAP_CONFIG) for one node")
    boot.add_argument("--node-id", default="controlplane-client", help="the node's id (shown by xds status)")
    boot.add_argument("--cluster", default="", help="the node's cluster (default: its id)")
    boot.add_argument("--zone", default="controlplane", help="the node's locality zone (grpc-js needs one)")
    boot.add_argument("--env", default="", help="the config environment whose traffic policies it follows")
    xds.add_parser("status", help="each replica's ADS streams: subscriptions, versions, ACKs and NACKs")
    args = parser.parse_args(argv)
    try:
        if args.command == "trace":
            return show_trace(args.trace_id, Path(args.dir))
        if args.command == "status":
            return status(args.control_plane)
        if args.command == "xds" and args.action == "bootstrap":
            return xds_cmd.bootstrap(args.control_plane, args.node_id, args.cluster, args.zone, args.env)
        if args.command == "xds":
            return xds_cmd.status(args.control_plane)
        with as_connection(args.control_plane).channel() as channel:
            if args.command == "config" and args.action == "get":
                return config_cmd.get(channel, args.service, args.env)
            if args.command == "config":
                return config_cmd.set_(channel, args.service, args.env, args.edits, args.message)
            if args.command == "breaker":
                if (args.action == "open-for") != (args.seconds is not None):
                    parser.error("open-for takes SECONDS; the other actions take none")
                return breaker_cmd.override(channel, args.service, args.env, args.target, args.action, args.seconds)
            if args.command == "saga" and args.action == "list":
                return saga_cmd.list_(channel, args.status, args.definition, args.limit)
            if args.command == "saga":
                return saga_cmd.show(channel, args.saga_id)
    except grpc.RpcError as exc:
        print(f"controlplane: {exc.code().name}: {exc.details()}", file=sys.stderr)
        return 1
    except ValueError as exc:  # arguments the command itself refuses (an open-for of 0 seconds, say)
        print(f"controlplane: {exc}", file=sys.stderr)
        return 2
    parser.error(f"unknown command {args.command}")
    return 2


def show_trace(trace_id: str, folder: Path) -> int:
    files = sorted(folder.glob("*.jsonl"))
    if not files:
        print(
            f"no span files in {folder}/. Spans are written there when no OTLP collector is configured; with\n"
            "OTEL_EXPORTER_OTLP_ENDPOINT set, look the trace up in your collector's UI instead.",
            file=sys.stderr,
        )
        return 1
    spans = traces.read_spans(files, trace_id)
    print(traces.render(trace_id, spans))
    return 0 if spans else 1


def status(control_plane: str) -> int:
    from controlplane import paging
    from controlplane.v1 import registry_pb2, registry_pb2_grpc

    with as_connection(control_plane).channel() as channel:
        registry = registry_pb2_grpc.RegistryServiceStub(channel)
        pages = paging.every_page(registry.ListServices, registry_pb2.ListServicesRequest(), timeout=5)
        services = [svc for page in pages for svc in page.services]
        stale = any(page.stale for page in pages)
        print(f"control plane {control_plane}: {len(services)} services" + (" (stale)" if stale else ""))
        for svc in services:
            print(f"  {svc.name:<14} {svc.passing_count}/{svc.instance_count} passing")
            watch = registry.Watch(registry_pb2.WatchRequest(service=svc.name, include_unhealthy=True), timeout=5)
            snapshot = next(iter(watch))
            watch.cancel()
            for inst in snapshot.instances:
                health = registry_pb2.HealthStatus.Name(inst.health).removeprefix("HEALTH_STATUS_").lower()
                print(f"    {inst.instance_id:<32} {inst.address}:{inst.port:<6} {inst.version:<8} {health}")
    return 0
