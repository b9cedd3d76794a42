"""/briefing ...: moderators schedule, inspect and change the server's briefings, and
choose a channel for pledge alerts (each status change as it happens)."""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import replace
from typing import Any

import discord
from discord import app_commands

from bot.briefings.admin import BriefingAdmin, Request
from bot.briefings.rules import timezone_choices
from bot.client.delivery import embeds_and_files
from bot.errors import UserError
from bot.follows.follows import AlertChannel, Follows
from bot.pledges import cards
from bot.pledges.cards import Card, Field
from bot.pledges.services import Services
from commands.pledge import statement_choices
from commands.ui import answer, autocomplete, in_time, reply, require_server_install

Channel = discord.TextChannel | discord.Thread
OPTION_HELP = {
    "channel": "Where to post",
    "time": "Local time, HH:MM (24-hour)",
    "days": "daily, weekdays, weekends, mon-fri, sat,sun, mon,wed,fri ... (default daily)",
    "timezone": "IANA time zone, e.g. Europe/London (default: the server's)",
    "content": "digest, spotlight, changes, or a pledge or power",
    "role": "A role to ping with each briefing (optional)",
    "cron": "Advanced: minute hour day month weekday, e.g. 0 9 * * 1-5",
    "date": "A one-off date, YYYY-MM-DD (with time)",
}
ALERT_HELP = {
    "channel": "Where to post each status change (leave empty to see the setting)",
    "role": "A role to ping with each alert (optional)",
    "statement": "Only changes to this statement's pledges (default: every statement)",
}
ALERTS = "Pledge alerts"


async def text_card(text: Awaitable[str]) -> list[Card]:
    return [Card(title="Briefings", description=await text)]


async def one_card(card: Awaitable[Card], warning: str = "") -> list[Card]:
    done = await card
    if warning:
        done = replace(done, fields=(*done.fields, Field("⚠️ Role ping", warning)))
    return [done]


def check_role_ping(interaction: discord.Interaction[Any], role: discord.Role | None) -> str:
    """Refuse a role the member couldn't ping; a warning when only the bot can't ping it.

    The bot may hold Mention @everyone: a delegated moderator must not borrow it to ping a
    role that they themselves may not ping.
    """
    if role is None or role.mentionable:
        return ""
    if not interaction.permissions.mention_everyone:
        raise UserError(
            f"You can't have me ping {role.mention}: the role isn't mentionable, and pinging "
            "it anyway needs Mention @everyone, @here and All Roles, which you don't have "
            "here. Make the role mentionable, or ask someone who has that permission."
        )
    if interaction.app_permissions.mention_everyone:
        return ""
    return (
        f"I can't ping {role.mention}: make the role mentionable or give me "
        "Mention @everyone, @here and All Roles."
    )


