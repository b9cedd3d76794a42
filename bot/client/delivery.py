"""Posting briefings to Discord and classifying what went wrong.

Implements the engine's `Sender`. discord.py already retries 429s and 5xx a few times;
what still fails here is classified so the engine retries, pauses or gives up. Every
request is bounded by `REQUEST_TIMEOUT`. Each post carries a marker (in the last embed's
footer, else on the content's last line) so `find_post` can tell later whether a send
whose answer was lost reached the channel after all.
"""

from __future__ import annotations

import asyncio
import io
import logging
import math
from collections.abc import Sequence
from datetime import datetime

import aiohttp
import discord

from bot.briefings.compose import Briefing
from bot.briefings.sender import DeliveryFailure, FailureKind
from bot.follows.compose import MemberAlert, show_id, stop_id
from bot.pledges import cards
from bot.pledges.cards import Card

log = logging.getLogger(__name__)

# Seconds one request to Discord may take, discord.py's own 429 waits and retries included.
REQUEST_TIMEOUT = 30.0
# Discord's limits (https://discord.com/developers/docs/resources/message#embed-object-embed-limits).
CONTENT_MAX = 2000
FOOTER_MAX = 2048
EMBED_TOTAL_MAX = 6000  # title, description, fields, footer and author of all embeds together
MARKER_SEPARATOR = " · "
# Discord's error code for a user who doesn't take direct messages from the bot.
DMS_CLOSED = 50007
# How many messages after `since` find_post reads at most (Discord pages by 100).
FIND_POST_LIMIT = 500


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


def embeds_and_files(found: Sequence[Card]) -> tuple[list[discord.Embed], list[discord.File]]:
    """The cards as embeds, each card's picture attached as a file (its alt text as the
    file's description) that its embed shows by `attachment://` name. `embed_for` alone
    never points at an attachment, so a caller that sends no files shows no broken image."""
    embeds: list[discord.Embed] = []
    files: list[discord.File] = []
    for index, card in enumerate(found):
        embed = embed_for(card)
        if card.picture is not None:
            taken = {file.filename for file in files}
            name = card.picture.filename
            filename = name if name not in taken else f"{index}-{name}"
            embed.set_image(url=f"attachment://{filename}")
            files.append(
                discord.File(
                    io.BytesIO(card.picture.data),
                    filename=filename,
                    description=card.picture.alt_text,
                )
            )
        embeds.append(embed)
    return embeds, files


def mentions_for(role_id: int | None) -> discord.AllowedMentions:
    """Nothing pings except the one role a moderator chose."""
    if role_id is None:
        return discord.AllowedMentions.none()
    return discord.AllowedMentions(
        everyone=False, users=False, roles=[discord.Object(role_id)], replied_user=False
    )


PostableChannel = discord.TextChannel | discord.Thread
NETWORK_ERRORS = (aiohttp.ClientError, TimeoutError, OSError)


async def channel_problem(client: discord.Client, guild_id: int, channel_id: int) -> str | None:
    """Why the bot cannot post briefings in this channel, or None if it can.

    While the client is (re)connecting its cache is incomplete; then nothing is judged
    here and the post itself decides. A channel missing from the cache may be an archived
    thread (discord.py forgets those): it is fetched, and one that is not locked is fine,
    since posting re-opens it. When Discord cannot be asked, the post decides too.
    """
    if not client.is_ready():
        return None
    guild = client.get_guild(guild_id)
    if guild is None:
        return "pledgebot is no longer in this server"
    if guild.unavailable or guild.me is None:
        # after a new session, READY lists servers before GUILD_CREATE fills them in
        return None
    channel: object = guild.get_channel_or_thread(channel_id)
    if channel is None:
        if client.get_channel(channel_id) is not None:
            return "that channel belongs to another server"
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT):
                channel = await client.fetch_channel(channel_id)
        except discord.NotFound:
            return "the channel no longer exists"
        except discord.Forbidden as exc:
            return f"pledgebot cannot see that channel ({exc.text or 'Missing Access'})"
        except discord.InvalidData:
            return "that channel is not a text or announcement channel or a thread"
        except (discord.HTTPException, *NETWORK_ERRORS):
            return None
        channel_guild = getattr(channel, "guild", None)
        if channel_guild is None or channel_guild.id != guild_id:
            return "that channel belongs to another server"
    if not isinstance(channel, PostableChannel):
        name = getattr(channel, "name", "that channel")
        return f"#{name} is not a text or announcement channel or a thread"
    try:
        perms = channel.permissions_for(guild.me)
    except discord.ClientException:
        return None  # a thread whose parent is not cached (yet): let the post decide
    is_thread = isinstance(channel, discord.Thread)
    can_send = perms.send_messages_in_threads if is_thread else perms.send_messages
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
    if isinstance(channel, discord.Thread) and channel.locked and not perms.manage_threads:
        return f"the thread #{channel.name} is locked"
    return None


