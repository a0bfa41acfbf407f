"""The authorization interceptor of the control plane (grpc.aio): identity first, then the method's rule.

No identity -> UNAUTHENTICATED; an identity the policy does not allow -> PERMISSION_DENIED; both before the
handler runs, so a refused call changes nothing. The allowed caller's identity is put in `identity.CALLER`
for the handler (the config history records it as the author).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from controlplane.log_budget import LogBudget
from controlplane.names import shown
from controlplane.security.identity import CALLER, certificate_identity, token_identity
from controlplane.security.policy import Policy, Rule, rule_for

log = logging.getLogger(__name__)
_denials = LogBudget(log)  # per identity: a client retrying a refused call does not fill the log

InstanceService = Callable[[str], Awaitable[str | None]]


class Authorization(grpc.aio.ServerInterceptor):
    """Enforces `policy`; `instance_service(instance_id)` tells whose an instance is (for Deregister and
    Heartbeat, which name an instance rather than a service)."""

    def __init__(self, policy: Policy, instance_service: InstanceService) -> None:
        self.policy = policy
        self._instance_service = instance_service

    async def intercept_service(self, continuation: Callable[[Any], Awaitable[Any]],
                                handler_call_details: grpc.HandlerCallDetails) -> Any:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        rule = rule_for(method)
        if handler is None or rule is Rule.OPEN:
            return handler
        return _guarded(handler, lambda request, context: self._admit(method, rule, request, context))

    async def _admit(self, method: str, rule: Rule | None, request: Any, context: grpc.aio.ServicerContext) -> None:
        identity = certificate_identity(context) or token_identity(context.invocation_metadata(), self.policy.tokens)
        if identity is None:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED,
                                "no identity: present a client certificate or an authorization bearer token")
        assert identity is not None
        why = await self._denied(identity, rule, request)
        if why is not None:
            _denials.log(logging.WARNING, identity, "denied %s to %s: %s", method, identity, why)
            await context.abort(grpc.StatusCode.PERMISSION_DENIED, f"{identity} may not call {method}: {why}")
        CALLER.set(identity)  # each call runs in a task of its own: the value is this call's alone

    async def _denied(self, identity: str, rule: Rule | None, request: Any) -> str | None:
        """Why `identity` may not make this call, or None when it may (what the request names is cut to size:
        the reason goes into a log line and the status the caller gets)."""
        policy = self.policy
        if rule is None:
            return "the policy knows no such method"
        if rule is Rule.ANY or policy.is_operator(identity):
            return None
        if rule is Rule.OPERATOR:
            return "operators only"
        service = policy.service_of(identity)
        if service is None:
            return f"not a service identity of trust domain {policy.trust_domain!r}"
        if rule is Rule.OWN_INSTANCES:
            target = request.service if hasattr(request, "service") else await self._instance_service(
                request.instance_id)
            if target is None or target == service:  # an unknown instance: the handler answers NOT_FOUND
                return None
            return f"instances of {shown(target)} are not {service!r}'s"
        if rule is Rule.READ_CONFIG:
            if request.service == service or request.service in policy.read_config.get(service, ()):
                return None
            return f"the config of {shown(request.service)} is not {service!r}'s to read (policy: read_config)"
        if rule is Rule.START_SAGA:
            if request.definition_name in policy.start_sagas.get(service, ()):
                return None
            return f"{service!r} may not start {shown(request.definition_name)} sagas (policy: start_sagas)"
        return "no rule allows it"


def _guarded(handler: Any, admit: Callable[[Any, Any], Awaitable[None]]) -> Any:
    """`handler` with `admit(request, context)` run before it (request None for client streams)."""
    if handler.unary_unary is not None:
        async def unary_unary(request: Any, context: Any) -> Any:
            await admit(request, context)
            result = handler.unary_unary(request, context)
            return await result if inspect.isawaitable(result) else result

        return grpc.unary_unary_rpc_method_handler(unary_unary, handler.request_deserializer,
                                                   handler.response_serializer)
    if handler.unary_stream is not None:
        async def unary_stream(request: Any, context: Any) -> AsyncIterator[Any]:
            await admit(request, context)
            async for response in handler.unary_stream(request, context):
                yield response

        return grpc.unary_stream_rpc_method_handler(unary_stream, handler.request_deserializer,
                                                    handler.response_serializer)
    if handler.stream_unary is not None:
        async def stream_unary(requests: Any, context: Any) -> Any:
            await admit(None, context)
            result = handler.stream_unary(requests, context)
            return await result if inspect.isawaitable(result) else result

        return grpc.stream_unary_rpc_method_handler(stream_unary, handler.request_deserializer,
                                                    handler.response_serializer)

    async def stream_stream(requests: Any, context: Any) -> AsyncIterator[Any]:
        await admit(None, context)
        async for response in handler.stream_stream(requests, context):
            yield response

    return grpc.stream_stream_rpc_method_handler(stream_stream, handler.request_deserializer,
                                                 handler.response_serializer)