@app_commands.guild_only()
@app_commands.allowed_installs(guilds=True, users=False)
@app_commands.allowed_contexts(guilds=True, dms=False, private_channels=False)
@app_commands.default_permissions(manage_guild=True)
class BriefingCommands(app_commands.Group):
    def __init__(self, admin: BriefingAdmin, follows: Follows, services: Services) -> None:
        super().__init__(name="briefing", description="Scheduled briefings for this server")
        self.admin = admin
        self.follows = follows
        self.services = services

    async def is_moderator(self, interaction: discord.Interaction[Any]) -> bool:
        """Manage Server, or the server's moderator role (never @everyone, whatever is stored),
        in a server where the bot is installed."""
        if interaction.guild_id is None or not interaction.is_guild_integration():
            return False
        if interaction.permissions.manage_guild:
            return True
        role_id = (await self.admin.schedules.settings(interaction.guild_id)).moderator_role_id
        if not role_id or role_id == interaction.guild_id:  # @everyone's id is the server's
            return False
        return any(r.id == role_id for r in getattr(interaction.user, "roles", []))

    async def interaction_check(self, interaction: discord.Interaction[Any]) -> bool:
        """Checked on every use: Discord's own permission settings can be changed per server.

        The moderator role is read from the database, so the check defers like any slow work.
        """
        require_server_install(interaction)
        if await in_time(interaction, self.is_moderator(interaction), private=True):
            return True
        raise app_commands.MissingPermissions(["manage_guild"])

    def guild(self, interaction: discord.Interaction[Any]) -> int:
        assert interaction.guild_id is not None  # guild_only
        return interaction.guild_id

    @app_commands.command(name="schedule", description="Post a briefing on a schedule")
    @app_commands.describe(**OPTION_HELP)
    async def schedule(
        self,
        interaction: discord.Interaction[Any],
        channel: Channel,
        time: str | None = None,
        days: str | None = None,
        timezone: str | None = None,
        content: str | None = None,
        role: discord.Role | None = None,
        cron: str | None = None,
        date: str | None = None,
    ) -> None:
        request = Request(
            channel_id=channel.id,
            role_id=role.id if role else None,
            time=time,
            days=days,
            cron=cron,
            date=date,
            timezone=timezone,
            content=content,
        )
        warning = check_role_ping(interaction, role)
        work = self.admin.schedule(self.guild(interaction), interaction.user.id, request)
        await answer(interaction, one_card(work, warning), private=True)

    @app_commands.command(name="edit", description="Change a briefing")
    @app_commands.describe(
        id="The briefing's number", clear_role="Stop pinging a role", **OPTION_HELP
    )
    async def edit(
        self,
        interaction: discord.Interaction[Any],
        id: int,
        channel: Channel | None = None,
        time: str | None = None,
        days: str | None = None,
        timezone: str | None = None,
        content: str | None = None,
        role: discord.Role | None = None,
        clear_role: bool = False,
        cron: str | None = None,
        date: str | None = None,
    ) -> None:
        request = Request(
            channel_id=channel.id if channel else None,
            role_id=role.id if role else None,
            clear_role=clear_role,
            time=time,
            days=days,
            cron=cron,
            date=date,
            timezone=timezone,
            content=content,
        )
        warning = check_role_ping(interaction, role)
        work = self.admin.edit(self.guild(interaction), interaction.user.id, id, request)
        await answer(interaction, one_card(work, warning), private=True)

    @app_commands.command(name="list", description="This server's briefings")
    async def list_(self, interaction: discord.Interaction[Any]) -> None:
        await answer(interaction, self.admin.list_cards(self.guild(interaction)), private=True)

    @app_commands.command(
        name="show", description="A briefing's next runs, last delivery and history"
    )
    @app_commands.describe(id="The briefing's number")
    async def show(self, interaction: discord.Interaction[Any], id: int) -> None:
        guild = self.guild(interaction)

        async def work() -> list[Card]:
            schedule = await self.admin.schedules.require(guild, id)
            return [await self.admin.describe(schedule, title=f"Briefing #{id}", history=True)]

        await answer(interaction, work(), private=True)

    @app_commands.command(name="pause", description="Stop a briefing for now")
    @app_commands.describe(id="The briefing's number")
    async def pause(self, interaction: discord.Interaction[Any], id: int) -> None:
        work = self.admin.pause(self.guild(interaction), interaction.user.id, id)
        await answer(interaction, one_card(work), private=True)

    @app_commands.command(name="resume", description="Start a paused briefing again")
    @app_commands.describe(id="The briefing's number")
    async def resume(self, interaction: discord.Interaction[Any], id: int) -> None:
        work = self.admin.resume(self.guild(interaction), interaction.user.id, id)
        await answer(interaction, one_card(work), private=True)

    @app_commands.command(name="cancel", description="Delete a briefing for good")
    @app_commands.describe(id="The briefing's number")
    async def cancel(self, interaction: discord.Interaction[Any], id: int) -> None:
        work = self.admin.cancel(self.guild(interaction), interaction.user.id, id)
        await answer(interaction, one_card(work), private=True)

    @app_commands.command(
        name="preview", description="See privately what a briefing would post now"
    )
    @app_commands.describe(id="The briefing's number")
    async def preview(self, interaction: discord.Interaction[Any], id: int) -> None:
        work = self.admin.preview(self.guild(interaction), id)
        briefing = await in_time(interaction, work, private=True)
        embeds, files = embeds_and_files(briefing.cards)
        await reply(
            interaction,
            private=True,
            content=briefing.content or None,
            embeds=embeds,
            **({"files": files} if files else {}),
        )

    @app_commands.command(name="send-now", description="Post a briefing now (counts as a delivery)")
    @app_commands.describe(id="The briefing's number")
    async def send_now(self, interaction: discord.Interaction[Any], id: int) -> None:
        work = self.admin.send_now(self.guild(interaction), id)
        text = await in_time(interaction, work, private=True)
        await reply(interaction, private=True, content=text)

    @app_commands.command(name="timezone", description="This server's default time zone")
    @app_commands.describe(tz="IANA time zone, e.g. Europe/London")
    async def timezone(self, interaction: discord.Interaction[Any], tz: str) -> None:
        work = self.admin.set_timezone(self.guild(interaction), tz)
        await answer(interaction, text_card(work), private=True)

    @app_commands.command(name="moderator-role", description="A role that may manage briefings")
    @app_commands.describe(role="The role (leave empty to clear)")
    async def moderator_role(
        self, interaction: discord.Interaction[Any], role: discord.Role | None = None
    ) -> None:
        work = self.admin.set_moderator_role(
            self.guild(interaction),
            role.id if role else None,
            by_manager=interaction.permissions.manage_guild,
            managed=role is not None and role.managed,
        )
        await answer(interaction, text_card(work), private=True)

    @app_commands.command(
        name="alerts",
        description="Post each pledge status change in a channel (or see the setting)",
    )
    @app_commands.describe(**ALERT_HELP)
    async def alerts(
        self,
        interaction: discord.Interaction[Any],
        channel: Channel | None = None,
        role: discord.Role | None = None,
        statement: str | None = None,
    ) -> None:
        guild = self.guild(interaction)
        if channel is None:
            if role is not None or statement is not None:
                raise UserError(
                    "Choose a channel for the alerts. /briefing alerts without options shows "
                    "the current setting."
                )
            await answer(interaction, self.alert_setting(guild), private=True)
            return
        warning = check_role_ping(interaction, role)
        work = self.set_alerts(
            guild, interaction.user.id, channel.id, role.id if role else None, statement
        )
        await answer(interaction, one_card(work, warning), private=True)

    @app_commands.command(name="alerts-off", description="Stop posting pledge status changes")
    async def alerts_off(self, interaction: discord.Interaction[Any]) -> None:
        guild = self.guild(interaction)

        async def work() -> list[Card]:
            setting = await self.follows.alert_channel(guild)
            if setting is None or not await self.follows.remove_alert_channel(guild):
                raise UserError("Pledge alerts were not on in this server: nothing to stop.")
            where = f"<#{setting.channel_id}>"
            text = f"Pledge alerts stopped: nothing more will be posted in {where}."
            return [Card(title=ALERTS, description=text)]

        await answer(interaction, work(), private=True)

    async def set_alerts(
        self,
        guild_id: int,
        user_id: int,
        channel_id: int,
        role_id: int | None,
        statement: str | None,
    ) -> Card:
        """Checked as a briefing's channel is; the setting is this server's only."""
        slug = None
        if statement is not None:
            await self.services.fresh()
            slug = self.services.statement_names.resolve(statement)
        problem = await self.admin.engine.sender.channel_problem(guild_id, channel_id)
        if problem:
            raise UserError(f"I can't post pledge alerts there: {problem}.")
        await self.follows.set_alert_channel(
            guild_id, channel_id, role_id=role_id, statement_slug=slug, by=user_id
        )
        setting = await self.follows.alert_channel(guild_id)
        if setting is None:  # turned off again in the same instant
            raise UserError("Pledge alerts were turned off meanwhile: run the command again.")
        return self.describe_alerts(setting, title="Pledge alerts on")

    async def alert_setting(self, guild_id: int) -> list[Card]:
        setting = await self.follows.alert_channel(guild_id)
        if setting is None:
            return [
                Card(
                    title=ALERTS,
                    description=(
                        "Pledge alerts are off in this server. Post each status change as it "
                        "happens with /briefing alerts channel:#channel."
                    ),
                )
            ]
        await self.services.fresh()
        return [self.describe_alerts(setting, title=ALERTS)]

    def describe_alerts(self, setting: AlertChannel, *, title: str) -> Card:
        statement = "every statement"
        if setting.statement_slug is not None:
            name = self.services.statement_names.title_of(setting.statement_slug)
            statement = name or f"{setting.statement_slug} (no longer carried)"
        if setting.paused_reason is None:
            state = "on: each status change is posted as it happens"
        else:
            state = cards.shorten(
                f"⏸️ paused: {setting.paused_reason}. Fix it, then set the channel again with "
                "/briefing alerts.",
                1024,
            )
        return Card(
            title=title,
            fields=(
                Field("Channel", f"<#{setting.channel_id}>", inline=True),
                Field(
                    "Ping", f"<@&{setting.role_id}>" if setting.role_id else "nobody", inline=True
                ),
                Field("Statements", cards.shorten(statement, 1024), inline=True),
                Field("State", state),
                Field("Set by", f"<@{setting.set_by}> on {cards.discord_date(setting.set_at)}"),
            ),
            footer="Stop them with /briefing alerts-off.",
        )

    @schedule.autocomplete("timezone")
    @edit.autocomplete("timezone")
    @timezone.autocomplete("tz")
    async def timezone_autocomplete(
        self, interaction: discord.Interaction[Any], current: str
    ) -> list[app_commands.Choice[str]]:
        if not await self.is_moderator(interaction):
            return []
        return autocomplete(lambda text: [(z, z) for z in timezone_choices(text)], current)

    @schedule.autocomplete("content")
    @edit.autocomplete("content")
    async def content_autocomplete(
        self, interaction: discord.Interaction[Any], current: str
    ) -> list[app_commands.Choice[str]]:
        if not await self.is_moderator(interaction):
            return []

        def choices(text: str) -> list[tuple[str, str]]:
            kinds = [
                ("Digest: all pledges with their status", "digest"),
                ("Spotlight: one pledge or power per briefing", "spotlight"),
                ("Changes: status changes since the last briefing", "changes"),
            ]
            folded = text.casefold()
            found = [k for k in kinds if folded in k[0].casefold()]
            found += [
                (f"Pledge: {n}"[:100], f"pledge:{v}") for n, v in self.admin.pledges.choices(text)
            ]
            found += [
                (f"Power: {n}"[:100], f"power:{v}") for n, v in self.admin.powers.choices(text)
            ]
            return found[:25]

        return autocomplete(choices, current)

    @alerts.autocomplete("statement")
    async def statement_autocomplete(
        self, interaction: discord.Interaction[Any], current: str
    ) -> list[app_commands.Choice[str]]:
        if not await self.is_moderator(interaction):
            return []
        return await statement_choices(self.services, current)

    @show.autocomplete("id")
    @edit.autocomplete("id")
    @pause.autocomplete("id")
    @resume.autocomplete("id")
    @cancel.autocomplete("id")
    @preview.autocomplete("id")
    @send_now.autocomplete("id")
    async def id_autocomplete(
        self, interaction: discord.Interaction[Any], current: str
    ) -> list[app_commands.Choice[int]]:
        """Briefings that can still post: finished one-offs would crowd them out."""
        if interaction.guild_id is None or not await self.is_moderator(interaction):
            return []
        found = await self.admin.schedules.in_guild(interaction.guild_id)
        return [
            app_commands.Choice(
                name=f"#{s.id} · {self.admin.rule_text(s)} · {s.state}"[:100], value=s.id
            )
            for s in found
            if s.state in ("active", "paused") and str(s.id).startswith(str(current).strip())
        ][:25]
