"""The REST front door: recording, the global rate limit, fault injection and the route table.

Every HTTP request but the gateway upgrade lands in `RestApi.handle`. It records the request,
reads the body as Discord does (JSON exactly `application/json`, or multipart with
`payload_json` and `files[n]` parts, each file within the upload limit and the whole request
within 25 MiB, else 413 code 40005), applies the global limit and any injected
failure, finds the route and turns the handler's `Reply` or `ApiError` into a response shaped
the way discord.py reads it. The whole route table is here, in one place, so what the emulator
answers can be read at a glance; the handlers live in one module per Discord resource.
"""

from __future__ import annotations

import json
import re
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import hdrs, web

from bot.local import multipart
from bot.local.attachments import Upload
from bot.local.gateway import Gateway
from bot.local.limits import REQUEST_LIMIT_BYTES, UPLOAD_LIMIT_BYTES
from bot.local.models import JSON, World
from bot.local.rest.applications import ApplicationRoutes
from bot.local.rest.base import ApiError, Call, Handler, Reply
from bot.local.rest.channels import ChannelRoutes
from bot.local.rest.guilds import GuildRoutes
from bot.local.rest.interactions import InteractionRoutes
from bot.local.rest.users import UserRoutes

API_PREFIX = "/api/v10"
FILE_PART = re.compile(r"files\[(\d+)\]")
RECORDED_HEADERS = ("Authorization", "Content-Type", "User-Agent", "X-Audit-Log-Reason")


@dataclass
class RecordedRequest:
    """One REST request as the emulator saw it (`time` is `time.perf_counter()`)."""

    method: str
    path: str
    json: Any
    headers: dict[str, str]
    time: float
    status: int = 0
    query: dict[str, str] = field(default_factory=dict)


@dataclass
class FailRule:
    """An injected failure for the next `remaining` matching requests."""

    method: str | None
    pattern: re.Pattern[str]
    status: int
    remaining: int
    code: int | None
    retry_after: float
    global_: bool


