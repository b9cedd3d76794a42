"""The gateway: a real websocket speaking Discord's v10 protocol to an unmodified discord.py.

Covers HELLO/heartbeats, IDENTIFY -> READY + GUILD_CREATE, sequence numbers, RESUME with replay
of missed dispatches, INVALID_SESSION, zlib-stream transport compression and the close codes
discord.py treats specially (4004 bad token, 4013/4014 bad or privileged intents).
"""

from __future__ import annotations

import asyncio
import json
import secrets
import zlib
from collections import deque
from typing import Any

from aiohttp import WSMsgType, web

from bot.local.models import INTENT_GUILD_MEMBERS, INTENT_GUILDS, JSON, GuildState, World

API_VERSION = "10"
REPLAY_BUFFER = 5000
ALL_INTENTS = (1 << 26) - 1
PRIVILEGED_INTENTS = (1 << 1) | (1 << 8) | (1 << 15)
# Application flags GATEWAY_*_LIMITED, set for each privileged intent the app is approved for.
PRIVILEGED_FLAGS = {1 << 1: 1 << 15, 1 << 8: 1 << 13, 1 << 15: 1 << 19}

OP_DISPATCH, OP_HEARTBEAT, OP_IDENTIFY, OP_PRESENCE, OP_VOICE_STATE = 0, 1, 2, 3, 4
OP_RESUME, OP_REQUEST_MEMBERS, OP_INVALID_SESSION, OP_HELLO, OP_HEARTBEAT_ACK = 6, 8, 9, 10, 11


class GatewaySession:
    """An identified session: its sequence counter and the dispatches it may need to replay."""

    def __init__(self, intents: int, shard: list[int] | None) -> None:
        self.id = secrets.token_hex(16)
        self.intents = intents
        self.shard = shard
        self.seq = 0
        self.resumable = True
        self.buffer: deque[JSON] = deque(maxlen=REPLAY_BUFFER)

    def frame(self, event: str, data: Any) -> JSON:
        self.seq += 1
        frame: JSON = {"op": OP_DISPATCH, "t": event, "s": self.seq, "d": data}
        self.buffer.append(frame)
        return frame


class _Connection:
    """One websocket; frames go through a single writer task so they keep their order."""

    def __init__(self, ws: web.WebSocketResponse, compress: bool) -> None:
        self.ws = ws
        self.compressor = zlib.compressobj() if compress else None
        self.session: GatewaySession | None = None
        self.outbox: asyncio.Queue[JSON | None] = asyncio.Queue()
        self.writer = asyncio.create_task(self._write())

    def send(self, frame: JSON) -> None:
        self.outbox.put_nowait(frame)

    async def _write(self) -> None:
        while (frame := await self.outbox.get()) is not None:
            raw = json.dumps(frame, separators=(",", ":"))
            try:
                if self.compressor is None:
                    await self.ws.send_str(raw)
                else:
                    data = self.compressor.compress(raw.encode())
                    await self.ws.send_bytes(data + self.compressor.flush(zlib.Z_SYNC_FLUSH))
            except ConnectionError:
                return

    async def close(self, code: int) -> None:
        await self.ws.close(code=code)
        await self.finish()

    async def finish(self) -> None:
        self.outbox.put_nowait(None)
        await self.writer


