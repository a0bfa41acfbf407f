"""Calls a demo service makes to another: the user service's check that a user may buy."""

from __future__ import annotations

import grpc

from controlplane.errors import DomainError, PreconditionError
from demo.user.v1 import user_pb2, user_pb2_grpc


class DependencyUnavailable(DomainError):
    code = grpc.StatusCode.UNAVAILABLE


class UserCheck:
    """Checks that a user exists and is active, through the user service."""

    def __init__(self, channel: grpc.Channel) -> None:
        self._users = user_pb2_grpc.UserServiceStub(channel)

    def __call__(self, user_id: str) -> None:
        try:
            user = self._users.GetUser(user_pb2.GetUserRequest(user_id=user_id), timeout=2.0).user
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.NOT_FOUND:
                raise PreconditionError(f"unknown user {user_id!r}") from None
            raise DependencyUnavailable(f"user service: {exc.code().name} {exc.details()}") from None
        if not user.active:
            raise PreconditionError(f"user {user_id!r} is inactive")
