"""The xDS resources of one service, built from its passing instances and its traffic policy.

A client dialing `xds:///order` (or `xds:///order:8080`) asks for the Listener named `order` (`order:8080`).
Each Listener carries its routes inline (no RDS round trip): one virtual host for every authority, one route
to the service's Cluster, or to one Cluster per version when the policy splits traffic (`order@0.2.0`). Each
Cluster is an EDS cluster over ADS; its ClusterLoadAssignment holds the passing instances in one locality.
gRPC's rules for these resources (gRFC A27, A28, A31-A33, A42, A44, A50) are checked by `problems()`.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterable, Sequence

from google.protobuf import any_pb2, duration_pb2, wrappers_pb2

from controlplane.registry.model import Instance
from controlplane.registry.validation import check_service_name
from controlplane.text import tcp_port
from controlplane.xds.traffic import RETRYABLE, TrafficPolicy
from controlplane.xds.v1 import envoy_wire_pb2 as w

LISTENER = "type.googleapis.com/envoy.config.listener.v3.Listener"
CLUSTER = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
ENDPOINTS = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
ROUTES = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
TYPES = (LISTENER, CLUSTER, ENDPOINTS)
_HCM = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
_ROUTER = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
_FAULT = "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault"
_ADS = w.ConfigSource(ads=w.AggregatedConfigSource(), resource_api_version=w.API_VERSION_V3)
_MILLION = 1_000_000


def service_of(type_url: str, name: str) -> str | None:
    """The service a resource name belongs to, or None when the name is not one this server makes."""
    if type_url == LISTENER:
        service, _, port = name.partition(":")
        if port and tcp_port(port) is None:
            return None
    elif type_url in (CLUSTER, ENDPOINTS):
        service, _, _version = name.partition("@")
    else:
        return None
    return service if not check_service_name(service) else None


class ServiceResources:
    """Every resource of one service, encoded once and shared by all streams that ask for them.

    The Cluster `order` (every passing instance) and `order@VERSION` (those of one version) exist whatever
    the routes name: a client moving to a split keeps the cluster it uses until the new ones are warm
    (make before break), instead of losing it the moment the set of routed clusters changes.
    """

    def __init__(self, service: str, instances: Iterable[Instance], policy: TrafficPolicy,
                 zone: str = "controlplane") -> None:
        self.service = service
        self.policy = policy
        self._instances = sorted(instances, key=lambda i: i.instance_id)
        self._zone = zone
        self.route = _route(service, policy)
        self.filters = _filters(policy)
        self.routed = ({f"{service}@{version}" for version, _ in policy.split} if policy.split else {service})
        self._encoded: dict[tuple[str, str], bytes | None] = {}

    @functools.cached_property
    def route_problems(self) -> tuple[str, ...]:
        """gRPC's rules these resources break whatever the listener is called (see `problems`)."""
        return _route_problems(self)

    def get(self, type_url: str, name: str) -> bytes | None:
        """The encoded resource, or None when it does not exist."""
        key = (type_url, name)
        if key not in self._encoded:
            self._encoded[key] = self._make(type_url, name)
        return self._encoded[key]

    def _make(self, type_url: str, name: str) -> bytes | None:
        if service_of(type_url, name) != self.service:
            return None
        message: object
        if type_url == LISTENER:
            manager = w.HttpConnectionManager(stat_prefix=name, route_config=self.route, http_filters=self.filters)
            message = w.Listener(name=name, api_listener=w.ApiListener(api_listener=_pack(_HCM, manager)))
        elif type_url == CLUSTER:
            message = _cluster(name, self.policy)
        elif type_url == ENDPOINTS:
            _, _, version = name.partition("@")
            members = [i for i in self._instances if not version or i.version == version]
            message = _assignment(name, members, self._zone)
        else:
            return None
        return message.SerializeToString(deterministic=True)  # type: ignore[attr-defined]


