"""Local stack for `make up`, `make down`, `make status` and `make logs`.

Starts Consul (unless CONSUL_HTTP_ADDR names a reachable agent), REPLICAS control-plane replicas (default
1) and the four demo services as background processes, records their pids under .run/pids and their logs
under .run/logs. Consul runs as a single-node server keeping its data in .run/consul, so `make down &&
make up` keeps sagas, config history and definitions, and sagas in flight at `make down` finish after the
next `make up`. The demo services are given every replica's address and use them all.

With TLS=1 (`make up TLS=1`) everything runs with mTLS: a local CA in .run/tls/ signs a certificate per
process (spiffe://controlplane/service/NAME, and spiffe://controlplane/operator/devstack for this script, the
CLI and grpcurl), the control plane enforces policies/authz.yaml, and .run/tls/env sets the CLI's variables.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from controlplane.client import as_connection
from controlplane.consul.local_agent import LocalConsul, consul_reachable
from controlplane.saga.definitions import load_definitions_file
from controlplane.v1 import config_pb2, config_pb2_grpc, registry_pb2, registry_pb2_grpc, saga_pb2, saga_pb2_grpc
from demo.inventory.v1 import inventory_pb2, inventory_pb2_grpc
from demo.user.v1 import user_pb2, user_pb2_grpc

ROOT = Path(__file__).resolve().parents[1]
# Where state, logs and pids go, and the ports: overridable so tests can run a second stack beside yours.
RUN = Path(os.environ.get("DEVSTACK_DIR", ROOT / ".run"))
PIDS = RUN / "pids"
LOGS = RUN / "logs"
REPLICAS = int(os.environ.get("REPLICAS") or 1)
_FIRST_PORT = int(os.environ.get("DEVSTACK_CONTROL_PLANE_PORT", "50051"))
_REPLICA_PORTS = [int(p) for p in os.environ.get("DEVSTACK_CONTROL_PLANE_PORTS", "").split(",") if p] or [
    _FIRST_PORT + i for i in range(REPLICAS)]
REPLICA_ADDRS = [f"127.0.0.1:{port}" for port in _REPLICA_PORTS[:REPLICAS]]
CONTROL_PLANE = ",".join(REPLICA_ADDRS)  # what clients are given: every replica
CONSUL_DEFAULT = f"127.0.0.1:{os.environ.get('DEVSTACK_CONSUL_PORT', '8500')}"
# The Consul server's Raft and Serf ports: fixed, since a server's Raft peers know it by them across restarts.
_CONSUL_SERVER_PORTS = [int(p) for p in os.environ.get("DEVSTACK_CONSUL_SERVER_PORTS", "8300,8301").split(",")]
_DEMO_PORTS = [int(p) for p in os.environ.get("DEVSTACK_DEMO_PORTS", "50061,50062,50063,50064").split(",")]
DEMO = dict(zip(["user", "order", "payment", "inventory"], _DEMO_PORTS, strict=True))
DEMO_USERS = {"alice": "Alice", "bob": "Bob"}
DEMO_STOCK = {"apple": 1000, "pear": 1000, "plum": 50}
REPLICA_NAMES = ["controlplane" if i == 0 else f"controlplane-{i + 1}" for i in range(REPLICAS)]
# Prometheus metrics: replica n at 9464+n-1, the demo services at 9471..9474; a Prometheus server scrapes them.
_METRICS_PORTS = os.environ.get("DEVSTACK_METRICS_PORTS", "9464,9465,9466,9467").split(",")
_DEMO_METRICS_PORTS = os.environ.get("DEVSTACK_DEMO_METRICS_PORTS", "9471,9472,9473,9474").split(",")
REPLICA_METRICS = [f"127.0.0.1:{port}" for port in _METRICS_PORTS[:REPLICAS]]
DEMO_METRICS = {name: f"127.0.0.1:{port}" for name, port in zip(DEMO, _DEMO_METRICS_PORTS, strict=True)}
PROMETHEUS_ADDR = f"127.0.0.1:{os.environ.get('DEVSTACK_PROMETHEUS_PORT', '9090')}"
PROMETHEUS_BIN = Path(os.environ.get("PROMETHEUS_BIN") or ROOT / "tools" / "bin" / "prometheus")
ORDER = ["consul", *REPLICA_NAMES, *DEMO, "prometheus"]  # start order; stopped in reverse
TLS_DIR = RUN / "tls"
_TLS_MARK = TLS_DIR / "active"  # written by `up` with TLS=1, so `status` and `revive` speak TLS too
AUTHZ_POLICY = ROOT / "policies" / "authz.yaml"
OPERATOR = "operator-devstack"
READY_TIMEOUT = 60.0
# Registered by `up` and by every replica (again every 10 s: what Consul loses comes back).
DEFINITIONS = ROOT / "services" / "place_order.yaml"

if _TLS_MARK.exists() and os.environ.get("TLS") != "0":  # a stack `up` started with TLS=1: speak it too
    os.environ.update({k: str(TLS_DIR / v) for k, v in (("CONTROLPLANE_TLS_CA", "ca.pem"),
                       ("CONTROLPLANE_TLS_CERT", f"{OPERATOR}.pem"), ("CONTROLPLANE_TLS_KEY", f"{OPERATOR}.key"))})


def _alive(pid: int) -> bool:
    """Whether `pid` runs. A killed process whose parent has not reaped it yet (a zombie) does not."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return True  # no procfs (not Linux): signal 0 is all we can ask


