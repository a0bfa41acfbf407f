import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ListXdsClientsRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListXdsClientsResponse(_message.Message):
    __slots__ = ("clients", "counters", "next_page_token")
    CLIENTS_FIELD_NUMBER: _ClassVar[int]
    COUNTERS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    clients: _containers.RepeatedCompositeFieldContainer[XdsClient]
    counters: XdsCounters
    next_page_token: str
    def __init__(self, clients: _Optional[_Iterable[_Union[XdsClient, _Mapping]]] = ..., counters: _Optional[_Union[XdsCounters, _Mapping]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class XdsClient(_message.Message):
    __slots__ = ("node_id", "node_cluster", "peer", "user_agent", "environment", "connected_at", "subscriptions")
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    NODE_CLUSTER_FIELD_NUMBER: _ClassVar[int]
    PEER_FIELD_NUMBER: _ClassVar[int]
    USER_AGENT_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_FIELD_NUMBER: _ClassVar[int]
    CONNECTED_AT_FIELD_NUMBER: _ClassVar[int]
    SUBSCRIPTIONS_FIELD_NUMBER: _ClassVar[int]
    node_id: str
    node_cluster: str
    peer: str
    user_agent: str
    environment: str
    connected_at: _timestamp_pb2.Timestamp
    subscriptions: _containers.RepeatedCompositeFieldContainer[XdsSubscription]
    def __init__(self, node_id: _Optional[str] = ..., node_cluster: _Optional[str] = ..., peer: _Optional[str] = ..., user_agent: _Optional[str] = ..., environment: _Optional[str] = ..., connected_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., subscriptions: _Optional[_Iterable[_Union[XdsSubscription, _Mapping]]] = ...) -> None: ...

class XdsSubscription(_message.Message):
    __slots__ = ("type_url", "resource_names", "sent_version", "acked_version", "last_nack", "nacks", "responses")
    TYPE_URL_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_NAMES_FIELD_NUMBER: _ClassVar[int]
    SENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    ACKED_VERSION_FIELD_NUMBER: _ClassVar[int]
    LAST_NACK_FIELD_NUMBER: _ClassVar[int]
    NACKS_FIELD_NUMBER: _ClassVar[int]
    RESPONSES_FIELD_NUMBER: _ClassVar[int]
    type_url: str
    resource_names: _containers.RepeatedScalarFieldContainer[str]
    sent_version: str
    acked_version: str
    last_nack: str
    nacks: int
    responses: int
    def __init__(self, type_url: _Optional[str] = ..., resource_names: _Optional[_Iterable[str]] = ..., sent_version: _Optional[str] = ..., acked_version: _Optional[str] = ..., last_nack: _Optional[str] = ..., nacks: _Optional[int] = ..., responses: _Optional[int] = ...) -> None: ...

class XdsCounters(_message.Message):
    __slots__ = ("responses", "acks", "nacks", "refused")
    class ResponsesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    class AcksEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    class NacksEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    RESPONSES_FIELD_NUMBER: _ClassVar[int]
    ACKS_FIELD_NUMBER: _ClassVar[int]
    NACKS_FIELD_NUMBER: _ClassVar[int]
    REFUSED_FIELD_NUMBER: _ClassVar[int]
    responses: _containers.ScalarMap[str, int]
    acks: _containers.ScalarMap[str, int]
    nacks: _containers.ScalarMap[str, int]
    refused: int
    def __init__(self, responses: _Optional[_Mapping[str, int]] = ..., acks: _Optional[_Mapping[str, int]] = ..., nacks: _Optional[_Mapping[str, int]] = ..., refused: _Optional[int] = ...) -> None: ...
