"""How the engine reaches Discord, and how a post fails.

The engine knows Discord only through `Sender`: `bot.client.delivery` implements it over
discord.py, and the tests fake it. Whatever goes wrong comes back as a `DeliveryFailure`
whose kind tells the engine to retry, pause the schedule, or give up on the post. A
briefing's cards may carry pictures (a digest's chart): `post` sends them with the post.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal, Protocol

from bot.briefings.compose import Briefing

FailureKind = Literal["retry", "pause", "fail"]


class DeliveryFailure(Exception):
    """A post that did not go through.

    `retry`: may pass later (429, 5xx, timeouts). `pause`: the channel refuses us (403,
    404) so the schedule is paused, never deleted. `fail`: this post cannot be sent.
    """

    def __init__(self, reason: str, *, kind: FailureKind) -> None:
        super().__init__(reason)
        self.reason = reason
        self.kind = kind


class Sender(Protocol):
    """How the engine reaches Discord; `bot.client.delivery` implements it, tests fake it."""

    async def channel_problem(self, guild_id: int, channel_id: int) -> str | None: ...

    async def post(
        self, channel_id: int, briefing: Briefing, *, nonce: str, role_id: int | None, marker: str
    ) -> int: ...

    async def find_post(self, channel_id: int, marker: str, *, since: datetime) -> int | None: ...

    async def notify(self, guild_id: int, text: str, *, avoid_channel_id: int | None) -> None: ...