class RestApi:
    """Discord's HTTP API, as far as the bot uses it."""

    def __init__(
        self,
        world: World,
        gateway: Gateway,
        *,
        rate_limit_per_second: float | None,
        interaction_deadline: float,
        nonce_window: float = 180.0,
    ) -> None:
        self.world = world
        self.gateway = gateway
        self.rate_limit_per_second = rate_limit_per_second
        self.gateway_url = ""
        self.requests: list[RecordedRequest] = []
        self.rate_limited_count = 0
        self._window: deque[float] = deque()
        self._rules: list[FailRule] = []
        users = UserRoutes(world)
        apps = ApplicationRoutes(world, gateway)
        guilds = GuildRoutes(world)
        channels = ChannelRoutes(world, gateway, nonce_window=nonce_window)
        interactions = InteractionRoutes(world, gateway, interaction_deadline=interaction_deadline)
        guild, user = r"/guilds/(?P<guild>\d+)", r"(?P<user>\d+)"
        channel, message = r"/channels/(?P<channel>\d+)", r"(?P<message>\d+)"
        commands = r"/applications/(?P<app>\d+)(?:/guilds/(?P<guild>\d+))?/commands"
        hook = r"/webhooks/(?P<app>\d+)/(?P<token>[^/]+)"
        hook_message = rf"{hook}/messages/(?P<message>@original|\d+)"
        # (method, path pattern, needs the bot token, handler)
        routes: list[tuple[str, str, bool, Handler]] = [
            ("GET", r"/gateway", False, self._get_gateway),
            ("GET", r"/gateway/bot", True, self._get_gateway),
            ("GET", r"/users/@me", True, users.get_me),
            ("POST", r"/users/@me/channels", True, users.create_dm),
            ("GET", rf"/users/{user}", True, users.get_user),
            ("GET", r"/(?:oauth2/)?applications/@me", True, apps.get_application),
            ("GET", commands, True, apps.get_commands),
            ("PUT", commands, True, apps.put_commands),
            ("GET", guild, True, guilds.get_guild),
            ("GET", rf"{guild}/channels", True, guilds.get_guild_channels),
            ("GET", rf"{guild}/roles", True, guilds.get_guild_roles),
            ("GET", rf"{guild}/members/{user}", True, guilds.get_member),
            ("GET", channel, True, channels.get_channel),
            ("POST", rf"{channel}/typing", True, channels.typing),
            ("GET", rf"{channel}/messages", True, channels.get_history),
            ("POST", rf"{channel}/messages", True, channels.create_message),
            ("GET", rf"{channel}/messages/{message}", True, channels.get_message),
            ("PATCH", rf"{channel}/messages/{message}", True, channels.edit_message),
            ("DELETE", rf"{channel}/messages/{message}", True, channels.delete_message),
            (
                "POST",
                r"/interactions/(?P<interaction>\d+)/(?P<token>[^/]+)/callback",
                False,
                interactions.callback,
            ),
            ("POST", hook, False, interactions.followup),
            ("GET", hook_message, False, interactions.get_webhook_message),
            ("PATCH", hook_message, False, interactions.edit_webhook_message),
            ("DELETE", hook_message, False, interactions.delete_webhook_message),
        ]
        self._routes = [(m, re.compile(p), auth, h) for m, p, auth, h in routes]

    def fail_next(self, rule: FailRule) -> None:
        self._rules.append(rule)

    async def handle(self, request: web.Request) -> web.Response:
        """Every HTTP request except the gateway upgrade lands here."""
        is_api = request.path.startswith(f"{API_PREFIX}/")
        path = request.path.removeprefix(API_PREFIX) if is_api else request.path
        headers = {h: request.headers[h] for h in RECORDED_HEADERS if h in request.headers}
        record = RecordedRequest(
            request.method, path, None, headers, time.perf_counter(), query=dict(request.query)
        )
        self.requests.append(record)
        try:
            record.json, files = await self._read_body(request)
            status, body = await self._process(request, path, record.json, files, is_api=is_api)
            extra: dict[str, str] = {}
        except ApiError as error:
            if error.violation:
                self.world.violation(f"{request.method} {path}: {error.violation}")
            status, body, extra = error.status, error.body, error.headers
        record.status = status
        if body is None:
            return web.Response(status=status, headers=extra)
        data = json.dumps(body).encode()
        # discord.py only parses JSON when the header is exactly `application/json`.
        return web.Response(
            status=status, body=data, headers={**extra, "Content-Type": "application/json"}
        )

    async def _read_body(self, request: web.Request) -> tuple[Any, list[Upload]]:
        if not request.body_exists:
            return None, []
        declared = request.content_length
        if declared is not None and declared > REQUEST_LIMIT_BYTES:
            raise _too_large(f"the request is {declared} bytes (Discord allows 25 MiB)")
        # `request.content_type` parses through the `email` package (~0.17 ms) and caches only
        # 56 values, which a boundary per post defeats: look for multipart cheaply first.
        raw_type = request.headers.get(hdrs.CONTENT_TYPE, "")
        is_multipart = raw_type.partition(";")[0].strip().lower() == "multipart/form-data"
        try:
            if is_multipart:
                return self._read_multipart(await request.read(), raw_type)
            text = await request.text()
        except web.HTTPRequestEntityTooLarge:
            raise _too_large("the request is over 25 MiB") from None
        if request.content_type != "application/json":
            raise ApiError(
                400, 50109, violation=f"body sent as {request.content_type!r}, not application/json"
            )
        return _json(text), []

    @staticmethod
    def _read_multipart(body: bytes, content_type: str) -> tuple[Any, list[Upload]]:
        """`payload_json` and `files[n]` parts, as Discord reads them; each file at most the
        upload limit. Without `payload_json` the other text parts are the JSON params. A part
        with a (non-empty) filename is a file, as aiohttp's `request.post()` has it."""
        try:
            parts = multipart.parse(body, content_type)
        except multipart.MultipartError as error:
            raise _malformed(f"malformed multipart/form-data body: {error}") from None
        payload: Any = None
        params: dict[str, Any] = {}
        uploads: list[Upload] = []
        for part in parts:
            if part.filename:
                if len(part.data) > UPLOAD_LIMIT_BYTES:
                    raise _too_large(
                        f"{part.filename} is {len(part.data)} bytes (Discord allows 20 MiB a file)"
                    )
                numbered = FILE_PART.fullmatch(part.name)
                index = int(numbered[1]) if numbered else len(uploads)
                uploads.append(Upload(index, part.filename, part.data))
                continue
            try:
                text = part.data.decode()
            except UnicodeDecodeError:
                raise _malformed(f"multipart part {part.name!r} is not UTF-8") from None
            if part.name == "payload_json":
                payload = _json(text)
            else:
                params[part.name] = text
        return (payload if payload is not None else params or None), uploads

    async def _process(
        self, request: web.Request, path: str, body: Any, files: list[Upload], *, is_api: bool
    ) -> Reply:
        method = request.method
        exempt = path.startswith(("/interactions/", f"/webhooks/{self.world.application_id}/"))
        if self.rate_limit_per_second is not None and not exempt:
            self._check_global_limit(self.rate_limit_per_second)
        for rule in self._rules:
            if (rule.method is None or rule.method == method) and rule.pattern.search(path):
                rule.remaining -= 1
                if rule.remaining <= 0:
                    self._rules.remove(rule)
                raise self._injected(rule)
        routes = self._routes if is_api else []
        for route_method, pattern, auth, handler in routes:
            match = pattern.fullmatch(path)
            if match is None or route_method != method:
                continue
            if auth and request.headers.get("Authorization") != f"Bot {self.world.token}":
                raise ApiError(401, 0, "401: Unauthorized")
            return await handler(Call(method, path, match, dict(request.query), body, files))
        self.world.unhandled.append(f"{method} {path}")
        raise ApiError(404, 0, "404: Not Found")

    def _check_global_limit(self, per_second: float) -> None:
        """A sliding one-second window over every non-interaction request."""
        now = time.monotonic()
        while self._window and self._window[0] <= now - 1.0:
            self._window.popleft()
        if len(self._window) >= per_second:
            self.rate_limited_count += 1
            retry_after = max(self._window[0] + 1.0 - now, 0.001)
            raise ApiError.rate_limited(retry_after, global_=True, code=None)
        self._window.append(now)

    @staticmethod
    def _injected(rule: FailRule) -> ApiError:
        if rule.status == 429:
            return ApiError.rate_limited(rule.retry_after, global_=rule.global_, code=rule.code)
        default_code = {403: 50013, 404: 10003}.get(rule.status, 0)
        return ApiError(rule.status, rule.code if rule.code is not None else default_code)

    async def _get_gateway(self, call: Call) -> Reply:
        """Where to connect; `gateway_url` is set once the emulator knows its port."""
        body: JSON = {"url": self.gateway_url}
        if call.path == "/gateway/bot":
            limit = {
                "total": 1000,
                "remaining": 1000,
                "reset_after": 86_400_000,
                "max_concurrency": 1,
            }
            body.update(shards=1, session_start_limit=limit)
        return 200, body


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        raise _malformed("invalid JSON") from None


def _malformed(why: str) -> ApiError:
    """Discord's answer (code 50109) to a body it cannot read."""
    return ApiError(400, 50109, "The request body contains invalid JSON.", violation=why)


def _too_large(why: str) -> ApiError:
    """Discord's answer to a file or request over its size limits."""
    return ApiError(413, 40005, "Request entity too large", violation=why)