def with_marker(content: str, embeds: list[discord.Embed], marker: str) -> str:
    """Put `marker` in the last embed's footer (after " · " if it has one), else on the
    content's last line; returns the content. To stay within Discord's limits the original
    footer or content is shortened, never the marker."""
    if not embeds:
        if not content:
            return marker
        room = CONTENT_MAX - len(marker) - 1
        return f"{_fit(content, room)}\n{marker}".lstrip("\n")
    last = embeds[-1]
    original = last.footer.text or ""
    others = sum(len(e) for e in embeds) - len(original)
    room = min(FOOTER_MAX, EMBED_TOTAL_MAX - others) - len(MARKER_SEPARATOR) - len(marker)
    kept = _fit(original, room)
    footer = f"{kept}{MARKER_SEPARATOR}{marker}" if kept else marker
    last.set_footer(text=footer, icon_url=last.footer.icon_url)
    return content


def _fit(text: str, room: int) -> str:
    return cards.shorten(text, room) if room > 1 else ""


def carries_marker(message: discord.Message, marker: str) -> bool:
    return marker in message.content or any(
        marker in (embed.footer.text or "") for embed in message.embeds
    )


class DiscordSender:
    def __init__(self, client: discord.Client) -> None:
        self.client = client

    async def channel_problem(self, guild_id: int, channel_id: int) -> str | None:
        return await channel_problem(self.client, guild_id, channel_id)

    def _messageable(self, channel_id: int) -> discord.abc.Messageable:
        """A bare channel to post to or read from, channel or thread (archived ones too).

        Not the cached channel: `Client.get_channel` looks through every server in turn,
        which with 10,000 servers took milliseconds of the event loop for each post.
        Posting and reading history need only the id.
        """
        return self.client.get_partial_messageable(channel_id)

    async def post(
        self,
        channel_id: int,
        briefing: Briefing,
        *,
        nonce: str,
        role_id: int | None,
        marker: str,
    ) -> int:
        embeds, files = embeds_and_files(briefing.cards)
        content = with_marker(briefing.content, embeds, marker)
        message = await _send(
            self._messageable(channel_id),
            content,
            embeds,
            nonce=nonce,
            mentions=mentions_for(role_id),
            files=files,
        )
        return message.id

    async def open_dm(self, user_id: int) -> int:
        """The member's DM channel id (one request; the caller keeps it)."""
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT):
                channel = await self.client.create_dm(discord.Object(user_id))
        except TimeoutError as exc:
            raise DeliveryFailure("Discord did not answer in time", kind="retry") from exc
        except (discord.HTTPException, *NETWORK_ERRORS) as exc:
            raise _dm_failure(exc, "opening a direct message") from exc
        return channel.id

    async def send_dm(self, channel_id: int, alert: MemberAlert, *, nonce: str, marker: str) -> int:
        embeds = [embed_for(c) for c in alert.message.cards]
        content = with_marker(alert.message.content, embeds, marker)
        channel = self.client.get_partial_messageable(channel_id, type=discord.ChannelType.private)
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT):
                message = await channel.send(
                    content=content or None,
                    embeds=embeds,
                    nonce=nonce,
                    view=alert_buttons(alert),
                    allowed_mentions=discord.AllowedMentions.none(),
                )
        except TimeoutError as exc:
            raise DeliveryFailure(
                f"Discord did not answer within {REQUEST_TIMEOUT:g} s", kind="retry"
            ) from exc
        except (discord.HTTPException, *NETWORK_ERRORS) as exc:
            raise _dm_failure(exc, "the direct message") from exc
        return message.id

    async def find_post(self, channel_id: int, marker: str, *, since: datetime) -> int | None:
        """The bot's own message carrying `marker`, posted after `since` (timezone-aware),
        among the first FIND_POST_LIMIT messages since then; None if there is none."""
        me = self.client.user
        if me is None:
            raise DeliveryFailure("not connected to Discord", kind="retry")
        channel = self._messageable(channel_id)
        pages = math.ceil(FIND_POST_LIMIT / 100)
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT * pages):
                async for message in channel.history(
                    after=since, limit=FIND_POST_LIMIT, oldest_first=True
                ):
                    if message.author.id == me.id and carries_marker(message, marker):
                        return message.id
        except TimeoutError as exc:
            raise DeliveryFailure(
                "Discord did not answer in time while reading the channel", kind="retry"
            ) from exc
        except (discord.HTTPException, *NETWORK_ERRORS) as exc:
            raise _failure(exc, "reading the channel") from exc
        return None

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
                and await self.channel_problem(guild_id, channel.id) is None
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
    files: Sequence[discord.File] = (),
) -> discord.Message:
    try:
        async with asyncio.timeout(REQUEST_TIMEOUT):
            if nonce is None:
                return await channel.send(content=content, allowed_mentions=mentions)
            if files:  # multipart; without files the request stays plain JSON
                return await channel.send(
                    content=content or None,
                    embeds=list(embeds),
                    files=list(files),
                    nonce=nonce,
                    allowed_mentions=mentions,
                )
            return await channel.send(
                content=content or None,
                embeds=list(embeds),
                nonce=nonce,
                allowed_mentions=mentions,
            )
    except TimeoutError as exc:
        raise DeliveryFailure(
            f"Discord did not answer within {REQUEST_TIMEOUT:g} s", kind="retry"
        ) from exc
    except (discord.HTTPException, *NETWORK_ERRORS) as exc:
        raise _failure(exc, "the post") from exc