def _pid(name: str) -> int | None:
    path = PIDS / f"{name}.pid"
    if not path.exists():
        return None
    pid = int(path.read_text().strip() or 0)
    return pid if pid and _alive(pid) else None


def _port_free(addr: str) -> bool:
    host, _, port = addr.rpartition(":")
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gRPC servers do: TIME_WAIT is no conflict
        try:
            sock.bind((host, int(port)))
            return True
        except OSError:
            return False


def _spawn(name: str, args: list[str], env: dict[str, str] | None = None) -> int:
    log = open(LOGS / f"{name}.log", "ab")  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen(
        args,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        cwd=ROOT,
        env={
            "CONTROLPLANE_TRACE_DIR": str(RUN / "traces"),
            "DEMO_DATA_DIR": str(RUN / "data"),
            **os.environ,
            **(env or {}),
        },
        start_new_session=True,
    )
    log.close()
    (PIDS / f"{name}.pid").write_text(str(proc.pid))
    return proc.pid


def _wait(what: str, ready: callable, timeout: float = READY_TIMEOUT) -> None:  # type: ignore[valid-type]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        time.sleep(0.1)
    raise TimeoutError(f"{what} not ready within {timeout:.0f}s")


def _tls_on() -> bool:
    return os.environ.get("TLS") == "1" or (_TLS_MARK.exists() and os.environ.get("TLS") != "0")


def _tls_files(name: str) -> dict[str, str]:
    """The CONTROLPLANE_TLS_* variables of one process: its certificate, the CA it trusts and requires."""
    ca = str(TLS_DIR / "ca.pem")
    return {"CONTROLPLANE_TLS_CA": ca, "CONTROLPLANE_TLS_CLIENT_CA": ca,
            "CONTROLPLANE_TLS_CERT": str(TLS_DIR / f"{name}.pem"), "CONTROLPLANE_TLS_KEY": str(TLS_DIR / f"{name}.key")}


