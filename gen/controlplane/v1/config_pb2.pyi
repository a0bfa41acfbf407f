import datetime

from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ConfigDocument(_message.Message):
    __slots__ = ("service", "environment", "content", "version", "checksum", "author", "updated_at", "message")
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CHECKSUM_FIELD_NUMBER: _ClassVar[int]
    AUTHOR_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    service: str
    environment: str
    content: _struct_pb2.Struct
    version: int
    checksum: str
    author: str
    updated_at: _timestamp_pb2.Timestamp
    message: str
    def __init__(self, service: _Optional[str] = ..., environment: _Optional[str] = ..., content: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., version: _Optional[int] = ..., checksum: _Optional[str] = ..., author: _Optional[str] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., message: _Optional[str] = ...) -> None: ...

class GetConfigRequest(_message.Message):
    __slots__ = ("service", "environment", "resolve_secrets")
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_FIELD_NUMBER: _ClassVar[int]
    RESOLVE_SECRETS_FIELD_NUMBER: _ClassVar[int]
    service: str
    environment: str
    resolve_secrets: bool
    def __init__(self, service: _Optional[str] = ..., environment: _Optional[str] = ..., resolve_secrets: _Optional[bool] = ...) -> None: ...

class GetConfigResponse(_message.Message):
    __slots__ = ("document", "layer_versions")
    class LayerVersionsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    DOCUMENT_FIELD_NUMBER: _ClassVar[int]
    LAYER_VERSIONS_FIELD_NUMBER: _ClassVar[int]
    document: ConfigDocument
    layer_versions: _containers.ScalarMap[str, int]
    def __init__(self, document: _Optional[_Union[ConfigDocument, _Mapping]] = ..., layer_versions: _Optional[_Mapping[str, int]] = ...) -> None: ...