def build(service: str, instances: Iterable[Instance], policy: TrafficPolicy, zone: str = "controlplane"
          ) -> ServiceResources:
    """The resources of `service`: `instances` are the ones to send traffic to (passing, already chosen)."""
    return ServiceResources(service, instances, policy, zone)


def version_of(resources: Sequence[tuple[str, bytes]]) -> str:
    """A version naming exactly this set of resources (names and contents)."""
    digest = hashlib.blake2b(digest_size=8)
    for name, body in sorted(resources):
        digest.update(name.encode())
        digest.update(b"\0")
        digest.update(hashlib.blake2b(body, digest_size=16).digest())
    return digest.hexdigest()


# --- the resources ------------------------------------------------------------------------------------------


def _route(service: str, policy: TrafficPolicy) -> w.RouteConfiguration:
    action = w.RouteAction()
    if policy.split:
        action.weighted_clusters.clusters.extend(
            w.ClusterWeight(name=f"{service}@{version}", weight=wrappers_pb2.UInt32Value(value=weight))
            for version, weight in policy.split
        )
    else:
        action.cluster = service
    if policy.timeout is not None:
        action.max_stream_duration.max_stream_duration.CopyFrom(_duration(policy.timeout))
    if policy.retry is not None:
        retry = policy.retry
        action.retry_policy.CopyFrom(w.RetryPolicy(
            retry_on=",".join(RETRYABLE[code] for code in retry.codes),
            num_retries=wrappers_pb2.UInt32Value(value=retry.max_attempts - 1),
            retry_back_off=w.RetryBackOff(base_interval=_duration(retry.base_interval),
                                          max_interval=_duration(retry.max_interval)),
        ))
    if policy.hash_header is not None:
        action.hash_policy.append(w.HashPolicy(header=w.HeaderHash(header_name=policy.hash_header)))
    route = w.Route(name="default", match=w.RouteMatch(prefix=""), route=action)
    host = w.VirtualHost(name=service, domains=["*"], routes=[route])
    return w.RouteConfiguration(name=service, virtual_hosts=[host])


def _filters(policy: TrafficPolicy) -> tuple[w.HttpFilter, ...]:
    filters = []
    fault = policy.fault
    if fault is not None:
        config = w.HttpFault()
        if fault.abort_code is not None:
            config.abort.CopyFrom(w.FaultAbort(grpc_status=fault.abort_code, percentage=_percent(fault.abort_percent)))
        if fault.delay is not None:
            config.delay.CopyFrom(w.FaultDelay(fixed_delay=_duration(fault.delay),
                                               percentage=_percent(fault.delay_percent)))
        filters.append(w.HttpFilter(name="envoy.filters.http.fault", typed_config=_pack(_FAULT, config)))
    filters.append(w.HttpFilter(name="envoy.filters.http.router", typed_config=_pack(_ROUTER, w.Router())))
    return tuple(filters)


def _cluster(name: str, policy: TrafficPolicy) -> w.Cluster:
    cluster = w.Cluster(name=name, type=w.DISCOVERY_TYPE_EDS,
                        eds_cluster_config=w.EdsClusterConfig(eds_config=_ADS, service_name=name))
    if policy.hash_header is not None:
        cluster.lb_policy = w.LB_POLICY_RING_HASH
        cluster.ring_hash_lb_config.minimum_ring_size.value = 1024
    if policy.max_concurrent_requests is not None:
        cluster.circuit_breakers.thresholds.append(
            w.Thresholds(max_requests=wrappers_pb2.UInt32Value(value=policy.max_concurrent_requests)))
    detection = policy.outlier_detection
    if detection is not None:
        cluster.outlier_detection.CopyFrom(w.OutlierDetection(
            interval=_duration(detection.interval),
            base_ejection_time=_duration(detection.base_ejection),
            max_ejection_time=_duration(detection.max_ejection),
            max_ejection_percent=_u32(detection.max_ejection_percent),
            failure_percentage_threshold=_u32(detection.failure_percentage_threshold),
            enforcing_failure_percentage=_u32(100),
            failure_percentage_minimum_hosts=_u32(detection.minimum_hosts),
            failure_percentage_request_volume=_u32(detection.request_volume),
            # Success-rate ejection stays off, but its fields are set: grpc-js fails on them unset.
            enforcing_success_rate=_u32(0),
            success_rate_minimum_hosts=_u32(5),
            success_rate_request_volume=_u32(100),
            success_rate_stdev_factor=_u32(1900),
        ))
    return cluster


