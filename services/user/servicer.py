"""demo.user.v1.UserService."""

from __future__ import annotations

import re
import sqlite3
import uuid

import grpc

from controlplane.errors import FieldViolation, maps_domain_errors, raise_if
from controlplane.names import shown
from demo.user.v1 import user_pb2, user_pb2_grpc
from services.common.pages import fetch_page
from services.common.timestamps import timestamp
from services.common.validation import require_id, text
from services.user.store import UserStore

EMAIL = re.compile(r"[^@\s]{1,64}@[^@\s.]{1,63}(\.[^@\s.]{1,63})+")
MAX_NAME = 200
MAX_EMAIL = 254


class UserServicer(user_pb2_grpc.UserServiceServicer):
    def __init__(self, store: UserStore) -> None:
        self.store = store

    @maps_domain_errors
    def CreateUser(
        self, request: user_pb2.CreateUserRequest, context: grpc.ServicerContext
    ) -> user_pb2.CreateUserResponse:
        user_id = request.user_id or f"user-{uuid.uuid4().hex[:10]}"
        problems = require_id(user_id, "user_id", "user id")
        if not request.name.strip():
            problems.append(FieldViolation("name", "required: the user's name"))
        problems += text(request.name, "name", MAX_NAME)
        if len(request.email) > MAX_EMAIL or not EMAIL.fullmatch(request.email) or text(request.email, "email", 254):
            problems.append(FieldViolation("email", f"must be an email address, got {shown(request.email)}"))
        raise_if(problems)
        return user_pb2.CreateUserResponse(user=to_proto(self.store.create(user_id, request.name, request.email)))

    @maps_domain_errors
    def GetUser(self, request: user_pb2.GetUserRequest, context: grpc.ServicerContext) -> user_pb2.GetUserResponse:
        raise_if(require_id(request.user_id, "user_id", "user id"))
        return user_pb2.GetUserResponse(user=to_proto(self.store.get(request.user_id)))

    @maps_domain_errors
    def ListUsers(
        self, request: user_pb2.ListUsersRequest, context: grpc.ServicerContext
    ) -> user_pb2.ListUsersResponse:
        rows, token = fetch_page(self.store.page, request.page_size, request.page_token, "user_id")
        return user_pb2.ListUsersResponse(users=[to_proto(r) for r in rows], next_page_token=token)


def to_proto(row: sqlite3.Row) -> user_pb2.User:
    return user_pb2.User(
        user_id=row["user_id"],
        name=row["name"],
        email=row["email"],
        active=bool(row["active"]),
        created_at=timestamp(row["created_at"]),
    )