class SetConfigRequest(_message.Message):
    __slots__ = ("service", "environment", "content", "expected_version", "author", "message")
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_FIELD_NUMBER: _ClassVar[int]
    CONTENT_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    AUTHOR_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    service: str
    environment: str
    content: _struct_pb2.Struct
    expected_version: int
    author: str
    message: str
    def __init__(self, service: _Optional[str] = ..., environment: _Optional[str] = ..., content: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., expected_version: _Optional[int] = ..., author: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class SetConfigResponse(_message.Message):
    __slots__ = ("document",)
    DOCUMENT_FIELD_NUMBER: _ClassVar[int]
    document: ConfigDocument
    def __init__(self, document: _Optional[_Union[ConfigDocument, _Mapping]] = ...) -> None: ...

class GetSchemaRequest(_message.Message):
    __slots__ = ("service",)
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    service: str
    def __init__(self, service: _Optional[str] = ...) -> None: ...

class GetSchemaResponse(_message.Message):
    __slots__ = ("schema", "version")
    SCHEMA_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    schema: _struct_pb2.Struct
    version: int
    def __init__(self, schema: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., version: _Optional[int] = ...) -> None: ...

class SetSchemaRequest(_message.Message):
    __slots__ = ("service", "schema", "expected_version", "author")
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    SCHEMA_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    AUTHOR_FIELD_NUMBER: _ClassVar[int]
    service: str
    schema: _struct_pb2.Struct
    expected_version: int
    author: str
    def __init__(self, service: _Optional[str] = ..., schema: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., expected_version: _Optional[int] = ..., author: _Optional[str] = ...) -> None: ...

class SetSchemaResponse(_message.Message):
    __slots__ = ("version",)
    VERSION_FIELD_NUMBER: _ClassVar[int]
    version: int
    def __init__(self, version: _Optional[int] = ...) -> None: ...

class VersionInfo(_message.Message):
    __slots__ = ("version", "environment", "author", "created_at", "message", "change_summary", "rolled_back_from")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_FIELD_NUMBER: _ClassVar[int]
    AUTHOR_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    CHANGE_SUMMARY_FIELD_NUMBER: _ClassVar[int]
    ROLLED_BACK_FROM_FIELD_NUMBER: _ClassVar[int]
    version: int
    environment: str
    author: str
    created_at: _timestamp_pb2.Timestamp
    message: str
    change_summary: str
    rolled_back_from: int
    def __init__(self, version: _Optional[int] = ..., environment: _Optional[str] = ..., author: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., message: _Optional[str] = ..., change_summary: _Optional[str] = ..., rolled_back_from: _Optional[int] = ...) -> None: ...

class ListVersionsRequest(_message.Message):
    __slots__ = ("service", "environment", "page_size", "page_token")
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    service: str
    environment: str
    page_size: int
    page_token: str
    def __init__(self, service: _Optional[str] = ..., environment: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListVersionsResponse(_message.Message):
    __slots__ = ("versions", "next_page_token")
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    versions: _containers.RepeatedCompositeFieldContainer[VersionInfo]
    next_page_token: str
    def __init__(self, versions: _Optional[_Iterable[_Union[VersionInfo, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class GetVersionRequest(_message.Message):
    __slots__ = ("service", "version")
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    service: str
    version: int
    def __init__(self, service: _Optional[str] = ..., version: _Optional[int] = ...) -> None: ...

class GetVersionResponse(_message.Message):
    __slots__ = ("document", "info")
    DOCUMENT_FIELD_NUMBER: _ClassVar[int]
    INFO_FIELD_NUMBER: _ClassVar[int]
    document: ConfigDocument
    info: VersionInfo
    def __init__(self, document: _Optional[_Union[ConfigDocument, _Mapping]] = ..., info: _Optional[_Union[VersionInfo, _Mapping]] = ...) -> None: ...

class RollbackRequest(_message.Message):
    __slots__ = ("service", "environment", "to_version", "expected_version", "author", "message")
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_FIELD_NUMBER: _ClassVar[int]
    TO_VERSION_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    AUTHOR_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    service: str
    environment: str
    to_version: int
    expected_version: int
    author: str
    message: str
    def __init__(self, service: _Optional[str] = ..., environment: _Optional[str] = ..., to_version: _Optional[int] = ..., expected_version: _Optional[int] = ..., author: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class RollbackResponse(_message.Message):
    __slots__ = ("document",)
    DOCUMENT_FIELD_NUMBER: _ClassVar[int]
    document: ConfigDocument
    def __init__(self, document: _Optional[_Union[ConfigDocument, _Mapping]] = ...) -> None: ...

class WatchConfigRequest(_message.Message):
    __slots__ = ("service", "environment", "resolve_secrets")
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_FIELD_NUMBER: _ClassVar[int]
    RESOLVE_SECRETS_FIELD_NUMBER: _ClassVar[int]
    service: str
    environment: str
    resolve_secrets: bool
    def __init__(self, service: _Optional[str] = ..., environment: _Optional[str] = ..., resolve_secrets: _Optional[bool] = ...) -> None: ...

class WatchConfigResponse(_message.Message):
    __slots__ = ("document", "layer_versions")
    class LayerVersionsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    DOCUMENT_FIELD_NUMBER: _ClassVar[int]
    LAYER_VERSIONS_FIELD_NUMBER: _ClassVar[int]
    document: ConfigDocument
    layer_versions: _containers.ScalarMap[str, int]
    def __init__(self, document: _Optional[_Union[ConfigDocument, _Mapping]] = ..., layer_versions: _Optional[_Mapping[str, int]] = ...) -> None: ...

class EvaluateFlagRequest(_message.Message):
    __slots__ = ("service", "environment", "flag", "subject_key", "attributes")
    class AttributesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    SERVICE_FIELD_NUMBER: _ClassVar[int]
    ENVIRONMENT_FIELD_NUMBER: _ClassVar[int]
    FLAG_FIELD_NUMBER: _ClassVar[int]
    SUBJECT_KEY_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    service: str
    environment: str
    flag: str
    subject_key: str
    attributes: _containers.ScalarMap[str, str]
    def __init__(self, service: _Optional[str] = ..., environment: _Optional[str] = ..., flag: _Optional[str] = ..., subject_key: _Optional[str] = ..., attributes: _Optional[_Mapping[str, str]] = ...) -> None: ...

class EvaluateFlagResponse(_message.Message):
    __slots__ = ("enabled", "reason", "version")
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    enabled: bool
    reason: str
    version: int
    def __init__(self, enabled: _Optional[bool] = ..., reason: _Optional[str] = ..., version: _Optional[int] = ...) -> None: ...