def _setup_tls() -> None:
    """A local CA and a certificate per process (kept across runs), and .run/tls/env for the CLI."""
    from controlplane.security.devcerts import LocalCA, spiffe_id

    ca = LocalCA(TLS_DIR)
    for name in ("controlplane", *DEMO):
        if not (TLS_DIR / f"{name}.pem").exists():
            ca.issue(name, [spiffe_id("service", name)])
    if not (TLS_DIR / f"{OPERATOR}.pem").exists():
        ca.issue(OPERATOR, [spiffe_id("operator", "devstack")])
    operator = _tls_files(OPERATOR)
    (TLS_DIR / "env").write_text("".join(f"export {key}={value}\n" for key, value in operator.items()
                                         if key != "CONTROLPLANE_TLS_CLIENT_CA"))
    _TLS_MARK.write_text("1\n")
    os.environ.update({k: v for k, v in operator.items() if k != "CONTROLPLANE_TLS_CLIENT_CA"})


def _channel(addr: str) -> grpc.Channel:
    """A channel to any process of the stack (TLS with the operator's certificate when TLS is on)."""
    return as_connection(addr).channel()


def _serving(addr: str) -> bool:
    with _channel(addr) as channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=1.0)
            return reply.status == health_pb2.HealthCheckResponse.SERVING
        except grpc.RpcError:
            return False


def _passing(service: str) -> list[registry_pb2.Instance]:
    with _channel(CONTROL_PLANE) as channel:
        try:
            stub = registry_pb2_grpc.RegistryServiceStub(channel)
            return list(stub.Discover(registry_pb2.DiscoverRequest(service=service), timeout=2.0).instances)
        except grpc.RpcError:
            return []


def _launch(name: str, consul_addr: str) -> int:
    """Start one replica or demo service, exactly as `up` does."""
    if name in REPLICA_NAMES:
        index = REPLICA_NAMES.index(name)
        tls = ["--authz-policy", str(AUTHZ_POLICY)] if _tls_on() else []
        return _spawn(name, [sys.executable, "-m", "controlplane", "serve", "--listen", REPLICA_ADDRS[index],
                             "--consul", consul_addr, "--saga-definitions", str(DEFINITIONS),
                             "--metrics-listen", REPLICA_METRICS[index], *tls],
                      env=_tls_files("controlplane") if _tls_on() else _PLAINTEXT)
    if name == "prometheus":
        return _spawn(name, prometheus_command(RUN / "prometheus", [*REPLICA_METRICS, *DEMO_METRICS.values()],
                                               PROMETHEUS_ADDR))
    return _spawn(name, [sys.executable, "-m", f"services.{name}", "--listen", f"127.0.0.1:{DEMO[name]}",
                         "--metrics-listen", DEMO_METRICS[name]],
                  env={"CONTROLPLANE_ADDR": CONTROL_PLANE, **(_tls_files(name) if _tls_on() else _PLAINTEXT)})


_PLAINTEXT = {key: "" for key in _tls_files("none")}  # a child must not inherit this script's certificate


def prometheus_command(folder: Path, targets: list[str], listen: str, interval: str = "5s") -> list[str]:
    """The command line of a Prometheus server scraping `targets` (host:port) every `interval`, keeping its
    data in `folder` (its config is written there)."""
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / "prometheus.yml"
    config.write_text(
        f"global:\n  scrape_interval: {interval}\n  evaluation_interval: {interval}\n"
        "scrape_configs:\n  - job_name: controlplane\n    static_configs:\n"
        f"      - targets: [{', '.join(repr(t) for t in targets)}]\n")
    return [str(PROMETHEUS_BIN), f"--config.file={config}", f"--storage.tsdb.path={folder / 'data'}",
            f"--web.listen-address={listen}"]


def _prometheus_ready(addr: str) -> bool:
    try:
        with urllib.request.urlopen(f"http://{addr}/-/ready", timeout=1) as answer:
            return answer.status == 200
    except OSError:
        return False


def _wait_ready(name: str) -> None:
    if name in REPLICA_NAMES:
        addr = REPLICA_ADDRS[REPLICA_NAMES.index(name)]
        _wait(f"control plane replica {name} on {addr}", lambda: _serving(addr))
    elif name == "prometheus":
        _wait(f"Prometheus on {PROMETHEUS_ADDR}", lambda: _prometheus_ready(PROMETHEUS_ADDR))
    else:
        _wait(f"{name} (registered and passing its health check)", lambda: bool(_passing(name)))


