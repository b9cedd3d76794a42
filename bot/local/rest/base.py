"""What every REST handler speaks: the routed `Call`, `ApiError` and the `Reply` it returns.

Kept apart from the router so the resource modules can import it without importing the route
table that imports them. An error carries Discord's status, code and message (or a whole
body, for form errors and 429s); `violation` marks it as a Discord rule the bot broke, which
the router also records in the world.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from bot.local.attachments import Upload
from bot.local.limits import FieldError, form_error_body
from bot.local.models import JSON

ERROR_MESSAGES = {
    10003: "Unknown Channel",
    10004: "Unknown Guild",
    10007: "Unknown Member",
    10008: "Unknown Message",
    10013: "Unknown User",
    10015: "Unknown Webhook",
    10062: "Unknown interaction",
    40005: "Request entity too large",
    50001: "Missing Access",
    50003: "Cannot execute action on a DM channel",
    50005: "Cannot edit a message authored by another user",
    50007: "Cannot send messages to this user",
    50013: "Missing Permissions",
    50033: "Invalid Recipient(s)",
    50083: "Thread is archived",
    160005: "Thread is locked",
}


class ApiError(Exception):
    """An error response; `violation` also records it as a Discord-rule violation by the bot."""

    def __init__(
        self,
        status: int,
        code: int = 0,
        message: str | None = None,
        *,
        violation: str | None = None,
        body: JSON | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        text = message or ERROR_MESSAGES.get(code) or f"{status}: {HTTPStatus(status).phrase}"
        self.status = status
        self.body: JSON = body or {"message": text, "code": code}
        self.violation = violation
        self.headers = headers or {}

    @classmethod
    def invalid_form(cls, errors: Sequence[FieldError]) -> ApiError:
        return cls(400, body=form_error_body(errors), violation="; ".join(str(e) for e in errors))

    @classmethod
    def rate_limited(cls, retry_after: float, *, global_: bool, code: int | None) -> ApiError:
        body: JSON = {
            "message": "You are being rate limited.",
            "retry_after": round(retry_after, 3),
            "global": global_,
        }
        if code is not None:
            body["code"] = code
        headers = {
            "Via": "1.1 google",
            "Retry-After": str(math.ceil(retry_after)),
            "X-RateLimit-Scope": "global" if global_ else "user",
        }
        if global_:
            headers["X-RateLimit-Global"] = "true"
        else:
            headers.update(
                {
                    "X-RateLimit-Limit": "5",
                    "X-RateLimit-Remaining": "0",
                    "X-RateLimit-Reset": f"{time.time() + retry_after:.3f}",
                    "X-RateLimit-Reset-After": f"{retry_after:.3f}",
                    "X-RateLimit-Bucket": "emulated-bucket",
                }
            )
        return cls(429, body=body, headers=headers)


@dataclass
class Call:
    """A routed request: its match groups, JSON body and uploaded files."""

    method: str
    path: str
    match: re.Match[str]
    query: dict[str, str]
    body: Any
    files: list[Upload]

    def id(self, group: str) -> int:
        return int(self.match[group])

    def json_object(self) -> JSON:
        if not isinstance(self.body, dict):
            raise ApiError(
                400,
                50109,
                "The request body contains invalid JSON.",
                violation="expected a JSON object",
            )
        return self.body

    def flag(self, name: str) -> bool:
        return self.query.get(name, "").lower() in ("1", "true")

    def query_int(self, name: str, default: int) -> int:
        """An integer query parameter; anything else is Discord's NUMBER_TYPE_COERCE form error."""
        raw = self.query.get(name)
        if raw is None:
            return default
        try:
            return int(raw)
        except ValueError:
            raise ApiError.invalid_form(
                [FieldError((name,), "NUMBER_TYPE_COERCE", f'Value "{raw}" is not int.')]
            ) from None


Reply = tuple[int, Any]
Handler = Callable[[Call], Awaitable[Reply]]
