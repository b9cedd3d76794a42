"""The REST half of the local Discord: routing, recording, fault injection and the handlers.

Responses mirror Discord byte for byte where discord.py looks: `Content-Type: application/json`
exactly, JSON error bodies with Discord's codes, 429s with `Via` and X-RateLimit-* headers, 204s
without a body. Unknown routes answer 404 and are listed in `unhandled` so gaps are visible.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from aiohttp import web

from bot.local.gateway import Gateway
from bot.local.limits import (
    FieldError,
    check_choices,
    check_commands,
    check_message,
    check_modal,
    form_error_body,
)
from bot.local.limits import is_empty_message as is_empty
from bot.local.models import (
    ATTACH_FILES,
    FLAG_EPHEMERAL,
    FLAG_LOADING,
    JSON,
    MANAGE_MESSAGES,
    MANAGE_THREADS,
    MENTION_EVERYONE,
    READ_MESSAGE_HISTORY,
    SEND_MESSAGES,
    SEND_MESSAGES_IN_THREADS,
    VIEW_CHANNEL,
    ChannelState,
    GuildState,
    InteractionRecord,
    StoredMessage,
    World,
    iso_now,
)

API_PREFIX = "/api/v10"
MAX_UPLOAD_BYTES = 10 * 1024 * 1024
FLAG_SUPPRESS_EMBEDS = 1 << 2
FLAG_SUPPRESS_NOTIFICATIONS = 1 << 12
FLAG_COMPONENTS_V2 = 1 << 15
SETTABLE_FLAGS = FLAG_SUPPRESS_EMBEDS | FLAG_SUPPRESS_NOTIFICATIONS | FLAG_COMPONENTS_V2
# Callback types Discord accepts per interaction type (2 command, 3 component, 4 autocomplete).
CALLBACKS_FOR = {2: {4, 5, 9}, 3: {4, 5, 6, 7, 9}, 4: {8}}
ERROR_MESSAGES = {
    10003: "Unknown Channel",
    10004: "Unknown Guild",
    10007: "Unknown Member",
    10008: "Unknown Message",
    10013: "Unknown User",
    10015: "Unknown Webhook",
    10062: "Unknown interaction",
    50001: "Missing Access",
    50005: "Cannot edit a message authored by another user",
    50013: "Missing Permissions",
    50083: "Thread is archived",
    160005: "Thread is locked",
}
MENTION = re.compile(r"<@([!&]?)(\d+)>")
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
    files: list[JSON]

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


Reply = tuple[int, Any]
Handler = Callable[[Call], Awaitable[Reply]]


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
        self.interaction_deadline = interaction_deadline
        self.nonce_window = nonce_window
        self.gateway_url = ""
        self.requests: list[RecordedRequest] = []
        self.rate_limited_count = 0
        self._window: deque[float] = deque()
        self._rules: list[FailRule] = []
        guild, user = r"/guilds/(?P<guild>\d+)", r"(?P<user>\d+)"
        channel, message = r"/channels/(?P<channel>\d+)", r"(?P<message>\d+)"
        commands = r"/applications/(?P<app>\d+)(?:/guilds/(?P<guild>\d+))?/commands"
        hook = r"/webhooks/(?P<app>\d+)/(?P<token>[^/]+)"
        hook_message = rf"{hook}/messages/(?P<message>@original|\d+)"
        routes: list[tuple[str, str, bool, Handler]] = [
            ("GET", r"/gateway", False, self._get_gateway),
            ("GET", r"/gateway/bot", True, self._get_gateway),
            ("GET", r"/users/@me", True, self._get_me),
            ("GET", rf"/users/{user}", True, self._get_user),
            ("GET", r"/(?:oauth2/)?applications/@me", True, self._get_application),
            ("GET", commands, True, self._get_commands),
            ("PUT", commands, True, self._put_commands),
            ("GET", guild, True, self._get_guild),
            ("GET", rf"{guild}/channels", True, self._get_guild_channels),
            ("GET", rf"{guild}/roles", True, self._get_guild_roles),
            ("GET", rf"{guild}/members/{user}", True, self._get_member),
            ("GET", channel, True, self._get_channel),
            ("POST", rf"{channel}/typing", True, self._typing),
            ("GET", rf"{channel}/messages", True, self._get_history),
            ("POST", rf"{channel}/messages", True, self._create_message),
            ("GET", rf"{channel}/messages/{message}", True, self._get_message),
            ("PATCH", rf"{channel}/messages/{message}", True, self._edit_message),
            ("DELETE", rf"{channel}/messages/{message}", True, self._delete_message),
            (
                "POST",
                r"/interactions/(?P<interaction>\d+)/(?P<token>[^/]+)/callback",
                False,
                self._callback,
            ),
            ("POST", hook, False, self._followup),
            ("GET", hook_message, False, self._get_webhook_message),
            ("PATCH", hook_message, False, self._edit_webhook_message),
            ("DELETE", hook_message, False, self._delete_webhook_message),
        ]
        self._routes = [(m, re.compile(p), auth, h) for m, p, auth, h in routes]

    def fail_next(self, rule: FailRule) -> None:
        self._rules.append(rule)

    # -- plumbing -------------------------------------------------------------------------

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

    async def _read_body(self, request: web.Request) -> tuple[Any, list[JSON]]:
        if not request.body_exists:
            return None, []
        if request.content_type == "multipart/form-data":
            form = await request.post()
            files: list[JSON] = []
            for value in form.values():
                if isinstance(value, web.FileField):
                    size = len(value.file.read())
                    if size > MAX_UPLOAD_BYTES:
                        raise ApiError(
                            413,
                            40005,
                            "Request entity too large",
                            violation=f"{value.filename} is {size} bytes",
                        )
                    files.append(
                        {
                            "filename": value.filename,
                            "size": size,
                            "content_type": value.content_type,
                        }
                    )
            payload = form.get("payload_json")
            return (json.loads(payload) if isinstance(payload, str) else None), files
        text = await request.text()
        if request.content_type != "application/json":
            raise ApiError(
                400, 50109, violation=f"body sent as {request.content_type!r}, not application/json"
            )
        try:
            return json.loads(text), []
        except ValueError:
            raise ApiError(
                400, 50109, "The request body contains invalid JSON.", violation="invalid JSON"
            ) from None

    async def _process(
        self, request: web.Request, path: str, body: Any, files: list[JSON], *, is_api: bool
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

    # -- helpers --------------------------------------------------------------------------

    def _channel(self, call: Call, *, needs: int = 0) -> ChannelState:
        channel = self.world.channels.get(call.id("channel"))
        if channel is None or channel.deleted:
            raise ApiError(404, 10003)
        self._require(channel, needs)
        return channel

    def _require(self, channel: ChannelState, needs: int) -> None:
        """403 like Discord: 50001 without VIEW_CHANNEL, 50013 for any other missing bit."""
        perms = self.world.bot_permissions(channel)
        if not perms & VIEW_CHANNEL:
            raise ApiError(403, 50001)
        if perms & needs != needs:
            raise ApiError(403, 50013)

    def _channel_message(self, call: Call, channel: ChannelState) -> StoredMessage:
        stored = self.world.messages.get(call.id("message"))
        if stored is None or stored.channel is not channel or stored.ephemeral:
            raise ApiError(404, 10008)
        return stored

    @staticmethod
    def _validate(payload: JSON, files: list[JSON], *, creating: bool) -> None:
        errors = check_message(payload)
        if errors:
            raise ApiError.invalid_form(errors)
        if creating and is_empty(payload, len(files)):
            raise ApiError(400, 50006, "Cannot send an empty message", violation="empty message")

    def _mentions(self, channel: ChannelState, content: str, allowed: JSON | None) -> JSON:
        """Who a message really pings, from its content and `allowed_mentions` (as Discord does)."""
        parse = None if allowed is None else set(allowed.get("parse") or [])

        def permitted(kind: str, raw: str) -> bool:
            listed = {str(x) for x in (allowed or {}).get(kind) or []}
            return parse is None or kind in parse or raw in listed

        guild = channel.guild
        can_ping_all = bool(self.world.bot_permissions(channel) & MENTION_EVERYONE)
        users: list[JSON] = []
        roles: list[str] = []
        for prefix, raw in MENTION.findall(content):
            if prefix == "&":
                role = guild.role_by_id(int(raw))
                pingable = role is not None and (role.mentionable or can_ping_all)
                if pingable and permitted("roles", raw) and raw not in roles:
                    roles.append(raw)
            else:
                member = guild.members.get(int(raw))
                if (
                    member is not None
                    and permitted("users", raw)
                    and all(u["id"] != raw for u in users)
                ):
                    users.append(member.user.payload())
        everyone = (
            ("@everyone" in content or "@here" in content)
            and (parse is None or "everyone" in parse)
            and can_ping_all
        )
        return {"mentions": users, "mention_roles": roles, "mention_everyone": everyone}

    def _attachments(self, payload: JSON, files: list[JSON]) -> list[JSON]:
        described = {str(a.get("id")): a for a in payload.get("attachments") or []}
        result = []
        for index, upload in enumerate(files):
            attachment_id = self.world.snowflakes.next()
            url = f"https://cdn.discordapp.com/attachments/{attachment_id}/{upload['filename']}"
            result.append(
                {
                    "id": str(attachment_id),
                    "filename": upload["filename"],
                    "size": upload["size"],
                    "content_type": upload["content_type"],
                    "description": described.get(str(index), {}).get("description"),
                    "url": url,
                    "proxy_url": url,
                }
            )
        return result

    def _new_message(
        self,
        channel: ChannelState,
        payload: JSON,
        files: list[JSON],
        *,
        flags: int,
        interaction: InteractionRecord | None,
    ) -> StoredMessage:
        world = self.world
        content = payload.get("content") or ""
        allowed = payload.get("allowed_mentions")
        data: JSON = {
            "id": str(world.snowflakes.next()),
            "channel_id": str(channel.id),
            "author": world.bot_user.payload(),
            "content": content,
            "timestamp": iso_now(),
            "edited_timestamp": None,
            "tts": bool(payload.get("tts")),
            **self._mentions(channel, content, allowed),
            "attachments": self._attachments(payload, files),
            "embeds": [{"type": "rich", **e} for e in payload.get("embeds") or []],
            "reactions": [],
            "pinned": False,
            "type": 0,
            "flags": flags,
            "components": payload.get("components") or [],
        }
        if payload.get("nonce") is not None:
            data["nonce"] = payload["nonce"]
        reference = payload.get("message_reference")
        if reference:
            data["type"] = 19
            data["message_reference"] = {
                "channel_id": str(channel.id),
                "guild_id": str(channel.guild.id),
                **reference,
            }
        if interaction is not None:
            data["application_id"] = data["webhook_id"] = str(world.application_id)
            data["type"] = 20 if interaction.type == 2 else 0
            metadata: JSON = {
                "id": str(interaction.id),
                "type": interaction.type,
                "user": interaction.member.user.payload(),
                "authorizing_integration_owners": {"0": str(channel.guild.id)},
            }
            if interaction.component_message_id is not None:
                metadata["interacted_message_id"] = str(interaction.component_message_id)
            data["interaction_metadata"] = metadata
        stored = StoredMessage(data, channel, allowed, interaction.id if interaction else None)
        world.add_message(stored)
        return stored

    def _apply_edit(self, stored: StoredMessage, payload: JSON, files: list[JSON]) -> None:
        """A PATCH: only the given fields change; the result must still show something."""
        data = dict(stored.data)
        if "content" in payload:
            data["content"] = payload["content"] or ""
        if "embeds" in payload:
            data["embeds"] = [{"type": "rich", **e} for e in payload["embeds"] or []]
        if "components" in payload:
            data["components"] = payload["components"] or []
        if "flags" in payload:
            settable = FLAG_SUPPRESS_EMBEDS | FLAG_COMPONENTS_V2
            data["flags"] = (data["flags"] & ~FLAG_SUPPRESS_EMBEDS) | (
                int(payload["flags"] or 0) & settable
            )
        if "attachments" in payload:
            keep = {str(a.get("id")) for a in payload["attachments"] or []}
            data["attachments"] = [a for a in data["attachments"] if a["id"] in keep]
        data["attachments"] = data["attachments"] + self._attachments(payload, files)
        if is_empty(data, len(data["attachments"])):
            raise ApiError(
                400,
                50006,
                "Cannot send an empty message",
                violation="edit leaves the message empty",
            )
        if "allowed_mentions" in payload:
            stored.allowed_mentions = payload["allowed_mentions"]
        data.update(self._mentions(stored.channel, data["content"], stored.allowed_mentions))
        data["flags"] &= ~FLAG_LOADING
        data["edited_timestamp"] = iso_now()
        stored.data = data
        self.world.notify()

    # -- gateway, users, application, guilds ----------------------------------------------

    async def _get_gateway(self, call: Call) -> Reply:
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

    async def _get_me(self, call: Call) -> Reply:
        return 200, {
            **self.world.bot_user.payload(),
            "verified": True,
            "mfa_enabled": False,
            "flags": 0,
        }

    async def _get_user(self, call: Call) -> Reply:
        user = self.world.users.get(call.id("user"))
        if user is None:
            raise ApiError(404, 10013)
        return 200, user.payload()

    async def _get_application(self, call: Call) -> Reply:
        world = self.world
        return 200, {
            "id": str(world.application_id),
            "name": world.application_name,
            "icon": None,
            "description": "",
            "summary": "",
            "type": None,
            "rpc_origins": [],
            "bot_public": True,
            "bot_require_code_grant": False,
            "bot": world.bot_user.payload(),
            "owner": world.owner.payload(),
            "team": None,
            "verify_key": "0" * 64,
            "flags": self.gateway.application_flags,
            "tags": [],
            "redirect_uris": [],
            "interactions_endpoint_url": None,
            "approximate_guild_count": len(world.guilds),
        }

    def _command_scope(self, call: Call) -> int | None:
        if call.id("app") != self.world.application_id:
            raise ApiError(
                403, 50001, violation=f"application id {call.match['app']} is not this bot's"
            )
        guild_id = call.match["guild"]
        if guild_id is not None and int(guild_id) not in self.world.guilds:
            raise ApiError(404, 10004)
        return None if guild_id is None else int(guild_id)

    async def _get_commands(self, call: Call) -> Reply:
        return 200, self.world.commands_for(self._command_scope(call))

    async def _put_commands(self, call: Call) -> Reply:
        scope = self._command_scope(call)
        errors = check_commands(call.body)
        if errors:
            raise ApiError.invalid_form(errors)
        world = self.world
        existing = {(c["type"], c["name"]): c for c in world.commands_for(scope)}
        stored: list[JSON] = []
        for command in call.body:
            kind = int(command.get("type") or 1)
            previous = existing.get((kind, command["name"]))
            entry: JSON = {
                "id": previous["id"] if previous else str(world.snowflakes.next()),
                "application_id": str(world.application_id),
                "version": str(world.snowflakes.next()),
                "type": kind,
                "name": command["name"],
                "description": command.get("description", ""),
                "options": command.get("options") or [],
                "default_member_permissions": _optional_str(
                    command.get("default_member_permissions")
                ),
                "dm_permission": command.get("dm_permission", True),
                "contexts": command.get("contexts"),
                "integration_types": command.get("integration_types") or [0],
                "nsfw": command.get("nsfw", False),
                "name_localizations": command.get("name_localizations"),
                "description_localizations": command.get("description_localizations"),
            }
            if scope is not None:
                entry["guild_id"] = str(scope)
            stored.append(entry)
        if scope is None:
            world.global_commands = stored
        else:
            world.guild_commands[scope] = stored
        world.notify()
        return 200, stored

    def _guild(self, call: Call) -> GuildState:
        guild = self.world.guilds.get(call.id("guild"))
        if guild is None:
            raise ApiError(404, 10004)
        return guild

    async def _get_guild(self, call: Call) -> Reply:
        payload = self._guild(call).create_payload(
            include_members=False, bot_id=self.world.bot_user.id
        )
        gateway_only = (
            "channels",
            "threads",
            "members",
            "voice_states",
            "presences",
            "joined_at",
            "large",
        )
        return 200, {k: v for k, v in payload.items() if k not in gateway_only}

    async def _get_guild_channels(self, call: Call) -> Reply:
        return 200, [c.payload() for c in self._guild(call).channels.values()]

    async def _get_guild_roles(self, call: Call) -> Reply:
        return 200, [r.payload() for r in self._guild(call).roles.values()]

    async def _get_member(self, call: Call) -> Reply:
        member = self._guild(call).members.get(call.id("user"))
        if member is None:
            raise ApiError(404, 10007)
        return 200, member.payload()

    # -- channels and messages ------------------------------------------------------------

    async def _get_channel(self, call: Call) -> Reply:
        return 200, self._channel(call).payload()

    async def _typing(self, call: Call) -> Reply:
        self._channel(call, needs=SEND_MESSAGES)
        return 204, None

    async def _get_history(self, call: Call) -> Reply:
        """Newest first, like Discord, whichever of before/after/around picks the window.

        `after` gives the `limit` messages right after it; `around` about half before and
        half from it on (the message itself included). Only one of the three may be passed.
        """
        channel = self._channel(call, needs=READ_MESSAGE_HISTORY)
        limit = _query_int(call, "limit", 50)
        if not 1 <= limit <= 100:
            raise ApiError.invalid_form(
                [FieldError(("limit",), "NUMBER_TYPE_MAX", "Must be between 1 and 100.")]
            )
        anchors = [k for k in ("before", "after", "around") if k in call.query]
        if len(anchors) > 1:
            raise ApiError.invalid_form(
                [
                    FieldError(
                        (anchors[1],),
                        "BASE_TYPE_BAD_REQUEST",
                        f"only one of before, after and around may be passed (got {anchors})",
                    )
                ]
            )
        ids = channel.message_ids  # oldest first
        if "after" in call.query:
            after = _query_int(call, "after", 0)
            chosen = [i for i in ids if i > after][:limit]
        elif "around" in call.query:
            around = _query_int(call, "around", 0)
            older = [i for i in ids if i < around]
            older = older[len(older) - limit // 2 :] if limit // 2 else []
            chosen = older + [i for i in ids if i >= around][: limit - len(older)]
        else:
            before = _query_int(call, "before", 2**63)
            chosen = [i for i in ids if i < before][-limit:]
        return 200, [self.world.messages[i].data for i in reversed(chosen)]

    async def _create_message(self, call: Call) -> Reply:
        channel = self._channel(call)
        needs = SEND_MESSAGES_IN_THREADS if channel.is_thread else SEND_MESSAGES
        self._require(channel, needs | (ATTACH_FILES if call.files else 0))
        self._check_thread_open(channel, reopening=True)
        payload = call.json_object()
        self._validate(payload, call.files, creating=True)
        nonce = payload.get("nonce")
        enforced = nonce is not None and bool(payload.get("enforce_nonce"))
        now = time.monotonic()
        if enforced:
            # Discord remembers a nonce only for a few minutes; after that it posts again.
            message_id, posted_at = channel.nonces.get(str(nonce), (0, 0.0))
            earlier = self.world.messages.get(message_id)
            if earlier is not None and now - posted_at <= self.nonce_window:
                return 200, earlier.data
        if channel.archived:
            self._unarchive(channel)
        flags = int(payload.get("flags") or 0) & SETTABLE_FLAGS
        stored = self._new_message(channel, payload, call.files, flags=flags, interaction=None)
        if enforced:
            channel.nonces[str(nonce)] = (stored.id, now)
        return 200, stored.data

    def _check_thread_open(self, channel: ChannelState, *, reopening: bool) -> None:
        """Discord's thread rules: a locked thread takes messages only from MANAGE_THREADS; an
        archived one is re-opened by a new message (`reopening`) but refuses edits."""
        if not channel.is_thread:
            return
        moderator = bool(self.world.bot_permissions(channel) & MANAGE_THREADS)
        if channel.archived and (not reopening or (channel.locked and not moderator)):
            raise ApiError(403, 50083)
        if channel.locked and not moderator:
            raise ApiError(403, 160005)

    def _unarchive(self, thread: ChannelState) -> None:
        """A message in an archived thread re-opens it, announced with THREAD_UPDATE."""
        thread.archived = False
        thread.archive_timestamp = iso_now()
        self.gateway.dispatch("THREAD_UPDATE", thread.payload())

    async def _get_message(self, call: Call) -> Reply:
        channel = self._channel(call, needs=READ_MESSAGE_HISTORY)
        return 200, self._channel_message(call, channel).data

    async def _edit_message(self, call: Call) -> Reply:
        channel = self._channel(call)
        stored = self._channel_message(call, channel)
        if stored.author_id != self.world.bot_user.id:
            raise ApiError(403, 50005)
        self._check_thread_open(channel, reopening=False)
        payload = call.json_object()
        self._validate(payload, call.files, creating=False)
        self._apply_edit(stored, payload, call.files)
        return 200, stored.data

    async def _delete_message(self, call: Call) -> Reply:
        channel = self._channel(call)
        stored = self._channel_message(call, channel)
        if stored.author_id != self.world.bot_user.id:
            self._require(channel, MANAGE_MESSAGES)
        self.world.remove_message(stored)
        return 204, None

    # -- interactions ---------------------------------------------------------------------

    async def _callback(self, call: Call) -> Reply:
        world = self.world
        record = world.interactions.get(call.id("interaction"))
        if record is None or record.token != call.match["token"]:
            raise ApiError(404, 10062, violation="callback for an unknown interaction")
        now = time.perf_counter()
        if record.callback_type is not None:
            raise ApiError(
                400,
                40060,
                "Interaction has already been acknowledged.",
                violation=f"second callback for /{record.name} "
                f"(first was type {record.callback_type})",
            )
        elapsed = now - record.sent_at
        if elapsed > self.interaction_deadline:
            raise ApiError(
                404,
                10062,
                violation=f"/{record.name} acknowledged after {elapsed:.2f} s "
                f"(Discord allows {self.interaction_deadline:g} s)",
            )
        payload = call.json_object()
        kind = payload.get("type")
        data = payload.get("data") or {}
        if kind not in CALLBACKS_FOR[record.type]:
            error = FieldError(
                ("type",),
                "INTERACTION_CALLBACK_TYPE_INVALID",
                f"callback type {kind} is not valid for interaction type {record.type}",
            )
            raise ApiError.invalid_form([error])
        if kind in (4, 7):
            self._validate(data, call.files, creating=kind == 4)
        if kind == 8:
            errors = check_choices(data.get("choices"))
        elif kind == 9:
            errors = check_modal(data)
        else:
            errors = []
        if errors:
            raise ApiError.invalid_form(errors)
        component_message = world.messages.get(record.component_message_id or 0)
        if kind in (6, 7) and component_message is None:
            raise ApiError(404, 10008, violation="the component's message is gone")
        if kind == 4:
            flags = int(data.get("flags") or 0) & (SETTABLE_FLAGS | FLAG_EPHEMERAL)
            record.original_id = self._new_message(
                record.channel, data, call.files, flags=flags, interaction=record
            ).id
        elif kind == 5:
            flags = FLAG_LOADING | (int(data.get("flags") or 0) & FLAG_EPHEMERAL)
            record.original_id = self._new_message(
                record.channel, {}, [], flags=flags, interaction=record
            ).id
            record.loading = True
        elif kind in (6, 7) and component_message is not None:
            record.original_id = component_message.id
            if kind == 7:
                self._apply_edit(component_message, data, call.files)
        record.choices = data.get("choices") if kind == 8 else None
        record.modal = data if kind == 9 else None
        record.callback_type = kind
        record.callback_at = now
        record.settled = kind not in (5, 6)
        world.notify()
        if not call.flag("with_response"):
            return 204, None
        return 200, self._callback_body(record, kind)

    def _callback_body(self, record: InteractionRecord, kind: int) -> JSON:
        """The InteractionCallbackResponse discord.py 2.7 reads (it always asks with_response)."""
        message = self.world.messages.get(record.original_id or 0)
        summary: JSON = {
            "id": str(record.id),
            "type": record.type,
            "response_message_loading": record.loading,
            "response_message_ephemeral": message is not None and message.ephemeral,
        }
        body: JSON = {"interaction": summary}
        if message is not None and kind in (4, 5, 7):
            summary["response_message_id"] = str(message.id)
            body["resource"] = {"type": kind, "message": message.data}
        return body

    def _webhook_interaction(self, call: Call) -> InteractionRecord:
        record = self.world.interaction_tokens.get(call.match["token"])
        if record is None or call.id("app") != self.world.application_id:
            raise ApiError(
                404, 10015, violation="unknown interaction webhook (wrong token or application id)"
            )
        if record.callback_type is None or record.callback_type in (8, 9):
            raise ApiError(
                404,
                10015,
                violation=f"/{record.name}: followup before a message response "
                f"(callback {record.callback_type})",
            )
        return record

    def _webhook_message(self, call: Call, record: InteractionRecord) -> StoredMessage:
        ref = call.match["message"]
        message_id = record.original_id if ref == "@original" else int(ref)
        known = ref == "@original" or message_id in record.followup_ids
        stored = self.world.messages.get(message_id or 0)
        if not known or stored is None:
            raise ApiError(
                404, 10008, violation=f"/{record.name}: no message {ref} on this interaction"
            )
        return stored

    async def _followup(self, call: Call) -> Reply:
        record = self._webhook_interaction(call)
        payload = call.json_object()
        self._validate(payload, call.files, creating=True)
        original = self.world.messages.get(record.original_id or 0)
        if record.loading and original is not None:
            # The first followup after a "thinking" defer replaces the loading message and keeps
            # the defer's ephemerality, whatever flags it asks for.
            self._apply_edit(original, payload, call.files)
            record.loading = False
            stored = original
        else:
            flags = int(payload.get("flags") or 0) & (SETTABLE_FLAGS | FLAG_EPHEMERAL)
            stored = self._new_message(
                record.channel, payload, call.files, flags=flags, interaction=record
            )
        record.followup_ids.append(stored.id)
        record.settled = True
        self.world.notify()
        return (200, stored.data) if call.flag("wait") else (204, None)

    async def _get_webhook_message(self, call: Call) -> Reply:
        record = self._webhook_interaction(call)
        return 200, self._webhook_message(call, record).data

    async def _edit_webhook_message(self, call: Call) -> Reply:
        record = self._webhook_interaction(call)
        stored = self._webhook_message(call, record)
        payload = call.json_object()
        self._validate(payload, call.files, creating=False)
        self._apply_edit(stored, payload, call.files)
        if stored.id == record.original_id:
            record.loading = False
            record.settled = True
            self.world.notify()
        return 200, stored.data

    async def _delete_webhook_message(self, call: Call) -> Reply:
        record = self._webhook_interaction(call)
        self.world.remove_message(self._webhook_message(call, record))
        return 204, None


def _query_int(call: Call, name: str, default: int) -> int:
    raw = call.query.get(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ApiError.invalid_form(
            [FieldError((name,), "NUMBER_TYPE_COERCE", f'Value "{raw}" is not int.')]
        ) from None


def _optional_str(value: Any) -> str | None:
    """Discord echoes permission bitfields back as strings."""
    return None if value is None else str(value)