def revive() -> int:
    """Start again whatever of the stack is not running (after a crash), as `up` started it."""
    PIDS.mkdir(parents=True, exist_ok=True)
    LOGS.mkdir(parents=True, exist_ok=True)
    consul_addr = _consul()
    dead = [name for name in ORDER if name != "consul" and not _pid(name)
            and (name != "prometheus" or PROMETHEUS_BIN.exists())]
    for name in dead:
        _launch(name, consul_addr)
    for name in dead:
        _wait_ready(name)
    print(f"revived: {', '.join(dead)}" if dead else "everything was running")
    return 0


def up() -> int:
    started = time.monotonic()
    running = [name for name in ORDER if _pid(name)]
    if running:
        print(f"already running: {', '.join(running)} (make down to stop)")
        return status()
    if not 1 <= REPLICAS <= len(_REPLICA_PORTS):
        print(f"REPLICAS={REPLICAS}: 1..{len(_REPLICA_PORTS)} replicas can be started (DEVSTACK_CONTROL_PLANE_PORTS)")
        return 1
    PIDS.mkdir(parents=True, exist_ok=True)
    LOGS.mkdir(parents=True, exist_ok=True)
    TLS_DIR.mkdir(parents=True, exist_ok=True)
    if os.environ.get("TLS") == "1":
        _setup_tls()
    else:
        _TLS_MARK.unlink(missing_ok=True)
        for key in ("CONTROLPLANE_TLS_CA", "CONTROLPLANE_TLS_CERT", "CONTROLPLANE_TLS_KEY"):
            os.environ.pop(key, None)
    wanted = [*REPLICA_ADDRS, *(f"127.0.0.1:{p}" for p in DEMO.values())]
    if PROMETHEUS_BIN.exists():
        wanted.append(PROMETHEUS_ADDR)
    busy = [addr for addr in wanted if not _port_free(addr)]
    if busy:
        print(f"ports in use: {', '.join(busy)}; stop whatever holds them (or `make down`) and retry")
        return 1
    try:
        consul_addr = _consul()
        for name in REPLICA_NAMES:
            _launch(name, consul_addr)
        for name in REPLICA_NAMES:
            _wait_ready(name)
        for name in DEMO:
            _launch(name, consul_addr)
        for name in DEMO:
            _wait_ready(name)
        if PROMETHEUS_BIN.exists():
            _launch("prometheus", consul_addr)
            _wait_ready("prometheus")
        else:
            print(f"prometheus: {PROMETHEUS_BIN} not found (make deps provides it); metrics are still served")
        _seed()
    except (TimeoutError, RuntimeError, grpc.RpcError) as exc:
        print(f"make up failed: {exc}. Logs: .run/logs/ (make logs). Stopping what was started.")
        down()
        return 1
    print(f"\nup in {time.monotonic() - started:.1f}s\n")
    status()
    tls = _shown(TLS_DIR)
    flags = (f"-cacert {tls}/ca.pem -cert {tls}/{OPERATOR}.pem -key {tls}/{OPERATOR}.key" if _tls_on()
             else "-plaintext")
    mtls = (f"\n  # mTLS everywhere (TLS=1): the CLI and xDS clients read their certificate from {tls}/env\n"
            f"  . {tls}/env" if _tls_on() else "")
    print(f"""
Try it (grpcurl and the controlplane CLI are in .venv/bin):{mtls}
  # every server lists and describes itself
  .venv/bin/grpcurl {flags} {REPLICA_ADDRS[0]} list
  .venv/bin/grpcurl {flags} 127.0.0.1:{DEMO["order"]} describe demo.order.v1.OrderService
  # place an order: the order service checks the user and starts the place-order saga
  .venv/bin/grpcurl {flags} -d '{{"user_id": "alice", "items": [{{"sku": "apple", "quantity": 2, "unit_price_cents": 150}}]}}' \\
      127.0.0.1:{DEMO["order"]} demo.order.v1.OrderService/CreateOrder
  .venv/bin/grpcurl {flags} -d '{{"order_id": "ORDER_ID"}}' 127.0.0.1:{DEMO["order"]} demo.order.v1.OrderService/GetOrder
  .venv/bin/controlplane saga list
  .venv/bin/controlplane saga show SAGA_ID
  # make every payment fail, live: the next order's saga compensates (stock released, order cancelled)
  .venv/bin/controlplane config set payment --env dev faults.failure_rate=1
  .venv/bin/grpcurl {flags} -d '{{"sku": "apple"}}' 127.0.0.1:{DEMO["inventory"]} demo.inventory.v1.InventoryService/GetStock
  .venv/bin/controlplane config set payment --env dev faults.failure_rate=0
  # the span tree of one request (its trace id is in the x-trace-id response header: grpcurl -v)
  CONTROLPLANE_TRACE_DIR=.run/traces .venv/bin/controlplane trace TRACE_ID
  # a stock gRPC client (grpcio and the .proto, no controlplane import) ordering through the xDS server
  GRPC_XDS_BOOTSTRAP_CONFIG="$(.venv/bin/controlplane xds bootstrap)" .venv/bin/python examples/xds/place_order.py alice apple 2
  .venv/bin/controlplane xds status
  # metrics: every process serves Prometheus' format; a Prometheus server scrapes them all
  curl -s {REPLICA_METRICS[0]}/metrics | grep grpc_server_handled_total
  curl -s 'http://{PROMETHEUS_ADDR}/api/v1/query?query=sum(grpc_server_handled_total)by(job,grpc_service)'
  .venv/bin/controlplane status | make status | make logs | make down
""")
    return 0


