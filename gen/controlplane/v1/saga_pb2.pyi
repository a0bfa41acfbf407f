import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class SagaStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SAGA_STATUS_UNSPECIFIED: _ClassVar[SagaStatus]
    SAGA_STATUS_RUNNING: _ClassVar[SagaStatus]
    SAGA_STATUS_COMPENSATING: _ClassVar[SagaStatus]
    SAGA_STATUS_COMPLETED: _ClassVar[SagaStatus]
    SAGA_STATUS_COMPENSATED: _ClassVar[SagaStatus]
    SAGA_STATUS_NEEDS_ATTENTION: _ClassVar[SagaStatus]

class StepStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    STEP_STATUS_UNSPECIFIED: _ClassVar[StepStatus]
    STEP_STATUS_PENDING: _ClassVar[StepStatus]
    STEP_STATUS_RUNNING: _ClassVar[StepStatus]
    STEP_STATUS_SUCCEEDED: _ClassVar[StepStatus]
    STEP_STATUS_FAILED: _ClassVar[StepStatus]
    STEP_STATUS_COMPENSATING: _ClassVar[StepStatus]
    STEP_STATUS_COMPENSATED: _ClassVar[StepStatus]
    STEP_STATUS_COMPENSATION_FAILED: _ClassVar[StepStatus]
SAGA_STATUS_UNSPECIFIED: SagaStatus
SAGA_STATUS_RUNNING: SagaStatus
SAGA_STATUS_COMPENSATING: SagaStatus
SAGA_STATUS_COMPLETED: SagaStatus
SAGA_STATUS_COMPENSATED: SagaStatus
SAGA_STATUS_NEEDS_ATTENTION: SagaStatus
STEP_STATUS_UNSPECIFIED: StepStatus
STEP_STATUS_PENDING: StepStatus
STEP_STATUS_RUNNING: StepStatus
STEP_STATUS_SUCCEEDED: StepStatus
STEP_STATUS_FAILED: StepStatus
STEP_STATUS_COMPENSATING: StepStatus
STEP_STATUS_COMPENSATED: StepStatus
STEP_STATUS_COMPENSATION_FAILED: StepStatus

class RetryPolicy(_message.Message):
    __slots__ = ("max_attempts", "initial_backoff", "max_backoff", "backoff_multiplier")
    MAX_ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    INITIAL_BACKOFF_FIELD_NUMBER: _ClassVar[int]
    MAX_BACKOFF_FIELD_NUMBER: _ClassVar[int]
    BACKOFF_MULTIPLIER_FIELD_NUMBER: _ClassVar[int]
    max_attempts: int
    initial_backoff: _duration_pb2.Duration
    max_backoff: _duration_pb2.Duration
    backoff_multiplier: float
    def __init__(self, max_attempts: _Optional[int] = ..., initial_backoff: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., max_backoff: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., backoff_multiplier: _Optional[float] = ...) -> None: ...

class SagaStep(_message.Message):
    __slots__ = ("name", "target_service", "action", "compensation", "request_template", "compensation_template", "response_mapping", "timeout", "retry", "compensate_always")
    class ResponseMappingEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    NAME_FIELD_NUMBER: _ClassVar[int]
    TARGET_SERVICE_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    COMPENSATION_FIELD_NUMBER: _ClassVar[int]
    REQUEST_TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    COMPENSATION_TEMPLATE_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_MAPPING_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    RETRY_FIELD_NUMBER: _ClassVar[int]
    COMPENSATE_ALWAYS_FIELD_NUMBER: _ClassVar[int]
    name: str
    target_service: str
    action: str
    compensation: str
    request_template: _struct_pb2.Struct
    compensation_template: _struct_pb2.Struct
    response_mapping: _containers.ScalarMap[str, str]
    timeout: _duration_pb2.Duration
    retry: RetryPolicy
    compensate_always: bool
    def __init__(self, name: _Optional[str] = ..., target_service: _Optional[str] = ..., action: _Optional[str] = ..., compensation: _Optional[str] = ..., request_template: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., compensation_template: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., response_mapping: _Optional[_Mapping[str, str]] = ..., timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., retry: _Optional[_Union[RetryPolicy, _Mapping]] = ..., compensate_always: _Optional[bool] = ...) -> None: ...

