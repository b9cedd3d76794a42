"""What moderators can do with briefings, without Discord: validate, change, describe.

Every change goes through the store (the one source of truth) and then re-plans the
engine's job for that schedule.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Protocol

from bot.briefings.compose import CONTENT_KINDS, Briefing
from bot.briefings.engine import BriefingEngine
from bot.briefings.planner import UNREADABLE, recurrence_of
from bot.briefings.recurrence import next_slots
from bot.briefings.rules import build_recurrence, parse_timezone
from bot.briefings.schedules import Schedule, Schedules
from bot.errors import UserError
from bot.models import utc_slot_instant
from bot.pledges import cards
from bot.pledges.cards import Card, Field
from bot.pledges.lookup import Catalog


class Catalogs(Protocol):
    """Where the current pledge and power catalogs live (they are rebuilt on reload)."""

    pledges: Catalog
    powers: Catalog


@dataclass(frozen=True)
class Request:
    """A moderator's schedule or edit request, options as typed (None = not given)."""

    channel_id: int | None = None
    time: str | None = None
    days: str | None = None
    cron: str | None = None
    date: str | None = None
    timezone: str | None = None
    content: str | None = None
    role_id: int | None = None
    clear_role: bool = False


RULE_FIELDS = frozenset({"time_of_day", "days", "cron", "run_date", "timezone"})


def stored_rule(schedule: Schedule) -> str:
    """The rule's columns as stored, for a row whose rule no longer parses."""
    parts = [
        f"{name} “{cards.escape_markdown(cards.shorten(value, 100))}”"
        for name, value in (
            ("cron", schedule.cron),
            ("time", schedule.time_of_day),
            ("days", schedule.days),
            ("date", schedule.run_date),
        )
        if value
    ]
    return ", ".join(parts) or "no rule"


def timestamp(instant: datetime, style: str = "F") -> str:
    return f"<t:{int(instant.timestamp())}:{style}>"


def slot_text(slot: str) -> str:
    """A slot as each reader's own local time (Discord renders the timestamp)."""
    try:
        return timestamp(utc_slot_instant(slot), "f")
    except ValueError:
        return "sent by hand" if slot.startswith("manual:") else slot