def _shown(path: Path) -> str:
    """`path` as the try-it block shows it: relative to the checkout when inside it."""
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


def _seed() -> None:
    """Load the place-order saga definition and the demo data (users, stock, default config)."""
    with _channel(CONTROL_PLANE) as channel:
        sagas = saga_pb2_grpc.SagaServiceStub(channel)
        for definition in load_definitions_file(DEFINITIONS):
            stored = sagas.RegisterDefinition(saga_pb2.RegisterDefinitionRequest(definition=definition), timeout=10)
            print(f"saga definition: {stored.definition.name} v{stored.definition.version}")
        configs = config_pb2_grpc.ConfigServiceStub(channel)
        for service in ("payment", "inventory"):
            request = config_pb2.SetConfigRequest(service=service, author="make up", message="demo defaults")
            request.content.update({"faults": {"failure_rate": 0, "latency_ms": 0}})
            _ignore(grpc.StatusCode.ABORTED, configs.SetConfig, request)  # keep what an earlier run set
    with _channel(f"127.0.0.1:{DEMO['user']}") as channel:
        users = user_pb2_grpc.UserServiceStub(channel)
        for user_id, name in DEMO_USERS.items():
            request = user_pb2.CreateUserRequest(user_id=user_id, name=name, email=f"{user_id}@example.com")
            _ignore(grpc.StatusCode.ALREADY_EXISTS, users.CreateUser, request)
    with _channel(f"127.0.0.1:{DEMO['inventory']}") as channel:
        inventory = inventory_pb2_grpc.InventoryServiceStub(channel)
        for sku, quantity in DEMO_STOCK.items():
            try:
                inventory.GetStock(inventory_pb2.GetStockRequest(sku=sku), timeout=5)
            except grpc.RpcError as exc:
                if exc.code() != grpc.StatusCode.NOT_FOUND:
                    raise
                inventory.AddStock(inventory_pb2.AddStockRequest(sku=sku, quantity=quantity), timeout=5)
    print(f"demo data: users {', '.join(DEMO_USERS)}; stock {', '.join(DEMO_STOCK)}")