def _assignment(name: str, instances: Sequence[Instance], zone: str) -> w.ClusterLoadAssignment:
    locality = w.LocalityLbEndpoints(locality=w.Locality(zone=zone), load_balancing_weight=_u32(1))
    for instance in instances:
        address = w.Address(socket_address=w.SocketAddress(address=instance.address, port_value=instance.port))
        locality.lb_endpoints.append(w.LbEndpoint(endpoint=w.Endpoint(address=address, hostname=instance.instance_id),
                                                  health_status=w.HEALTH_STATUS_HEALTHY))
    assignment = w.ClusterLoadAssignment(cluster_name=name)
    if instances:
        assignment.endpoints.append(locality)
    return assignment


def _pack(type_url: str, message: object) -> any_pb2.Any:
    return any_pb2.Any(type_url=type_url, value=message.SerializeToString(deterministic=True))  # type: ignore[attr-defined]


def _duration(seconds: float) -> duration_pb2.Duration:
    duration = duration_pb2.Duration()
    duration.FromNanoseconds(round(seconds * 1e9))
    return duration


def _percent(percent: float) -> w.FractionalPercent:
    return w.FractionalPercent(numerator=round(percent * _MILLION / 100), denominator=w.DENOMINATOR_TYPE_MILLION)


def _u32(value: int) -> wrappers_pb2.UInt32Value:
    return wrappers_pb2.UInt32Value(value=value)


# --- gRPC's rules, checked before anything is sent ----------------------------------------------------------


def problems(resources: ServiceResources, listener_name: str) -> list[str]:
    """What a gRPC client would NACK in these resources (empty when it accepts them all). What does not depend
    on the listener's name is checked once per built set, not once per stream and response."""
    found = list(resources.route_problems)
    if service_of(LISTENER, listener_name) != resources.service:
        found.append(f"listener {listener_name} is not a name of {resources.service}")
    return found


def _route_problems(resources: ServiceResources) -> tuple[str, ...]:
    found = []
    route = resources.route
    filters = resources.filters
    if not filters or filters[-1].name != "envoy.filters.http.router":
        found.append("the router filter must be the last HTTP filter")
    for host in route.virtual_hosts:
        if not host.domains:
            found.append(f"virtual host {host.name} has no domains")
        for entry in host.routes:
            action = entry.route
            if action.HasField("weighted_clusters"):
                weights = [c.weight.value for c in action.weighted_clusters.clusters]
                if not sum(weights):
                    found.append("weighted clusters must have a total weight above 0")
    for name in sorted(resources.routed):
        body = resources.get(CLUSTER, name)
        cluster = w.Cluster.FromString(body) if body is not None else None
        if cluster is None:
            found.append(f"the route names cluster {name}, which is not made")
        elif cluster.type != w.DISCOVERY_TYPE_EDS or not cluster.eds_cluster_config.eds_config.HasField("ads"):
            found.append(f"cluster {name} must be an EDS cluster over ADS")
        endpoints = resources.get(ENDPOINTS, name)
        for locality in w.ClusterLoadAssignment.FromString(endpoints or b"").endpoints:
            if not locality.load_balancing_weight.value:
                found.append(f"a locality of {name} has no load-balancing weight (gRPC drops it)")
    return tuple(found)