class SagaDefinition(_message.Message):
    __slots__ = ("name", "version", "steps", "timeout", "compensation_retry")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    COMPENSATION_RETRY_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: int
    steps: _containers.RepeatedCompositeFieldContainer[SagaStep]
    timeout: _duration_pb2.Duration
    compensation_retry: RetryPolicy
    def __init__(self, name: _Optional[str] = ..., version: _Optional[int] = ..., steps: _Optional[_Iterable[_Union[SagaStep, _Mapping]]] = ..., timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., compensation_retry: _Optional[_Union[RetryPolicy, _Mapping]] = ...) -> None: ...

class StepAttempt(_message.Message):
    __slots__ = ("attempt", "compensation", "started_at", "finished_at", "code", "error", "replica")
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    COMPENSATION_FIELD_NUMBER: _ClassVar[int]
    STARTED_AT_FIELD_NUMBER: _ClassVar[int]
    FINISHED_AT_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    REPLICA_FIELD_NUMBER: _ClassVar[int]
    attempt: int
    compensation: bool
    started_at: _timestamp_pb2.Timestamp
    finished_at: _timestamp_pb2.Timestamp
    code: str
    error: str
    replica: str
    def __init__(self, attempt: _Optional[int] = ..., compensation: _Optional[bool] = ..., started_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., finished_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., code: _Optional[str] = ..., error: _Optional[str] = ..., replica: _Optional[str] = ...) -> None: ...

class StepState(_message.Message):
    __slots__ = ("name", "status", "attempts", "response", "attempts_left_out")
    NAME_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    ATTEMPTS_LEFT_OUT_FIELD_NUMBER: _ClassVar[int]
    name: str
    status: StepStatus
    attempts: _containers.RepeatedCompositeFieldContainer[StepAttempt]
    response: _struct_pb2.Struct
    attempts_left_out: int
    def __init__(self, name: _Optional[str] = ..., status: _Optional[_Union[StepStatus, str]] = ..., attempts: _Optional[_Iterable[_Union[StepAttempt, _Mapping]]] = ..., response: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., attempts_left_out: _Optional[int] = ...) -> None: ...