def alert_buttons(alert: MemberAlert) -> discord.ui.View:
    """The DM's buttons. Their clicks go to the persistent handlers `commands.follow`
    registers (they match the custom ids), so the view itself is stopped: discord.py then
    does not keep it in memory for every DM sent."""
    view = discord.ui.View(timeout=None)
    for slug, label in alert.show:
        view.add_item(discord.ui.Button(label=label, custom_id=show_id(slug), row=0))
    for stop in alert.stop:
        view.add_item(
            discord.ui.Button(
                label=stop.label,
                custom_id=stop_id(stop.kind, stop.slug),
                style=discord.ButtonStyle.secondary,
                row=1,
            )
        )
    view.stop()
    return view


def _dm_failure(exc: Exception, action: str) -> DeliveryFailure:
    """Closed DMs (50007) pause the member's alerts; the rest as for channels."""
    if isinstance(exc, discord.Forbidden) and exc.code == DMS_CLOSED:
        return DeliveryFailure(
            "Discord refused the direct message: your direct messages are closed to "
            f"pledgebot, or you share no server with it (Discord error {DMS_CLOSED})",
            kind="pause",
        )
    return _failure(exc, action)


def _failure(exc: Exception, action: str) -> DeliveryFailure:
    """403/404 pause the schedule, 429/5xx and network trouble retry, other errors fail."""
    if isinstance(exc, discord.Forbidden):
        return DeliveryFailure(
            f"Discord refused {action} ({exc.text or 'missing permissions'})", kind="pause"
        )
    if isinstance(exc, discord.NotFound):
        return DeliveryFailure("the channel no longer exists", kind="pause")
    if isinstance(exc, discord.HTTPException):
        kind: FailureKind = "retry" if exc.status == 429 or exc.status >= 500 else "fail"
        return DeliveryFailure(f"Discord answered {exc.status}: {exc.text}", kind=kind)
    return DeliveryFailure(f"network error: {exc!r}", kind="retry")
