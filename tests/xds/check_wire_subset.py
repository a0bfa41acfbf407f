"""Run apart (its own process, xds-protos on sys.path): compare each message and enum of the wire subset
with the Envoy one its comment names. Prints one problem a line; nothing when they agree.

    check_wire_subset.py [PROTO]    PROTO: another copy of envoy_wire.proto to compile and check instead
"""

from __future__ import annotations

import importlib
import importlib.util
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools" / "xds-protos"))

from google.protobuf import descriptor_pool  # noqa: E402


def load_subset(proto: pathlib.Path) -> object:
    """The generated module of `proto`: the installed one, or one compiled now from another copy."""
    if proto == PROTO:
        from controlplane.xds.v1 import envoy_wire_pb2

        return envoy_wire_pb2
    import tempfile

    from grpc_tools import protoc

    out = pathlib.Path(tempfile.mkdtemp())
    (out / "controlplane" / "xds" / "v1").mkdir(parents=True)
    (out / "controlplane" / "xds" / "v1" / "envoy_wire.proto").write_text(proto.read_text())
    include = pathlib.Path(protoc.__file__).parent / "_proto"
    if protoc.main(["protoc", f"-I{out}", f"-I{include}", f"--python_out={out}",
                    "controlplane/xds/v1/envoy_wire.proto"]) != 0:
        raise SystemExit(f"cannot compile {proto}")
    spec = importlib.util.spec_from_file_location("envoy_wire_pb2", out / "controlplane/xds/v1/envoy_wire_pb2.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module

ENVOY_MODULES = [
    "envoy.service.discovery.v3.discovery_pb2",
    "envoy.config.listener.v3.listener_pb2",
    "envoy.config.route.v3.route_pb2",
    "envoy.config.cluster.v3.cluster_pb2",
    "envoy.config.endpoint.v3.endpoint_pb2",
    "envoy.extensions.filters.network.http_connection_manager.v3.http_connection_manager_pb2",
    "envoy.extensions.filters.http.router.v3.router_pb2",
    "envoy.extensions.filters.http.fault.v3.fault_pb2",
]
PROTO = ROOT / "protos" / "controlplane" / "xds" / "v1" / "envoy_wire.proto"


def pairs(proto: pathlib.Path) -> dict[str, str]:
    """Our name -> the Envoy full name in the comment right above its declaration."""
    found = re.findall(r"^// ([\w.]+)\n(?:message|enum) (\w+)", proto.read_text(), flags=re.M)
    return {ours: theirs for theirs, ours in found}


def main() -> int:
    proto = pathlib.Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else PROTO
    ours_file = load_subset(proto).DESCRIPTOR  # type: ignore[attr-defined]
    for module in ENVOY_MODULES:
        importlib.import_module(module)
    pool = descriptor_pool.Default()
    names = pairs(proto)
    problems = []
    missing = set(ours_file.message_types_by_name) | set(ours_file.enum_types_by_name)
    missing -= set(names)
    problems += [f"{name}: no comment naming its Envoy message" for name in sorted(missing)]
    for ours, theirs in names.items():
        if ours in ours_file.enum_types_by_name:
            mine = ours_file.enum_types_by_name[ours]
            real = pool.FindEnumTypeByName(theirs)
            real_values = {v.number: v.name for v in real.values}
            for value in mine.values:
                if value.number not in real_values or not value.name.endswith(real_values[value.number]):
                    real_name = real_values.get(value.number)
                    problems.append(f"{ours}.{value.name} = {value.number}: {theirs} has {real_name}")
            continue
        mine = ours_file.message_types_by_name[ours]
        real = pool.FindMessageTypeByName(theirs)
        for field in mine.fields:
            where = f"{ours}.{field.name} ({theirs})"
            other = real.fields_by_number.get(field.number)
            if other is None:
                problems.append(f"{where}: no field {field.number}")
                continue
            if other.name != field.name:
                problems.append(f"{where}: field {field.number} is {other.name}")
            if other.type != field.type or other.is_repeated != field.is_repeated:
                problems.append(f"{where}: type or cardinality differs")
            if field.message_type is not None:
                expected = names.get(field.message_type.name, field.message_type.full_name)
                if other.message_type.full_name != expected:
                    problems.append(f"{where}: is {other.message_type.full_name}, ours maps to {expected}")
            if field.enum_type is not None and names.get(field.enum_type.name) != other.enum_type.full_name:
                problems.append(f"{where}: enum {other.enum_type.full_name}")
            if (field.containing_oneof is None) != (other.containing_oneof is None):
                problems.append(f"{where}: oneof membership differs")
    print("\n".join(problems))
    return 0


if __name__ == "__main__":
    sys.exit(main())