class Saga(_message.Message):
    __slots__ = ("saga_id", "definition_name", "definition_version", "status", "input", "data", "current_step", "steps", "created_at", "updated_at", "trace_id", "errors", "stream_version", "errors_left_out")
    SAGA_ID_FIELD_NUMBER: _ClassVar[int]
    DEFINITION_NAME_FIELD_NUMBER: _ClassVar[int]
    DEFINITION_VERSION_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    CURRENT_STEP_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    STREAM_VERSION_FIELD_NUMBER: _ClassVar[int]
    ERRORS_LEFT_OUT_FIELD_NUMBER: _ClassVar[int]
    saga_id: str
    definition_name: str
    definition_version: int
    status: SagaStatus
    input: _struct_pb2.Struct
    data: _struct_pb2.Struct
    current_step: int
    steps: _containers.RepeatedCompositeFieldContainer[StepState]
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    trace_id: str
    errors: _containers.RepeatedScalarFieldContainer[str]
    stream_version: int
    errors_left_out: int
    def __init__(self, saga_id: _Optional[str] = ..., definition_name: _Optional[str] = ..., definition_version: _Optional[int] = ..., status: _Optional[_Union[SagaStatus, str]] = ..., input: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., data: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., current_step: _Optional[int] = ..., steps: _Optional[_Iterable[_Union[StepState, _Mapping]]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., trace_id: _Optional[str] = ..., errors: _Optional[_Iterable[str]] = ..., stream_version: _Optional[int] = ..., errors_left_out: _Optional[int] = ...) -> None: ...

class SagaEvent(_message.Message):
    __slots__ = ("version", "type", "recorded_at", "step", "payload")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    RECORDED_AT_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    PAYLOAD_FIELD_NUMBER: _ClassVar[int]
    version: int
    type: str
    recorded_at: _timestamp_pb2.Timestamp
    step: int
    payload: _struct_pb2.Struct
    def __init__(self, version: _Optional[int] = ..., type: _Optional[str] = ..., recorded_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., step: _Optional[int] = ..., payload: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class RegisterDefinitionRequest(_message.Message):
    __slots__ = ("definition",)
    DEFINITION_FIELD_NUMBER: _ClassVar[int]
    definition: SagaDefinition
    def __init__(self, definition: _Optional[_Union[SagaDefinition, _Mapping]] = ...) -> None: ...

class RegisterDefinitionResponse(_message.Message):
    __slots__ = ("definition",)
    DEFINITION_FIELD_NUMBER: _ClassVar[int]
    definition: SagaDefinition
    def __init__(self, definition: _Optional[_Union[SagaDefinition, _Mapping]] = ...) -> None: ...

class GetDefinitionRequest(_message.Message):
    __slots__ = ("name", "version")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: int
    def __init__(self, name: _Optional[str] = ..., version: _Optional[int] = ...) -> None: ...

class GetDefinitionResponse(_message.Message):
    __slots__ = ("definition",)
    DEFINITION_FIELD_NUMBER: _ClassVar[int]
    definition: SagaDefinition
    def __init__(self, definition: _Optional[_Union[SagaDefinition, _Mapping]] = ...) -> None: ...

class ListDefinitionsRequest(_message.Message):
    __slots__ = ("page_size", "page_token")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListDefinitionsResponse(_message.Message):
    __slots__ = ("definitions", "next_page_token")
    DEFINITIONS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    definitions: _containers.RepeatedCompositeFieldContainer[SagaDefinition]
    next_page_token: str
    def __init__(self, definitions: _Optional[_Iterable[_Union[SagaDefinition, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class StartSagaRequest(_message.Message):
    __slots__ = ("saga_id", "definition_name", "definition_version", "input")
    SAGA_ID_FIELD_NUMBER: _ClassVar[int]
    DEFINITION_NAME_FIELD_NUMBER: _ClassVar[int]
    DEFINITION_VERSION_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    saga_id: str
    definition_name: str
    definition_version: int
    input: _struct_pb2.Struct
    def __init__(self, saga_id: _Optional[str] = ..., definition_name: _Optional[str] = ..., definition_version: _Optional[int] = ..., input: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class StartSagaResponse(_message.Message):
    __slots__ = ("saga", "created")
    SAGA_FIELD_NUMBER: _ClassVar[int]
    CREATED_FIELD_NUMBER: _ClassVar[int]
    saga: Saga
    created: bool
    def __init__(self, saga: _Optional[_Union[Saga, _Mapping]] = ..., created: _Optional[bool] = ...) -> None: ...

class GetSagaRequest(_message.Message):
    __slots__ = ("saga_id",)
    SAGA_ID_FIELD_NUMBER: _ClassVar[int]
    saga_id: str
    def __init__(self, saga_id: _Optional[str] = ...) -> None: ...

class GetSagaResponse(_message.Message):
    __slots__ = ("saga",)
    SAGA_FIELD_NUMBER: _ClassVar[int]
    saga: Saga
    def __init__(self, saga: _Optional[_Union[Saga, _Mapping]] = ...) -> None: ...

class ListSagasRequest(_message.Message):
    __slots__ = ("status", "definition_name", "page_size", "page_token")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    DEFINITION_NAME_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    status: SagaStatus
    definition_name: str
    page_size: int
    page_token: str
    def __init__(self, status: _Optional[_Union[SagaStatus, str]] = ..., definition_name: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListSagasResponse(_message.Message):
    __slots__ = ("sagas", "next_page_token")
    SAGAS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    sagas: _containers.RepeatedCompositeFieldContainer[Saga]
    next_page_token: str
    def __init__(self, sagas: _Optional[_Iterable[_Union[Saga, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class WatchSagaRequest(_message.Message):
    __slots__ = ("saga_id",)
    SAGA_ID_FIELD_NUMBER: _ClassVar[int]
    saga_id: str
    def __init__(self, saga_id: _Optional[str] = ...) -> None: ...

class WatchSagaResponse(_message.Message):
    __slots__ = ("event", "saga")
    EVENT_FIELD_NUMBER: _ClassVar[int]
    SAGA_FIELD_NUMBER: _ClassVar[int]
    event: SagaEvent
    saga: Saga
    def __init__(self, event: _Optional[_Union[SagaEvent, _Mapping]] = ..., saga: _Optional[_Union[Saga, _Mapping]] = ...) -> None: ...

class AbortSagaRequest(_message.Message):
    __slots__ = ("saga_id", "reason")
    SAGA_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    saga_id: str
    reason: str
    def __init__(self, saga_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class AbortSagaResponse(_message.Message):
    __slots__ = ("saga",)
    SAGA_FIELD_NUMBER: _ClassVar[int]
    saga: Saga
    def __init__(self, saga: _Optional[_Union[Saga, _Mapping]] = ...) -> None: ...