class BriefingAdmin:
    def __init__(
        self, engine: BriefingEngine, catalogs: Catalogs, *, limit: int, default_tz: str
    ) -> None:
        self.engine = engine
        self.schedules: Schedules = engine.schedules
        self.catalogs = catalogs
        self.limit = limit
        self.default_tz = default_tz

    @property
    def pledges(self) -> Catalog:
        return self.catalogs.pledges

    @property
    def powers(self) -> Catalog:
        return self.catalogs.powers

    # -- validation ---------------------------------------------------------------

    def content_of(self, text: str) -> str:
        """`digest`, `spotlight`, `changes`, or one named pledge or power."""
        value = text.strip()
        if value.casefold() in CONTENT_KINDS:
            return value.casefold()
        kind, _, slug = value.partition(":")
        if kind in ("pledge", "power") and slug:
            value = slug
        try:
            return f"pledge:{self.pledges.resolve(value)}"
        except UserError:
            pass
        try:
            return f"power:{self.powers.resolve(value)}"
        except UserError:
            raise UserError(
                f"“{cards.shorten(text, 60)}” is not a briefing content. Use digest, spotlight, "
                "changes, or the name of a pledge or power."
            ) from None

    async def check_channel(self, guild_id: int, channel_id: int) -> None:
        problem = await self.engine.sender.channel_problem(guild_id, channel_id)
        if problem:
            raise UserError(f"I can't post briefings there: {problem}.")

    async def rule_fields(
        self, guild_id: int, request: Request, base: Schedule | None
    ) -> dict[str, Any]:
        """The schedule columns a request sets, validated together with what it keeps."""
        fields: dict[str, Any] = {}
        if request.cron is not None:
            fields.update(time_of_day=request.time, days=request.days, cron=request.cron)
            fields["run_date"] = request.date
        elif any(v is not None for v in (request.time, request.days, request.date)):
            fields["cron"] = None
            fields["time_of_day"] = request.time or (base.time_of_day if base else None)
            fields["days"] = request.days if request.date is None else None
            fields["run_date"] = request.date if request.days is None else None
            if base is not None and request.days is None and request.date is None:
                fields["days"], fields["run_date"] = base.days, base.run_date
        if request.timezone is not None:
            fields["timezone"] = parse_timezone(request.timezone)
        elif base is None:
            settings = await self.schedules.settings(guild_id)
            fields["timezone"] = settings.timezone or self.default_tz
        if request.content is not None:
            fields["content"] = self.content_of(request.content)
        elif base is None:
            fields["content"] = "digest"
        if request.channel_id is not None:
            await self.check_channel(guild_id, request.channel_id)
            fields["channel_id"] = request.channel_id
        if request.role_id is not None or request.clear_role:
            fields["role_id"] = request.role_id
        rule = {**(vars(base) if base else {}), **fields}
        recurrence = build_recurrence(
            time=rule.get("time_of_day"),
            days=rule.get("days"),
            cron=rule.get("cron"),
            date=rule.get("run_date"),
        )
        if not next_slots(recurrence, rule["timezone"], self.engine.clock(), 1):
            if (
                rule.get("run_date")
                and recurrence.once
                and recurrence.once.year > self.engine.clock().year + 1
            ):
                raise UserError("That date is too far ahead: schedule within the next few years.")
            raise UserError("That date and time is already in the past.")
        return fields

    # -- actions ------------------------------------------------------------------

    async def schedule(self, guild_id: int, user_id: int, request: Request) -> Card:
        if request.channel_id is None:
            raise UserError("Choose a channel to post in.")
        if request.time is None and request.cron is None:
            raise UserError("Give a time (HH:MM) or a cron expression.")
        fields = await self.rule_fields(guild_id, request, None)
        schedule = await self.schedules.create(
            guild_id=guild_id, created_by=user_id, limit=self.limit, fields=fields
        )
        await self.engine.plan(schedule.id)
        return await self.describe(schedule, title=f"Briefing #{schedule.id} scheduled")

    async def edit(self, guild_id: int, user_id: int, schedule_id: int, request: Request) -> Card:
        schedule = await self.schedules.require(guild_id, schedule_id)
        fields = await self.rule_fields(guild_id, request, schedule)
        if not fields:
            raise UserError("Nothing to change: give at least one option to edit.")
        if RULE_FIELDS & fields.keys():
            # A new rule starts now: a slot that the edit put in the past is not "missed".
            fields["active_since"] = self.engine.clock().isoformat()
        if fields.get("content", schedule.content) != schedule.content:
            # The cursor was the old content's: spotlight's next record, or the last
            # status change posted. New content starts afresh; `changes` from this edit.
            changes = fields["content"] == "changes"
            fields["cursor"] = await self.engine.store.latest_status_change() if changes else 0
        updated = await self.schedules.update(
            guild_id, schedule_id, fields, by=user_id, action="edited"
        )
        await self.engine.plan(schedule_id)
        return await self.describe(updated, title=f"Briefing #{schedule_id} updated")

    async def pause(self, guild_id: int, user_id: int, schedule_id: int) -> Card:
        schedule = await self.schedules.require(guild_id, schedule_id)
        if schedule.state != "active":
            raise UserError(f"Briefing #{schedule_id} is {schedule.state}, not active.")
        updated = await self.schedules.update(
            guild_id,
            schedule_id,
            {"state": "paused", "pause_reason": "paused by a moderator"},
            by=user_id,
            action="paused",
        )
        self.engine.unplan(schedule_id)
        return await self.describe(updated, title=f"Briefing #{schedule_id} paused")

    async def resume(self, guild_id: int, user_id: int, schedule_id: int) -> Card:
        """Resume re-checks the channel first, and never replays what was missed while paused."""
        schedule = await self.schedules.require(guild_id, schedule_id)
        if schedule.state != "paused":
            raise UserError(f"Briefing #{schedule_id} is {schedule.state}, not paused.")
        await self.check_channel(guild_id, schedule.channel_id)
        updated = await self.schedules.update(
            guild_id,
            schedule_id,
            {
                "state": "active",
                "pause_reason": None,
                "last_error": None,
                "active_since": self.engine.clock().isoformat(),
            },
            by=user_id,
            action="resumed",
        )
        await self.engine.plan(schedule_id)
        return await self.describe(updated, title=f"Briefing #{schedule_id} resumed")

    async def cancel(self, guild_id: int, user_id: int, schedule_id: int) -> Card:
        await self.schedules.require(guild_id, schedule_id)
        await self.schedules.update(
            guild_id, schedule_id, {"state": "cancelled"}, by=user_id, action="cancelled"
        )
        self.engine.unplan(schedule_id)
        return Card(
            title=f"Briefing #{schedule_id} cancelled", description="It will not post again."
        )

    async def preview(self, guild_id: int, schedule_id: int) -> Briefing:
        schedule = await self.schedules.require(guild_id, schedule_id)
        briefing = await self.engine.compose(schedule, "preview")
        if briefing is None:
            return Briefing(
                "Nothing to post right now (no status changes since the last briefing).", ()
            )
        return briefing

    async def send_now(self, guild_id: int, schedule_id: int) -> str:
        schedule = await self.schedules.require(guild_id, schedule_id)
        await self.check_channel(guild_id, schedule.channel_id)
        outcome = await self.engine.send_now(schedule)
        messages = {
            "sent": f"Briefing #{schedule_id} posted in <#{schedule.channel_id}>.",
            "skipped": "Nothing to post: no status changes since the last briefing.",
            "already-claimed": f"Briefing #{schedule_id} was just posted; not posting it twice.",
        }
        if outcome in messages:
            return messages[outcome]
        refreshed = await self.schedules.by_id(schedule_id)
        error = refreshed.last_error if refreshed else None
        return (
            f"Briefing #{schedule_id} was not posted ({outcome}): {error or 'see /briefing show'}."
        )

    async def set_timezone(self, guild_id: int, text: str) -> str:
        settings = await self.schedules.settings(guild_id)
        zone = parse_timezone(text)
        await self.schedules.save_settings(replace(settings, timezone=zone))
        return f"New briefings in this server will use {zone}. Existing ones keep their own zone."

    async def set_moderator_role(
        self, guild_id: int, role_id: int | None, *, by_manager: bool, managed: bool = False
    ) -> str:
        """Only Manage Server may delegate: a role holder could otherwise pass moderation on,
        even to @everyone (whose id is the server's). `managed`: a bot or integration role."""
        if not by_manager:
            raise UserError("Only members with Manage Server can change the moderator role.")
        if role_id == guild_id:
            raise UserError(
                "@everyone can't be the moderator role: every member could manage briefings. "
                "Choose a role that only moderators have."
            )
        if managed:
            raise UserError(
                "That role belongs to a bot or an integration, which decides who has it. "
                "Choose a role that only moderators have."
            )
        settings = await self.schedules.settings(guild_id)
        await self.schedules.save_settings(replace(settings, moderator_role_id=role_id))
        if role_id is None:
            return "Only members with Manage Server can manage briefings now."
        return f"Members with <@&{role_id}> can now manage briefings, as well as Manage Server."

    # -- describing ---------------------------------------------------------------

    def rule_text(self, schedule: Schedule) -> str:
        """The rule in words; a row that no longer parses is shown as stored, so that one
        broken row never hides the others from moderators."""
        try:
            return f"{recurrence_of(schedule).describe()} ({schedule.timezone})"
        except UNREADABLE:
            return f"{stored_rule(schedule)} ({schedule.timezone}), which can't be read"

    def content_text(self, content: str) -> str:
        kind, _, slug = content.partition(":")
        if kind == "pledge":
            return f"pledge: {self.pledges.title_of(slug) or slug}"
        if kind == "power":
            return f"power: {self.powers.title_of(slug) or slug}"
        return {
            "digest": "digest of all pledges",
            "spotlight": "spotlight, one record in turn",
            "changes": "status changes since the last briefing",
        }.get(kind, content)

    async def describe(self, schedule: Schedule, *, title: str, history: bool = False) -> Card:
        state = schedule.state + (f" — {schedule.pause_reason}" if schedule.pause_reason else "")
        if schedule.state == "finished":  # a one-off: how its slot ended
            ended = await self.schedules.last_delivery(schedule.id, scheduled_only=True)
            if ended is not None:
                state += f" — {ended.state}" + (f": {ended.error}" if ended.error else "")
        fields = [
            Field("Channel", f"<#{schedule.channel_id}>", inline=True),
            Field("When", self.rule_text(schedule), inline=True),
            Field("Content", self.content_text(schedule.content), inline=True),
            Field("Ping", f"<@&{schedule.role_id}>" if schedule.role_id else "nobody", inline=True),
            Field("State", cards.shorten(state, 1024), inline=True),
        ]
        if schedule.state == "active":
            try:
                upcoming = await self.engine.upcoming(schedule, 3)
            except UNREADABLE:
                upcoming = []
            fields.append(
                Field(
                    "Next posts",
                    "\n".join(timestamp(t) + f" ({timestamp(t, 'R')})" for _, t in upcoming)
                    or "none",
                )
            )
        last = await self.schedules.last_delivery(schedule.id)
        if last is not None:
            result = (
                last.state
                + (" (late)" if last.late else "")
                + (f": {last.error}" if last.error else "")
            )
            fields.append(
                Field("Last delivery", cards.shorten(f"{slot_text(last.slot)} — {result}", 1024))
            )
        if schedule.last_error:
            fields.append(Field("Last error", cards.shorten(schedule.last_error, 1024)))
        if history:
            changes = await self.schedules.changes(schedule.id)
            lines = [
                f"{cards.discord_date(c.changed_at)} {c.action}"
                + (f" by <@{c.changed_by}>" if c.changed_by else " by pledgebot")
                for c in changes[-10:]
            ]
            fields.append(Field("Changes", cards.shorten("\n".join(lines), 1024)))
        return Card(title=title, fields=tuple(fields))

    async def list_cards(self, guild_id: int) -> list[Card]:
        """Active briefings first, then paused, then finished one-offs, over as many pages
        as it takes: old one-offs never hide the briefings that still post."""
        order = {"active": 0, "paused": 1}
        found = sorted(
            await self.schedules.in_guild(guild_id), key=lambda s: (order.get(s.state, 2), s.id)
        )
        if not found:
            return [
                Card(
                    title="Briefings",
                    description="No briefings yet. Create one with /briefing schedule.",
                )
            ]
        fields = []
        for schedule in found:
            state = "" if schedule.state == "active" else f" — {schedule.state}"
            fields.append(
                Field(
                    f"Briefing #{schedule.id}{state}",
                    cards.shorten(
                        f"<#{schedule.channel_id}> · {self.rule_text(schedule)} · "
                        f"{self.content_text(schedule.content)}"
                        + (f"\n⏸️ {schedule.pause_reason}" if schedule.pause_reason else ""),
                        1024,
                    ),
                )
            )
        return cards.paginate(
            Card(title="Briefings", fields=tuple(fields), footer="/briefing show id for details")
        )