class Gateway:
    """Serves the bot's gateway connection and dispatches events to its session."""

    def __init__(
        self,
        world: World,
        *,
        heartbeat_interval_ms: int,
        privileged_intents: int,
    ) -> None:
        self.world = world
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.privileged_intents = privileged_intents
        self.resume_url = ""
        self.connected = asyncio.Event()
        self.identify_count = 0
        self.resume_count = 0
        self.identified_intents: int | None = None
        self.presence: JSON | None = None
        self._session: GatewaySession | None = None
        self._conn: _Connection | None = None
        self._connections: set[_Connection] = set()

    @property
    def application_flags(self) -> int:
        return sum(
            flag for intent, flag in PRIVILEGED_FLAGS.items() if self.privileged_intents & intent
        )

    def dispatch(self, event: str, data: Any, *, intent: int | None = INTENT_GUILDS) -> None:
        """Send an event now, or keep it for replay if the bot is between connections."""
        session = self._session
        if session is None or not session.resumable:
            return
        if intent is not None and not session.intents & intent:
            return
        frame = session.frame(event, data)
        if self._conn is not None and self._conn.session is session:
            self._conn.send(frame)

    async def drop(self, *, resumable: bool) -> None:
        """Close the bot's socket as a network blip (resumable) or a lost session (not)."""
        conn = self._conn
        if conn is None:
            raise RuntimeError("the bot is not connected to the gateway")
        if conn.session is not None:
            conn.session.resumable = resumable
        self._conn = None
        self.connected.clear()
        await conn.close(4000)

    async def close(self) -> None:
        """Going away (1001) for every socket, as Discord does when a gateway node restarts."""
        self.connected.clear()
        self._conn = None
        for conn in list(self._connections):
            await conn.close(1001)

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        query = request.query
        conn = _Connection(ws, compress=query.get("compress") == "zlib-stream")
        self._connections.add(conn)
        try:
            close_code = self._check_query(query)
            if close_code is not None:
                await conn.close(close_code)
                return ws
            conn.send({"op": OP_HELLO, "d": {"heartbeat_interval": self.heartbeat_interval_ms}})
            await self._serve(conn)
        finally:
            self._connections.discard(conn)
        return ws

    def _check_query(self, query: Any) -> int | None:
        problems = {
            4012: query.get("v") != API_VERSION,
            4002: query.get("encoding", "json") != "json",
            4000: query.get("compress") not in (None, "zlib-stream"),
        }
        for code, bad in problems.items():
            if bad:
                self.world.violation(f"gateway: unsupported connection parameters {dict(query)}")
                return code
        return None

    async def _serve(self, conn: _Connection) -> None:
        async for message in conn.ws:
            if message.type is WSMsgType.ERROR:
                break
            if message.type is not WSMsgType.TEXT:
                await self._reject(conn, 4002, "binary frames are not valid gateway payloads")
                return
            try:
                payload = json.loads(message.data)
                op, data = payload["op"], payload.get("d")
            except (ValueError, KeyError, TypeError):
                await self._reject(conn, 4002, f"undecodable payload {message.data[:100]!r}")
                return
            close_code = self._handle_op(conn, op, data)
            if close_code is not None:
                await self._reject(conn, close_code, f"op {op} refused")
                return
        if self._conn is conn:
            self._conn = None
            self.connected.clear()
            # A clean close (1000/1001) from the client ends the session, as on Discord.
            if conn.session is not None and conn.ws.close_code in (1000, 1001):
                conn.session.resumable = False
        await conn.finish()

    async def _reject(self, conn: _Connection, code: int, why: str) -> None:
        if code not in (4004, 4014):
            self.world.violation(f"gateway: closed with {code}: {why}")
        if self._conn is conn:
            self._conn = None
            self.connected.clear()
        await conn.close(code)

    def _handle_op(self, conn: _Connection, op: Any, data: Any) -> int | None:
        """Handle one client payload; return a close code to end the connection."""
        if op == OP_HEARTBEAT:
            conn.send({"op": OP_HEARTBEAT_ACK})
            return None
        if op == OP_IDENTIFY:
            return self._identify(conn, data)
        if op == OP_RESUME:
            return self._resume(conn, data)
        if conn.session is None:
            return 4003
        if op == OP_PRESENCE:
            self.presence = data
        elif op == OP_REQUEST_MEMBERS:
            self._send_member_chunk(conn, data)
        elif op == OP_VOICE_STATE:
            self.world.unhandled.append(f"gateway op {op}")
        else:
            return 4001
        return None

    def _identify(self, conn: _Connection, data: Any) -> int | None:
        if conn.session is not None:
            return 4005
        if not isinstance(data, dict) or data.get("token") != self.world.token:
            return 4004
        intents = data.get("intents")
        if not isinstance(intents, int) or intents & ~ALL_INTENTS:
            return 4013
        if intents & PRIVILEGED_INTENTS & ~self.privileged_intents:
            return 4014
        self.identify_count += 1
        self.identified_intents = intents
        session = GatewaySession(intents, data.get("shard"))
        if self._session is not None:
            self._session.resumable = False
        self._session = session
        conn.session = session
        self._conn = conn
        world = self.world
        ready: JSON = {
            "v": int(API_VERSION),
            "user": {
                **world.bot_user.payload(),
                "verified": True,
                "mfa_enabled": False,
                "flags": 0,
            },
            "guilds": [{"id": str(g), "unavailable": True} for g in world.guilds],
            "session_id": session.id,
            "resume_gateway_url": self.resume_url,
            "application": {"id": str(world.application_id), "flags": self.application_flags},
            "private_channels": [],
            "presences": [],
            "relationships": [],
            "guild_join_requests": [],
            "geo_ordered_rtc_regions": [],
            "user_settings": {},
            "_trace": ["pledgebot-local-gateway"],
        }
        if session.shard is not None:
            ready["shard"] = session.shard
        conn.send(session.frame("READY", ready))
        for guild in world.guilds.values():
            self.dispatch("GUILD_CREATE", self.guild_create(guild))
        self.connected.set()
        self.world.notify()
        return None

    def guild_create(self, guild: GuildState, *, joined: bool = False) -> JSON:
        """GUILD_CREATE for the current session; members beyond the bot need GUILD_MEMBERS.

        Discord marks guilds lazily loaded after READY `unavailable: false` and omits the key
        for a guild the bot just joined; discord.py dispatches guild_available vs guild_join
        from exactly that.
        """
        session = self._session
        members = session is not None and bool(session.intents & INTENT_GUILD_MEMBERS)
        payload = guild.create_payload(include_members=members, bot_id=self.world.bot_user.id)
        if joined:
            del payload["unavailable"]
        return payload

    def _resume(self, conn: _Connection, data: Any) -> int | None:
        if conn.session is not None:
            return 4005
        if not isinstance(data, dict) or data.get("token") != self.world.token:
            return 4004
        session = self._session
        seq = data.get("seq") or 0
        oldest = session.buffer[0]["s"] if session is not None and session.buffer else 1
        if (
            session is None
            or not session.resumable
            or data.get("session_id") != session.id
            or seq < oldest - 1
        ):
            conn.send({"op": OP_INVALID_SESSION, "d": False})
            return None
        self.resume_count += 1
        conn.session = session
        self._conn = conn
        for frame in session.buffer:
            if frame["s"] > seq:
                conn.send(frame)
        conn.send(session.frame("RESUMED", {"_trace": ["pledgebot-local-gateway"]}))
        self.connected.set()
        self.world.notify()
        return None

    def _send_member_chunk(self, conn: _Connection, data: Any) -> None:
        session = conn.session
        assert session is not None
        guild = self.world.guilds.get(int(data.get("guild_id", 0)))
        if guild is None:
            return
        chunk: JSON = {
            "guild_id": str(guild.id),
            "members": [m.payload() for m in guild.members.values()],
            "chunk_index": 0,
            "chunk_count": 1,
            "not_found": [],
        }
        if data.get("nonce"):
            chunk["nonce"] = data["nonce"]
        conn.send(session.frame("GUILD_MEMBERS_CHUNK", chunk))
