import datetime

from google.protobuf import any_pb2 as _any_pb2
from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import wrappers_pb2 as _wrappers_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ApiVersion(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    API_VERSION_AUTO: _ClassVar[ApiVersion]
    API_VERSION_V2: _ClassVar[ApiVersion]
    API_VERSION_V3: _ClassVar[ApiVersion]

class DenominatorType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DENOMINATOR_TYPE_HUNDRED: _ClassVar[DenominatorType]
    DENOMINATOR_TYPE_TEN_THOUSAND: _ClassVar[DenominatorType]
    DENOMINATOR_TYPE_MILLION: _ClassVar[DenominatorType]

class DiscoveryType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DISCOVERY_TYPE_STATIC: _ClassVar[DiscoveryType]
    DISCOVERY_TYPE_STRICT_DNS: _ClassVar[DiscoveryType]
    DISCOVERY_TYPE_LOGICAL_DNS: _ClassVar[DiscoveryType]
    DISCOVERY_TYPE_EDS: _ClassVar[DiscoveryType]

class LbPolicy(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LB_POLICY_ROUND_ROBIN: _ClassVar[LbPolicy]
    LB_POLICY_LEAST_REQUEST: _ClassVar[LbPolicy]
    LB_POLICY_RING_HASH: _ClassVar[LbPolicy]

class HealthStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    HEALTH_STATUS_UNKNOWN: _ClassVar[HealthStatus]
    HEALTH_STATUS_HEALTHY: _ClassVar[HealthStatus]
    HEALTH_STATUS_UNHEALTHY: _ClassVar[HealthStatus]
    HEALTH_STATUS_DRAINING: _ClassVar[HealthStatus]
    HEALTH_STATUS_TIMEOUT: _ClassVar[HealthStatus]
    HEALTH_STATUS_DEGRADED: _ClassVar[HealthStatus]
API_VERSION_AUTO: ApiVersion
API_VERSION_V2: ApiVersion
API_VERSION_V3: ApiVersion
DENOMINATOR_TYPE_HUNDRED: DenominatorType
DENOMINATOR_TYPE_TEN_THOUSAND: DenominatorType
DENOMINATOR_TYPE_MILLION: DenominatorType
DISCOVERY_TYPE_STATIC: DiscoveryType
DISCOVERY_TYPE_STRICT_DNS: DiscoveryType
DISCOVERY_TYPE_LOGICAL_DNS: DiscoveryType
DISCOVERY_TYPE_EDS: DiscoveryType
LB_POLICY_ROUND_ROBIN: LbPolicy
LB_POLICY_LEAST_REQUEST: LbPolicy
LB_POLICY_RING_HASH: LbPolicy
HEALTH_STATUS_UNKNOWN: HealthStatus
HEALTH_STATUS_HEALTHY: HealthStatus
HEALTH_STATUS_UNHEALTHY: HealthStatus
HEALTH_STATUS_DRAINING: HealthStatus
HEALTH_STATUS_TIMEOUT: HealthStatus
HEALTH_STATUS_DEGRADED: HealthStatus

class DiscoveryRequest(_message.Message):
    __slots__ = ("version_info", "node", "resource_names", "type_url", "response_nonce", "error_detail")
    VERSION_INFO_FIELD_NUMBER: _ClassVar[int]
    NODE_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_NAMES_FIELD_NUMBER: _ClassVar[int]
    TYPE_URL_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_NONCE_FIELD_NUMBER: _ClassVar[int]
    ERROR_DETAIL_FIELD_NUMBER: _ClassVar[int]
    version_info: str
    node: Node
    resource_names: _containers.RepeatedScalarFieldContainer[str]
    type_url: str
    response_nonce: str
    error_detail: RpcStatus
    def __init__(self, version_info: _Optional[str] = ..., node: _Optional[_Union[Node, _Mapping]] = ..., resource_names: _Optional[_Iterable[str]] = ..., type_url: _Optional[str] = ..., response_nonce: _Optional[str] = ..., error_detail: _Optional[_Union[RpcStatus, _Mapping]] = ...) -> None: ...

class DiscoveryResponse(_message.Message):
    __slots__ = ("version_info", "resources", "type_url", "nonce", "control_plane")
    VERSION_INFO_FIELD_NUMBER: _ClassVar[int]
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    TYPE_URL_FIELD_NUMBER: _ClassVar[int]
    NONCE_FIELD_NUMBER: _ClassVar[int]
    CONTROL_PLANE_FIELD_NUMBER: _ClassVar[int]
    version_info: str
    resources: _containers.RepeatedCompositeFieldContainer[_any_pb2.Any]
    type_url: str
    nonce: str
    control_plane: ControlPlaneId
    def __init__(self, version_info: _Optional[str] = ..., resources: _Optional[_Iterable[_Union[_any_pb2.Any, _Mapping]]] = ..., type_url: _Optional[str] = ..., nonce: _Optional[str] = ..., control_plane: _Optional[_Union[ControlPlaneId, _Mapping]] = ...) -> None: ...

class RpcStatus(_message.Message):
    __slots__ = ("code", "message", "details")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    DETAILS_FIELD_NUMBER: _ClassVar[int]
    code: int
    message: str
    details: _containers.RepeatedCompositeFieldContainer[_any_pb2.Any]
    def __init__(self, code: _Optional[int] = ..., message: _Optional[str] = ..., details: _Optional[_Iterable[_Union[_any_pb2.Any, _Mapping]]] = ...) -> None: ...

class ControlPlaneId(_message.Message):
    __slots__ = ("identifier",)
    IDENTIFIER_FIELD_NUMBER: _ClassVar[int]
    identifier: str
    def __init__(self, identifier: _Optional[str] = ...) -> None: ...

class Node(_message.Message):
    __slots__ = ("id", "cluster", "metadata", "locality", "user_agent_name", "user_agent_version", "client_features")
    ID_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_FIELD_NUMBER: _ClassVar[int]
    METADATA_FIELD_NUMBER: _ClassVar[int]
    LOCALITY_FIELD_NUMBER: _ClassVar[int]
    USER_AGENT_NAME_FIELD_NUMBER: _ClassVar[int]
    USER_AGENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    CLIENT_FEATURES_FIELD_NUMBER: _ClassVar[int]
    id: str
    cluster: str
    metadata: _struct_pb2.Struct
    locality: Locality
    user_agent_name: str
    user_agent_version: str
    client_features: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, id: _Optional[str] = ..., cluster: _Optional[str] = ..., metadata: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., locality: _Optional[_Union[Locality, _Mapping]] = ..., user_agent_name: _Optional[str] = ..., user_agent_version: _Optional[str] = ..., client_features: _Optional[_Iterable[str]] = ...) -> None: ...

class Locality(_message.Message):
    __slots__ = ("region", "zone", "sub_zone")
    REGION_FIELD_NUMBER: _ClassVar[int]
    ZONE_FIELD_NUMBER: _ClassVar[int]
    SUB_ZONE_FIELD_NUMBER: _ClassVar[int]
    region: str
    zone: str
    sub_zone: str
    def __init__(self, region: _Optional[str] = ..., zone: _Optional[str] = ..., sub_zone: _Optional[str] = ...) -> None: ...

class Listener(_message.Message):
    __slots__ = ("name", "api_listener")
    NAME_FIELD_NUMBER: _ClassVar[int]
    API_LISTENER_FIELD_NUMBER: _ClassVar[int]
    name: str
    api_listener: ApiListener
    def __init__(self, name: _Optional[str] = ..., api_listener: _Optional[_Union[ApiListener, _Mapping]] = ...) -> None: ...

class ApiListener(_message.Message):
    __slots__ = ("api_listener",)
    API_LISTENER_FIELD_NUMBER: _ClassVar[int]
    api_listener: _any_pb2.Any
    def __init__(self, api_listener: _Optional[_Union[_any_pb2.Any, _Mapping]] = ...) -> None: ...

class HttpConnectionManager(_message.Message):
    __slots__ = ("stat_prefix", "rds", "route_config", "http_filters")
    STAT_PREFIX_FIELD_NUMBER: _ClassVar[int]
    RDS_FIELD_NUMBER: _ClassVar[int]
    ROUTE_CONFIG_FIELD_NUMBER: _ClassVar[int]
    HTTP_FILTERS_FIELD_NUMBER: _ClassVar[int]
    stat_prefix: str
    rds: Rds
    route_config: RouteConfiguration
    http_filters: _containers.RepeatedCompositeFieldContainer[HttpFilter]
    def __init__(self, stat_prefix: _Optional[str] = ..., rds: _Optional[_Union[Rds, _Mapping]] = ..., route_config: _Optional[_Union[RouteConfiguration, _Mapping]] = ..., http_filters: _Optional[_Iterable[_Union[HttpFilter, _Mapping]]] = ...) -> None: ...

class Rds(_message.Message):
    __slots__ = ("config_source", "route_config_name")
    CONFIG_SOURCE_FIELD_NUMBER: _ClassVar[int]
    ROUTE_CONFIG_NAME_FIELD_NUMBER: _ClassVar[int]
    config_source: ConfigSource
    route_config_name: str
    def __init__(self, config_source: _Optional[_Union[ConfigSource, _Mapping]] = ..., route_config_name: _Optional[str] = ...) -> None: ...

class HttpFilter(_message.Message):
    __slots__ = ("name", "typed_config", "is_optional")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPED_CONFIG_FIELD_NUMBER: _ClassVar[int]
    IS_OPTIONAL_FIELD_NUMBER: _ClassVar[int]
    name: str
    typed_config: _any_pb2.Any
    is_optional: bool
    def __init__(self, name: _Optional[str] = ..., typed_config: _Optional[_Union[_any_pb2.Any, _Mapping]] = ..., is_optional: _Optional[bool] = ...) -> None: ...

class ConfigSource(_message.Message):
    __slots__ = ("ads", "resource_api_version")
    ADS_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_API_VERSION_FIELD_NUMBER: _ClassVar[int]
    ads: AggregatedConfigSource
    resource_api_version: ApiVersion
    def __init__(self, ads: _Optional[_Union[AggregatedConfigSource, _Mapping]] = ..., resource_api_version: _Optional[_Union[ApiVersion, str]] = ...) -> None: ...

class AggregatedConfigSource(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Router(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class HttpFault(_message.Message):
    __slots__ = ("delay", "abort")
    DELAY_FIELD_NUMBER: _ClassVar[int]
    ABORT_FIELD_NUMBER: _ClassVar[int]
    delay: FaultDelay
    abort: FaultAbort
    def __init__(self, delay: _Optional[_Union[FaultDelay, _Mapping]] = ..., abort: _Optional[_Union[FaultAbort, _Mapping]] = ...) -> None: ...

class FaultDelay(_message.Message):
    __slots__ = ("fixed_delay", "percentage")
    FIXED_DELAY_FIELD_NUMBER: _ClassVar[int]
    PERCENTAGE_FIELD_NUMBER: _ClassVar[int]
    fixed_delay: _duration_pb2.Duration
    percentage: FractionalPercent
    def __init__(self, fixed_delay: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., percentage: _Optional[_Union[FractionalPercent, _Mapping]] = ...) -> None: ...

class FaultAbort(_message.Message):
    __slots__ = ("grpc_status", "percentage")
    GRPC_STATUS_FIELD_NUMBER: _ClassVar[int]
    PERCENTAGE_FIELD_NUMBER: _ClassVar[int]
    grpc_status: int
    percentage: FractionalPercent
    def __init__(self, grpc_status: _Optional[int] = ..., percentage: _Optional[_Union[FractionalPercent, _Mapping]] = ...) -> None: ...

class FractionalPercent(_message.Message):
    __slots__ = ("numerator", "denominator")
    NUMERATOR_FIELD_NUMBER: _ClassVar[int]
    DENOMINATOR_FIELD_NUMBER: _ClassVar[int]
    numerator: int
    denominator: DenominatorType
    def __init__(self, numerator: _Optional[int] = ..., denominator: _Optional[_Union[DenominatorType, str]] = ...) -> None: ...

class RouteConfiguration(_message.Message):
    __slots__ = ("name", "virtual_hosts")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VIRTUAL_HOSTS_FIELD_NUMBER: _ClassVar[int]
    name: str
    virtual_hosts: _containers.RepeatedCompositeFieldContainer[VirtualHost]
    def __init__(self, name: _Optional[str] = ..., virtual_hosts: _Optional[_Iterable[_Union[VirtualHost, _Mapping]]] = ...) -> None: ...

class VirtualHost(_message.Message):
    __slots__ = ("name", "domains", "routes")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DOMAINS_FIELD_NUMBER: _ClassVar[int]
    ROUTES_FIELD_NUMBER: _ClassVar[int]
    name: str
    domains: _containers.RepeatedScalarFieldContainer[str]
    routes: _containers.RepeatedCompositeFieldContainer[Route]
    def __init__(self, name: _Optional[str] = ..., domains: _Optional[_Iterable[str]] = ..., routes: _Optional[_Iterable[_Union[Route, _Mapping]]] = ...) -> None: ...

class Route(_message.Message):
    __slots__ = ("match", "route", "name")
    MATCH_FIELD_NUMBER: _ClassVar[int]
    ROUTE_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    match: RouteMatch
    route: RouteAction
    name: str
    def __init__(self, match: _Optional[_Union[RouteMatch, _Mapping]] = ..., route: _Optional[_Union[RouteAction, _Mapping]] = ..., name: _Optional[str] = ...) -> None: ...

class RouteMatch(_message.Message):
    __slots__ = ("prefix", "path")
    PREFIX_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    prefix: str
    path: str
    def __init__(self, prefix: _Optional[str] = ..., path: _Optional[str] = ...) -> None: ...

class RouteAction(_message.Message):
    __slots__ = ("cluster", "weighted_clusters", "retry_policy", "hash_policy", "max_stream_duration")
    CLUSTER_FIELD_NUMBER: _ClassVar[int]
    WEIGHTED_CLUSTERS_FIELD_NUMBER: _ClassVar[int]
    RETRY_POLICY_FIELD_NUMBER: _ClassVar[int]
    HASH_POLICY_FIELD_NUMBER: _ClassVar[int]
    MAX_STREAM_DURATION_FIELD_NUMBER: _ClassVar[int]
    cluster: str
    weighted_clusters: WeightedCluster
    retry_policy: RetryPolicy
    hash_policy: _containers.RepeatedCompositeFieldContainer[HashPolicy]
    max_stream_duration: MaxStreamDuration
    def __init__(self, cluster: _Optional[str] = ..., weighted_clusters: _Optional[_Union[WeightedCluster, _Mapping]] = ..., retry_policy: _Optional[_Union[RetryPolicy, _Mapping]] = ..., hash_policy: _Optional[_Iterable[_Union[HashPolicy, _Mapping]]] = ..., max_stream_duration: _Optional[_Union[MaxStreamDuration, _Mapping]] = ...) -> None: ...

class WeightedCluster(_message.Message):
    __slots__ = ("clusters",)
    CLUSTERS_FIELD_NUMBER: _ClassVar[int]
    clusters: _containers.RepeatedCompositeFieldContainer[ClusterWeight]
    def __init__(self, clusters: _Optional[_Iterable[_Union[ClusterWeight, _Mapping]]] = ...) -> None: ...

class ClusterWeight(_message.Message):
    __slots__ = ("name", "weight")
    NAME_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    name: str
    weight: _wrappers_pb2.UInt32Value
    def __init__(self, name: _Optional[str] = ..., weight: _Optional[_Union[_wrappers_pb2.UInt32Value, _Mapping]] = ...) -> None: ...

class RetryPolicy(_message.Message):
    __slots__ = ("retry_on", "num_retries", "retry_back_off")
    RETRY_ON_FIELD_NUMBER: _ClassVar[int]
    NUM_RETRIES_FIELD_NUMBER: _ClassVar[int]
    RETRY_BACK_OFF_FIELD_NUMBER: _ClassVar[int]
    retry_on: str
    num_retries: _wrappers_pb2.UInt32Value
    retry_back_off: RetryBackOff
    def __init__(self, retry_on: _Optional[str] = ..., num_retries: _Optional[_Union[_wrappers_pb2.UInt32Value, _Mapping]] = ..., retry_back_off: _Optional[_Union[RetryBackOff, _Mapping]] = ...) -> None: ...

class RetryBackOff(_message.Message):
    __slots__ = ("base_interval", "max_interval")
    BASE_INTERVAL_FIELD_NUMBER: _ClassVar[int]
    MAX_INTERVAL_FIELD_NUMBER: _ClassVar[int]
    base_interval: _duration_pb2.Duration
    max_interval: _duration_pb2.Duration
    def __init__(self, base_interval: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., max_interval: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class HashPolicy(_message.Message):
    __slots__ = ("header", "terminal")
    HEADER_FIELD_NUMBER: _ClassVar[int]
    TERMINAL_FIELD_NUMBER: _ClassVar[int]
    header: HeaderHash
    terminal: bool
    def __init__(self, header: _Optional[_Union[HeaderHash, _Mapping]] = ..., terminal: _Optional[bool] = ...) -> None: ...

class HeaderHash(_message.Message):
    __slots__ = ("header_name",)
    HEADER_NAME_FIELD_NUMBER: _ClassVar[int]
    header_name: str
    def __init__(self, header_name: _Optional[str] = ...) -> None: ...

class MaxStreamDuration(_message.Message):
    __slots__ = ("max_stream_duration", "grpc_timeout_header_max")
    MAX_STREAM_DURATION_FIELD_NUMBER: _ClassVar[int]
    GRPC_TIMEOUT_HEADER_MAX_FIELD_NUMBER: _ClassVar[int]
    max_stream_duration: _duration_pb2.Duration
    grpc_timeout_header_max: _duration_pb2.Duration
    def __init__(self, max_stream_duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., grpc_timeout_header_max: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class Cluster(_message.Message):
    __slots__ = ("name", "type", "eds_cluster_config", "lb_policy", "circuit_breakers", "outlier_detection", "ring_hash_lb_config")
    NAME_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    EDS_CLUSTER_CONFIG_FIELD_NUMBER: _ClassVar[int]
    LB_POLICY_FIELD_NUMBER: _ClassVar[int]
    CIRCUIT_BREAKERS_FIELD_NUMBER: _ClassVar[int]
    OUTLIER_DETECTION_FIELD_NUMBER: _ClassVar[int]
    RING_HASH_LB_CONFIG_FIELD_NUMBER: _ClassVar[int]
    name: str
    type: DiscoveryType
    eds_cluster_config: EdsClusterConfig
    lb_policy: LbPolicy
    circuit_breakers: CircuitBreakers
    outlier_detection: OutlierDetection
    ring_hash_lb_config: RingHashLbConfig
    def __init__(self, name: _Optional[str] = ..., type: _Optional[_Union[DiscoveryType, str]] = ..., eds_cluster_config: _Optional[_Union[EdsClusterConfig, _Mapping]] = ..., lb_policy: _Optional[_Union[LbPolicy, str]] = ..., circuit_breakers: _Optional[_Union[CircuitBreakers, _Mapping]] = ..., outlier_detection: _Optional[_Union[OutlierDetection, _Mapping]] = ..., ring_hash_lb_config: _Optional[_Union[RingHashLbConfig, _Mapping]] = ...) -> None: ...

class EdsClusterConfig(_message.Message):
    __slots__ = ("eds_config", "service_name")
    EDS_CONFIG_FIELD_NUMBER: _ClassVar[int]
    SERVICE_NAME_FIELD_NUMBER: _ClassVar[int]
    eds_config: ConfigSource
    service_name: str
    def __init__(self, eds_config: _Optional[_Union[ConfigSource, _Mapping]] = ..., service_name: _Optional[str] = ...) -> None: ...

class CircuitBreakers(_message.Message):
    __slots__ = ("thresholds",)
    THRESHOLDS_FIELD_NUMBER: _ClassVar[int]
    thresholds: _containers.RepeatedCompositeFieldContainer[Thresholds]
    def __init__(self, thresholds: _Optional[_Iterable[_Union[Thresholds, _Mapping]]] = ...) -> None: ...

class Thresholds(_message.Message):
    __slots__ = ("max_requests",)
    MAX_REQUESTS_FIELD_NUMBER: _ClassVar[int]
    max_requests: _wrappers_pb2.UInt32Value
    def __init__(self, max_requests: _Optional[_Union[_wrappers_pb2.UInt32Value, _Mapping]] = ...) -> None: ...

class OutlierDetection(_message.Message):
    __slots__ = ("interval", "base_ejection_time", "max_ejection_percent", "enforcing_success_rate", "success_rate_minimum_hosts", "success_rate_request_volume", "success_rate_stdev_factor", "failure_percentage_threshold", "enforcing_failure_percentage", "failure_percentage_minimum_hosts", "failure_percentage_request_volume", "max_ejection_time")
    INTERVAL_FIELD_NUMBER: _ClassVar[int]
    BASE_EJECTION_TIME_FIELD_NUMBER: _ClassVar[int]
    MAX_EJECTION_PERCENT_FIELD_NUMBER: _ClassVar[int]
    ENFORCING_SUCCESS_RATE_FIELD_NUMBER: _ClassVar[int]
    SUCCESS_RATE_MINIMUM_HOSTS_FIELD_NUMBER: _ClassVar[int]
    SUCCESS_RATE_REQUEST_VOLUME_FIELD_NUMBER: _ClassVar[int]
    SUCCESS_RATE_STDEV_FACTOR_FIELD_NUMBER: _ClassVar[int]
    FAILURE_PERCENTAGE_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    ENFORCING_FAILURE_PERCENTAGE_FIELD_NUMBER: _ClassVar[int]
    FAILURE_PERCENTAGE_MINIMUM_HOSTS_FIELD_NUMBER: _ClassVar[int]
    FAILURE_PERCENTAGE_REQUEST_VOLUME_FIELD_NUMBER: _ClassVar[int]
    MAX_EJECTION_TIME_FIELD_NUMBER: _ClassVar[int]
    interval: _duration_pb2.Duration
    base_ejection_time: _duration_pb2.Duration
    max_ejection_percent: _wrappers_pb2.UInt32Value
    enforcing_success_rate: _wrappers_pb2.UInt32Value
    success_rate_minimum_hosts: _wrappers_pb2.UInt32Value
    success_rate_request_volume: _wrappers_pb2.UInt32Value
    success_rate_stdev_factor: _wrappers_pb2.UInt32Value
    failure_percentage_threshold: _wrappers_pb2.UInt32Value
    enforcing_failure_percentage: _wrappers_pb2.UInt32Value
    failure_percentage_minimum_hosts: _wrappers_pb2.UInt32Value
    failure_percentage_request_volume: _wrappers_pb2.UInt32Value
    max_ejection_time: _duration_pb2.Duration
    def __init__(self, interval: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., base_ejection_time: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., max_ejection_percent: _Optional[_Union[_wrappers_pb2.UInt32Value, _Mapping]] = ..., enforcing_success_rate: _Optional[_Union[_wrappers_pb2.UInt32Value, _Mapping]] = ..., success_rate_minimum_hosts: _Optional[_Union[_wrappers_pb2.UInt32Value, _Mapping]] = ..., success_rate_request_volume: _Optional[_Union[_wrappers_pb2.UInt32Value, _Mapping]] = ..., success_rate_stdev_factor: _Optional[_Union[_wrappers_pb2.UInt32Value, _Mapping]] = ..., failure_percentage_threshold: _Optional[_Union[_wrappers_pb2.UInt32Value, _Mapping]] = ..., enforcing_failure_percentage: _Optional[_Union[_wrappers_pb2.UInt32Value, _Mapping]] = ..., failure_percentage_minimum_hosts: _Optional[_Union[_wrappers_pb2.UInt32Value, _Mapping]] = ..., failure_percentage_request_volume: _Optional[_Union[_wrappers_pb2.UInt32Value, _Mapping]] = ..., max_ejection_time: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class RingHashLbConfig(_message.Message):
    __slots__ = ("minimum_ring_size", "maximum_ring_size")
    MINIMUM_RING_SIZE_FIELD_NUMBER: _ClassVar[int]
    MAXIMUM_RING_SIZE_FIELD_NUMBER: _ClassVar[int]
    minimum_ring_size: _wrappers_pb2.UInt64Value
    maximum_ring_size: _wrappers_pb2.UInt64Value
    def __init__(self, minimum_ring_size: _Optional[_Union[_wrappers_pb2.UInt64Value, _Mapping]] = ..., maximum_ring_size: _Optional[_Union[_wrappers_pb2.UInt64Value, _Mapping]] = ...) -> None: ...

class ClusterLoadAssignment(_message.Message):
    __slots__ = ("cluster_name", "endpoints")
    CLUSTER_NAME_FIELD_NUMBER: _ClassVar[int]
    ENDPOINTS_FIELD_NUMBER: _ClassVar[int]
    cluster_name: str
    endpoints: _containers.RepeatedCompositeFieldContainer[LocalityLbEndpoints]
    def __init__(self, cluster_name: _Optional[str] = ..., endpoints: _Optional[_Iterable[_Union[LocalityLbEndpoints, _Mapping]]] = ...) -> None: ...

class LocalityLbEndpoints(_message.Message):
    __slots__ = ("locality", "lb_endpoints", "load_balancing_weight", "priority")
    LOCALITY_FIELD_NUMBER: _ClassVar[int]
    LB_ENDPOINTS_FIELD_NUMBER: _ClassVar[int]
    LOAD_BALANCING_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    locality: Locality
    lb_endpoints: _containers.RepeatedCompositeFieldContainer[LbEndpoint]
    load_balancing_weight: _wrappers_pb2.UInt32Value
    priority: int
    def __init__(self, locality: _Optional[_Union[Locality, _Mapping]] = ..., lb_endpoints: _Optional[_Iterable[_Union[LbEndpoint, _Mapping]]] = ..., load_balancing_weight: _Optional[_Union[_wrappers_pb2.UInt32Value, _Mapping]] = ..., priority: _Optional[int] = ...) -> None: ...

class LbEndpoint(_message.Message):
    __slots__ = ("endpoint", "health_status", "load_balancing_weight")
    ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    HEALTH_STATUS_FIELD_NUMBER: _ClassVar[int]
    LOAD_BALANCING_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    endpoint: Endpoint
    health_status: HealthStatus
    load_balancing_weight: _wrappers_pb2.UInt32Value
    def __init__(self, endpoint: _Optional[_Union[Endpoint, _Mapping]] = ..., health_status: _Optional[_Union[HealthStatus, str]] = ..., load_balancing_weight: _Optional[_Union[_wrappers_pb2.UInt32Value, _Mapping]] = ...) -> None: ...

class Endpoint(_message.Message):
    __slots__ = ("address", "hostname")
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    address: Address
    hostname: str
    def __init__(self, address: _Optional[_Union[Address, _Mapping]] = ..., hostname: _Optional[str] = ...) -> None: ...

class Address(_message.Message):
    __slots__ = ("socket_address",)
    SOCKET_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    socket_address: SocketAddress
    def __init__(self, socket_address: _Optional[_Union[SocketAddress, _Mapping]] = ...) -> None: ...

class SocketAddress(_message.Message):
    __slots__ = ("address", "port_value")
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    PORT_VALUE_FIELD_NUMBER: _ClassVar[int]
    address: str
    port_value: int
    def __init__(self, address: _Optional[str] = ..., port_value: _Optional[int] = ...) -> None: ...