def _ignore(code: grpc.StatusCode, call: Callable[..., object], request: object) -> None:
    try:
        call(request, timeout=10)
    except grpc.RpcError as exc:
        if exc.code() != code:
            raise


def _consul() -> str:
    wanted = os.environ.get("CONSUL_HTTP_ADDR", "").removeprefix("http://").rstrip("/")
    if wanted and consul_reachable(wanted):
        print(f"consul: using the agent at {wanted} (CONSUL_HTTP_ADDR)")
        return wanted
    if wanted:
        print(f"consul: {wanted} (CONSUL_HTTP_ADDR) is not reachable; starting a local dev agent instead")
    if consul_reachable(CONSUL_DEFAULT):
        print(f"consul: using the agent already running at {CONSUL_DEFAULT}")
        return CONSUL_DEFAULT
    server_port, serf_port = _CONSUL_SERVER_PORTS
    agent = LocalConsul(
        http_port=int(CONSUL_DEFAULT.rpartition(":")[2]),
        server_port=server_port,
        serf_lan_port=serf_port,
        data_dir=RUN / "consul",
        log_path=LOGS / "consul.log",
        # Every connection of the replicas comes from 127.0.0.1 (docs/consul.md, "Connections to the agent").
        extra_config={"limits": {"http_max_conns_per_client": 1024}},
    )
    print(f"consul: starting {agent.version()} as a single-node server on {agent.http_addr} "
          f"(data in {agent.data_dir})")
    agent.start()
    (PIDS / "consul.pid").write_text(str(agent.pid))
    return agent.http_addr


def _started_names() -> list[str]:
    """Everything with a pid file, in start order (an earlier `up` may have started other replicas)."""
    found = {path.stem for path in PIDS.glob("*.pid")} if PIDS.exists() else set()
    replicas = sorted((n for n in found if n.startswith("controlplane")), key=lambda n: (len(n), n))
    return [n for n in ["consul", *replicas, *DEMO, "prometheus"] if n in found or n in ORDER]


def down() -> int:
    stopped = []
    for name in reversed(_started_names()):
        pid = _pid(name)
        if pid is not None:
            os.killpg(pid, signal.SIGTERM)
            deadline = time.monotonic() + 15
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if _alive(pid):
                os.killpg(pid, signal.SIGKILL)
            stopped.append(name)
        (PIDS / f"{name}.pid").unlink(missing_ok=True)
    print(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")
    return 0


def status() -> int:
    for name in _started_names():
        pid = _pid(name)
        print(f"  {name:<13} {'pid ' + str(pid) if pid else 'not running'}")
    with _channel(CONTROL_PLANE) as channel:
        try:
            stub = registry_pb2_grpc.RegistryServiceStub(channel)
            services = stub.ListServices(registry_pb2.ListServicesRequest(), timeout=3.0).services
        except grpc.RpcError as exc:
            print(f"control plane at {CONTROL_PLANE}: {exc.code().name} {exc.details()}")
            return 1
    print(f"\nregistered services (control plane {CONTROL_PLANE}):")
    for svc in services:
        print(f"  {svc.name:<13} {svc.passing_count}/{svc.instance_count} passing")
        for inst in _passing(svc.name):
            health = registry_pb2.HealthStatus.Name(inst.health).removeprefix("HEALTH_STATUS_").lower()
            print(f"    {inst.instance_id:<30} {inst.address}:{inst.port}  {health}")
    return 0


def logs() -> int:
    if not LOGS.exists():
        print("no logs yet (make up first)")
        return 0
    for path in sorted(LOGS.glob("*.log")):
        lines = path.read_text(errors="replace").splitlines()[-30:]
        print(f"==> {path.relative_to(ROOT)} <==")
        print("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    commands = {"up": up, "down": down, "status": status, "logs": logs, "revive": revive}
    if len(sys.argv) != 2 or sys.argv[1] not in commands:
        sys.exit(f"usage: {sys.argv[0]} {'|'.join(commands)}")
    sys.exit(commands[sys.argv[1]]())
