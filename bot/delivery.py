"""Posting briefings to Discord and classifying what went wrong.

Implements the engine's `Sender`. discord.py already retries 429s and 5xx a few times;
what still fails here is classified so the engine retries, pauses or gives up.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import aiohttp
import discord

from bot.briefings import Briefing
from bot.cards import Card
from bot.scheduler import DeliveryFailure, FailureKind

log = logging.getLogger(__name__)


def embed_for(card: Card) -> discord.Embed:
    embed = discord.Embed(
        title=card.title, description=card.description or None, colour=card.colour
    )
    if card.url:
        embed.url = card.url
    for field in card.fields:
        embed.add_field(name=field.name, value=field.value, inline=field.inline)
    if card.footer:
        embed.set_footer(text=card.footer)
    return embed


def mentions_for(role_id: int | None) -> discord.AllowedMentions:
    """Nothing pings except the one role a moderator chose."""
    if role_id is None:
        return discord.AllowedMentions.none()
    return discord.AllowedMentions(
        everyone=False, users=False, roles=[discord.Object(role_id)], replied_user=False
    )


PostableChannel = discord.TextChannel | discord.Thread


def channel_problem(client: discord.Client, guild_id: int, channel_id: int) -> str | None:
    """Why the bot cannot post briefings in this channel, or None if it can.

    While the client is (re)connecting its cache is incomplete; then nothing is judged
    here and the post itself decides.
    """
    if not client.is_ready():
        return None
    guild = client.get_guild(guild_id)
    if guild is None:
        return "pledgebot is no longer in this server"
    if guild.unavailable:
        # after a new session, READY lists servers before GUILD_CREATE fills them in
        return None
    channel = guild.get_channel_or_thread(channel_id)
    if channel is None:
        elsewhere = client.get_channel(channel_id)
        if elsewhere is not None:
            return "that channel belongs to another server"
        return "the channel no longer exists"
    if not isinstance(channel, PostableChannel):
        return f"#{channel.name} is not a text or announcement channel or a thread"
    perms = channel.permissions_for(guild.me)
    can_send = (
        perms.send_messages_in_threads
        if isinstance(channel, discord.Thread)
        else (perms.send_messages)
    )
    missing = [
        name
        for name, granted in (
            ("View Channel", perms.view_channel),
            ("Send Messages", can_send),
            ("Embed Links", perms.embed_links),
        )
        if not granted
    ]
    if missing:
        return f"pledgebot is missing {', '.join(missing)} in #{channel.name}"
    if isinstance(channel, discord.Thread) and channel.locked:
        return f"the thread #{channel.name} is locked"
    return None


class DiscordSender:
    def __init__(self, client: discord.Client) -> None:
        self.client = client

    def channel_problem(self, guild_id: int, channel_id: int) -> str | None:
        return channel_problem(self.client, guild_id, channel_id)

    async def post(
        self, channel_id: int, briefing: Briefing, *, nonce: str, role_id: int | None
    ) -> int:
        channel = self.client.get_channel(channel_id) or self.client.get_partial_messageable(
            channel_id
        )
        assert isinstance(channel, discord.abc.Messageable)
        message = await _send(
            channel,
            briefing.content,
            [embed_for(c) for c in briefing.cards],
            nonce=nonce,
            mentions=mentions_for(role_id),
        )
        return message.id

    async def notify(self, guild_id: int, text: str, *, avoid_channel_id: int | None) -> None:
        """Tell moderators: the system channel, else the first channel we can post in."""
        guild = self.client.get_guild(guild_id)
        if guild is None:
            return
        candidates: list[discord.TextChannel] = []
        if guild.system_channel is not None:
            candidates.append(guild.system_channel)
        candidates += sorted(guild.text_channels, key=lambda c: c.position)
        for channel in candidates:
            if (
                channel.id != avoid_channel_id
                and self.channel_problem(guild_id, channel.id) is None
            ):
                await _send(channel, text, [], nonce=None, mentions=discord.AllowedMentions.none())
                return
        log.warning("guild %s: no channel to tell moderators: %s", guild_id, text)


async def _send(
    channel: discord.abc.Messageable,
    content: str,
    embeds: Sequence[discord.Embed],
    *,
    nonce: str | None,
    mentions: discord.AllowedMentions,
) -> discord.Message:
    try:
        if nonce is None:
            return await channel.send(content=content, allowed_mentions=mentions)
        return await channel.send(
            content=content or None, embeds=list(embeds), nonce=nonce, allowed_mentions=mentions
        )
    except discord.Forbidden as exc:
        raise DeliveryFailure(
            f"Discord refused the post ({exc.text or 'missing permissions'})", kind="pause"
        ) from exc
    except discord.NotFound as exc:
        raise DeliveryFailure("the channel no longer exists", kind="pause") from exc
    except discord.HTTPException as exc:
        kind: FailureKind = "retry" if exc.status == 429 or exc.status >= 500 else "fail"
        raise DeliveryFailure(f"Discord answered {exc.status}: {exc.text}", kind=kind) from exc
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        raise DeliveryFailure(f"network error: {exc!r}", kind="retry") from exc
