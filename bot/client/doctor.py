"""`pledgebot doctor`: whether this deployment can work, as one table of checks.

Each row is a check with a verdict (`ok`, `warn`, `fail`, or `skip` when what it needs
failed first) and, when it is not ok, what to do. The command exits 0 when nothing failed
(warnings alone included), 78 when Discord refused the token and 69 when Discord could
not be reached (as `run`, `sync` and `invite` do), else 1 when any check failed.

It only looks. The database is opened read-only as it is: never created, never migrated,
no lock file (`open_database_as_is`). Discord is only asked (GET, through discord.py's
HTTP client; no gateway session). The commands are the bot's own tree, built the way the
bot builds it but over a database never opened, and compared with what Discord has.
Permissions are discord.py's own resolution (`permissions_for`) over the server, the
channel and the bot's member as Discord returns them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Literal

import discord
import discord.http

from bot.briefings.schedules import Schedules
from bot.client.app import bot_intents, command_payloads
from bot.client.endpoints import apply_endpoints
from bot.client.invite import BOT_PERMISSIONS
from bot.client.runner import (
    BAD_TOKEN,
    EX_CONFIG,
    EX_UNAVAILABLE,
    UNREACHABLE,
    make_bot,
    network_reason,
)
from bot.config import Config
from bot.errors import StoreError, driver_errors
from bot.follows.follows import Follows
from bot.pledges.cards import counted
from bot.pledges.content import (
    ContentError,
    content_files,
    fingerprint,
    read_content,
    verify_quotes,
    verify_source,
)
from bot.pledges.lookup import Catalog
from bot.pledges.services import Services
from bot.storage import Row, Transaction
from bot.storage.schema import SCHEMA_VERSION
from bot.store import CONTENT_FINGERPRINT_KEY, Store

Verdict = Literal["ok", "warn", "fail", "skip"]
# How many names an "ok" row lists before it counts the rest.
NAMES_SHOWN = 5


@dataclass(frozen=True)
class Check:
    name: str
    verdict: Verdict
    detail: str
    exit_code: int = 1  # what the command exits with when this one fails


def table(checks: Sequence[Check]) -> str:
    """One aligned plain-text table: check, verdict, detail."""
    rows = [("check", "verdict", "detail"), *((c.name, c.verdict, c.detail) for c in checks)]
    name_width = max(len(name) for name, _, _ in rows)
    verdict_width = max(len(verdict) for _, verdict, _ in rows)
    return "\n".join(
        f"{name:<{name_width}}  {verdict:<{verdict_width}}  {detail}".rstrip()
        for name, verdict, detail in rows
    )


def exit_code(checks: Iterable[Check]) -> int:
    """0 unless something failed; a refused token (78) or Discord out of reach (69)
    outranks any other failure (1)."""
    return max((c.exit_code for c in checks if c.verdict == "fail"), default=0)


def run(config: Config, guild_id: int | None) -> int:
    checks = asyncio.run(examine(config, guild_id))
    print(table(checks))
    return exit_code(checks)


async def examine(config: Config, guild_id: int | None = None) -> list[Check]:
    """Every check, in the table's order: token, commands, database, content, channels,
    roles. `guild_id` is where the commands are expected, as `sync --guild` takes it."""
    expected, scope = commands_to_sync(config, guild_id)
    database, store = await database_check(config)
    try:
        if store is None:
            content = Check("content", "skip", "needs the database")
        else:
            content = await content_check(store, config.content_dir)
        fix = f"pledgebot sync --guild {guild_id}" if guild_id else "pledgebot sync"
        discord_side, places = await discord_checks(config, store, expected, scope, fix)
    finally:
        if store is not None:
            await store.close()
    return [*discord_side, database, content, *places]


# -- the commands, as `sync` would send them --------------------------------------------


class NoDatabase:
    """A `Database` never opened. Installing the commands only keeps the store to read
    later; describing them reads nothing, so nothing here is ever called."""

    dialect = "sqlite"

    def _unopened(self) -> StoreError:
        return StoreError("the command tree was built for `doctor`, without a database")

    async def rows(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        raise self._unopened()

    async def scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        raise self._unopened()

    async def rows_planned(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        raise self._unopened()

    async def rows_inline(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        raise self._unopened()

    async def schema_version(self) -> int:
        raise self._unopened()

    def transaction(self) -> AbstractAsyncContextManager[Transaction]:
        raise self._unopened()

    async def release_memory(self) -> None:
        pass

    async def close(self) -> None:
        pass


def commands_to_sync(
    config: Config, guild_id: int | None
) -> tuple[list[dict[str, Any]], int | None]:
    """What `pledgebot sync [--guild ID]` would register, and in which server (None:
    globally): the bot's own tree, wired as the bot wires it."""
    bot = make_bot(config, sync_mode="off", sync_guild_id=guild_id, run_engine=False)
    unopened = Store(NoDatabase())
    bot.wire(Services(config, unopened, Catalog("pledge", []), Catalog("power", []), {}))
    target = bot.sync_target()
    return command_payloads(bot.tree, target), None if target is None else target.id


# Fields a command may leave unset (None) for Discord to fill in its own default.
FILLED_BY_DISCORD = frozenset({"contexts", "integration_types"})
# Values Discord leaves out of what it echoes, or fills in, when a command sends the default.
DISCORD_DEFAULTS: dict[str, object] = {
    "dm_permission": True,
    "nsfw": False,
    "required": False,
    "autocomplete": False,
    "integration_types": [0],
}


def command_differences(expected: list[dict[str, Any]], found: list[dict[str, Any]]) -> list[str]:
    """How Discord's commands differ from the bot's, one phrase a command; [] when they
    match. Only what the bot sends is compared: fields Discord adds (ids, versions,
    localized names) are not differences, nor are defaults it echoes or leaves out."""
    have = {(c.get("type", 1), c["name"]): c for c in found}
    want = {(c.get("type", 1), c["name"]): c for c in expected}
    differences = [f"/{key[1]} missing" for key in want if key not in have]
    differences += [
        f"/{key[1]} changed"
        for key, sent in want.items()
        if key in have and _normal(sent) != _normal(_as_sent(have[key], sent))
    ]
    differences += [f"/{key[1]} not the bot's" for key in have if key not in want]
    return differences


def _as_sent(echoed: Any, sent: Any) -> Any:
    """`echoed` with only the fields `sent` has, at every level."""
    if isinstance(sent, dict) and isinstance(echoed, dict):
        return {
            k: _as_sent(echoed.get(k), v)
            for k, v in sent.items()
            if v is not None or k not in FILLED_BY_DISCORD
        }
    if isinstance(sent, list) and isinstance(echoed, list):
        return [_as_sent(e, s) for e, s in zip(echoed, sent, strict=False)] + echoed[len(sent) :]
    return echoed


def _normal(value: Any) -> Any:
    """A payload as Discord keeps it: empty and default fields left out, a permission
    bitfield as a string, `dm_permission` left to `contexts` when those are given."""
    if isinstance(value, list):
        return [_normal(v) for v in value]
    if not isinstance(value, dict):
        return value
    kept = {
        key: str(v) if key == "default_member_permissions" else _normal(v)
        for key, v in value.items()
        if v not in (None, [], {}, "") and DISCORD_DEFAULTS.get(key, ...) != v
    }
    if kept.get("contexts"):
        kept.pop("dm_permission", None)
    return kept


async def commands_check(
    client: discord.Client, expected: list[dict[str, Any]], scope: int | None, fix: str
) -> Check:
    application_id = client.application_id
    assert application_id is not None  # known once logged in
    if scope is None:
        where = "globally"
        found = await client.http.get_global_commands(application_id)
    else:
        where = f"in server {scope}"
        try:
            found = await client.http.get_guild_commands(application_id, scope)
        except (discord.NotFound, discord.Forbidden) as error:
            return Check(
                "commands",
                "fail",
                f"cannot read the commands of server {scope} ({error.text or error.status}): "
                "is pledgebot in it, invited with `applications.commands`? See `pledgebot invite`",
            )
    differences = command_differences(expected, [dict(c) for c in found])
    if differences:
        return Check(
            "commands",
            "fail",
            f"Discord's commands {where} are not the bot's ({', '.join(differences)}): run `{fix}`",
        )
    names = ", ".join(f"/{c['name']}" for c in expected)
    return Check("commands", "ok", f"Discord has the bot's commands {where}: {names}")


# -- the database and its content ---------------------------------------------------------


async def database_check(config: Config) -> tuple[Check, Store | None]:
    """The database opens and is at this pledgebot's schema version; the store, if so."""
    where = config.database_name
    if config.database_url is None and not _exists(config.database_path):
        detail = (
            f"there is no database file at {where}: run `pledgebot db init`, or set "
            "`[database] url` to where it is"
        )
        return Check("database", "fail", detail), None
    failures: tuple[type[Exception], ...] = (StoreError, *driver_errors())
    try:
        store = await Store.open_as_is(config.database)
    except failures as error:
        return Check("database", "fail", str(error)), None
    try:
        version = await store.schema_version()
    except driver_errors() as error:
        await store.close()
        return Check("database", "fail", f"cannot read {where}: {error}"), None
    if version == SCHEMA_VERSION:
        return Check("database", "ok", f"{where}, schema version {version} (current)"), store
    await store.close()
    if version > SCHEMA_VERSION:
        detail = (
            f"{where} is at schema version {version}, newer than this pledgebot understands "
            f"({SCHEMA_VERSION}): upgrade pledgebot"
        )
    else:
        detail = (
            f"{where} is at schema version {version}, this pledgebot needs {SCHEMA_VERSION}: "
            "run `pledgebot db init` (the bot also migrates it when it starts)"
        )
    return Check("database", "fail", detail), None


def _exists(path: Path) -> bool:
    """A stat, kept out of the async function (it never waits on anything but the disk)."""
    return path.is_file()


async def content_check(store: Store, directory: Path) -> Check:
    """The content files are what the store holds (the fingerprint `db load` records),
    and what the store holds verifies: quotes verbatim, sources at their SHA-256."""
    try:
        contents = read_content(directory)
    except ContentError as error:
        more = f" (and {len(error.problems) - 1} more)" if len(error.problems) > 1 else ""
        return Check("content", "fail", f"{error.problems[0]}{more}: fix the content files")
    loaded = await store.get_meta(CONTENT_FINGERPRINT_KEY)
    if loaded is None:
        return Check("content", "fail", "the database holds no content: run `pledgebot db load`")
    if loaded != fingerprint(content_files(directory), contents):
        return Check(
            "content",
            "fail",
            f"the files in {directory} are not what the database holds: run "
            "`pledgebot db load` (a bot also loads them when it starts)",
        )
    problems: list[str] = []
    for statement in await store.statements():
        stored = await store.statement_content(statement.slug)
        problems += verify_quotes(stored) if stored is not None else []
        problems += [p for p in [verify_source(statement)] if p]
    if problems:
        return Check(
            "content", "fail", f"{problems[0]} ({len(problems)} in all): see `pledgebot db check`"
        )
    return Check(
        "content",
        "ok",
        f"{directory}: {counted(len(contents), 'statement')} as loaded; quotes and source "
        "texts verified",
    )


# -- Discord ------------------------------------------------------------------------------

# What each post needs in its channel: discord.py's names. A thread takes Send Messages in
# Threads where a channel takes Send Messages (as `delivery.channel_problem` checks).
ALWAYS = ("view_channel", "embed_links")
# A digest attaches its status chart: Attach Files, or the post is refused.
FOR_CHART = "attach_files"
# Only for looking for a post after a crash (`find_post`): without it such a briefing is
# paused instead of posted, so its lack is a warning, not a failure.
FOR_RECOVERY = "read_message_history"
LABELS = {name: label for name, label, _ in BOT_PERMISSIONS}


@dataclass(frozen=True)
class Use:
    """Something that posts to a channel or relies on a role, and how to move it."""

    what: str  # "briefing #3", "alerts", "the moderator role"
    fix: str


@dataclass
class Place:
    """A channel the bot posts in, and everything that posts there."""

    guild_id: int
    channel_id: int
    uses: list[Use] = field(default_factory=list)
    chart: bool = False


@dataclass(frozen=True)
class RoleUse:
    guild_id: int
    role_id: int
    use: Use


async def posting_places(store: Store) -> tuple[list[Place], list[RoleUse]]:
    """Every active briefing's and alert channel's channel, and every role relied on: the
    servers' moderator roles and the roles briefings and alerts ping."""
    places: dict[int, Place] = {}
    roles: list[RoleUse] = []
    for schedule in await Schedules(store).active():
        briefing, edit = f"briefing #{schedule.id}", f"/briefing edit id:{schedule.id}"
        place = places.setdefault(
            schedule.channel_id, Place(schedule.guild_id, schedule.channel_id)
        )
        place.uses.append(Use(briefing, f"`{edit} channel:`"))
        place.chart |= schedule.content == "digest"
        if schedule.role_id is not None:
            ping = Use(f"{briefing}'s ping", f"`{edit} role:`")
            roles.append(RoleUse(schedule.guild_id, schedule.role_id, ping))
    for alerts in await Follows(store.db).active_alert_channels():
        place = places.setdefault(alerts.channel_id, Place(alerts.guild_id, alerts.channel_id))
        place.uses.append(Use("alerts", "`/briefing alerts channel:`"))
        if alerts.role_id is not None:
            ping = Use("the alerts' ping", "`/briefing alerts channel: role:`")
            roles.append(RoleUse(alerts.guild_id, alerts.role_id, ping))
    for settings in await Schedules(store).moderator_roles():
        assert settings.moderator_role_id is not None
        use = Use("the moderator role", "`/briefing moderator-role`")
        roles.append(RoleUse(settings.guild_id, settings.moderator_role_id, use))
    return list(places.values()), roles


async def discord_checks(
    config: Config, store: Store | None, expected: list[dict[str, Any]], scope: int | None, fix: str
) -> tuple[list[Check], list[Check]]:
    """(token and commands, then channels and roles): what Discord says."""

    def failed(token: Check, needs: str) -> tuple[list[Check], list[Check]]:
        later = [_skip(name, needs) for name in ("channels", "roles")]
        return [token, _skip("commands", needs)], later

    if not config.token:
        detail = "DISCORD_TOKEN is not set: set it to the bot's token (Developer Portal, Bot)"
        return failed(Check("token", "fail", detail), "the token")
    apply_endpoints(config.api_base_url, config.gateway_url)
    client = discord.Client(intents=bot_intents())
    async with client:
        try:
            await client.login(config.token)
        except discord.LoginFailure:
            return failed(Check("token", "fail", BAD_TOKEN, exit_code=EX_CONFIG), "the token")
        except UNREACHABLE as error:
            where = discord.http.Route.BASE
            detail = f"cannot reach Discord at {where} ({network_reason(error)})"
            return failed(Check("token", "fail", detail, exit_code=EX_UNAVAILABLE), "Discord")
        user, application = client.user, client.application
        assert user is not None and application is not None  # set by login
        token = Check(
            "token",
            "ok",
            f"accepted: bot {user.name} (id {user.id}), application {application.name} "
            f"(id {application.id})",
        )
        commands = await asked("commands", partial(commands_check, client, expected, scope, fix))
        if store is None:
            return [token, *commands], [_skip(n, "the database") for n in ("channels", "roles")]
        places, roles = await posting_places(store)
        return [token, *commands], await places_checks(client, user.id, places, roles)


def _skip(name: str, needs: str) -> Check:
    return Check(name, "skip", f"needs {needs}")


async def asked(name: str, check: Callable[[], Awaitable[Check]]) -> list[Check]:
    """A check that asks Discord; an answer it did not expect (5xx, the network) fails it."""
    try:
        return [await check()]
    except (discord.HTTPException, *UNREACHABLE) as error:
        return [Check(name, "fail", f"could not ask Discord ({network_reason(error)}): try again")]


async def places_checks(
    client: discord.Client, bot_id: int, places: list[Place], roles: list[RoleUse]
) -> list[Check]:
    """Per server: pledgebot is in it; each channel's permissions; each role exists. One
    row for each problem, then one for the channels and one for the roles that are fine."""
    server_rows: list[Check] = []
    channel_rows: list[Check] = []
    role_rows: list[Check] = []
    fine_channels: list[str] = []
    fine_roles: list[str] = []
    guild_ids = sorted({p.guild_id for p in places} | {r.guild_id for r in roles})
    for guild_id in guild_ids:
        here = [p for p in places if p.guild_id == guild_id]
        its_roles = [r for r in roles if r.guild_id == guild_id]
        try:
            guild = await client.fetch_guild(guild_id, with_counts=False)
            me = await guild.fetch_member(bot_id)
        except (discord.NotFound, discord.Forbidden):
            uses = [u.what for p in here for u in p.uses] + [r.use.what for r in its_roles]
            server_rows.append(
                Check(
                    f"server {guild_id}",
                    "fail",
                    f"pledgebot is not in this server (or it is gone), used by "
                    f"{', '.join(uses)}: invite it again (`pledgebot invite`), or have "
                    "them cancelled",
                )
            )
            continue
        except (discord.HTTPException, *UNREACHABLE) as error:
            detail = f"could not ask Discord ({network_reason(error)}): try again"
            server_rows.append(Check(f"server {guild_id}", "fail", detail))
            continue
        for place in here:
            name = f"channel {place.channel_id}"
            for check in await asked(name, partial(channel_check, guild, me, place)):
                if check.verdict == "ok":
                    fine_channels.append(check.name)
                else:
                    channel_rows.append(check)
        for role_use in its_roles:
            role = guild.get_role(role_use.role_id)
            if role is None:
                role_rows.append(
                    Check(
                        f"role {role_use.role_id} ({guild.name})",
                        "fail",
                        f"{role_use.use.what} no longer exists: choose another with "
                        f"{role_use.use.fix}",
                    )
                )
            else:
                fine_roles.append(f"@{role.name} ({guild.name})")
    channel_rows += _fine(
        "channels",
        fine_channels,
        "pledgebot can post in",
        "no active briefings or alert channels",
        problems=bool(server_rows or channel_rows),
    )
    role_rows += _fine(
        "roles",
        fine_roles,
        "still there:",
        "no moderator role or pinged role is set",
        problems=bool(server_rows or role_rows),
    )
    return [*server_rows, *channel_rows, *role_rows]


def _fine(name: str, names: list[str], lead: str, none: str, *, problems: bool) -> list[Check]:
    """The one ok row for what is fine, or for nothing to check (none when all failed)."""
    if not names:
        return [] if problems else [Check(name, "ok", none)]
    unique = sorted(set(names))
    rest = len(unique) - NAMES_SHOWN
    shown = ", ".join(unique[:NAMES_SHOWN]) + (f" and {rest} more" if rest > 0 else "")
    return [Check(name, "ok", f"{lead} {shown}")]


async def channel_check(guild: discord.Guild, me: discord.Member, place: Place) -> Check:
    """The channel exists in this server, and pledgebot has there what its posts need."""
    name = f"channel {place.channel_id} ({guild.name})"
    used = ", ".join(u.what for u in place.uses)
    try:
        channel = await guild.fetch_channel(place.channel_id)
    except discord.NotFound:
        moves = "; ".join(f"{u.what}: {u.fix}" for u in place.uses)
        return Check(name, "fail", f"the channel no longer exists: move {moves}")
    except discord.Forbidden:
        return Check(
            name, "fail", f"pledgebot cannot see it ({used}): allow it View Channels there"
        )
    except discord.InvalidData:
        return Check(name, "fail", f"it is not a channel of this server ({used})")
    if isinstance(channel, discord.Thread):
        # discord.py resolves a thread's permissions through its parent in the server.
        parent = await guild.fetch_channel(channel.parent_id)
        assert not isinstance(parent, discord.Thread)  # threads hold no threads
        guild._add_channel(parent)
    elif not isinstance(channel, discord.TextChannel):
        return Check(name, "fail", f"#{channel.name} is not a text channel or a thread ({used})")
    name = f"#{channel.name} ({guild.name})"
    thread = isinstance(channel, discord.Thread)
    perms = channel.permissions_for(me)
    needed = [*ALWAYS, "send_messages_in_threads" if thread else "send_messages"]
    if place.chart:
        needed.append(FOR_CHART)
    missing = [LABELS[p] for p in sorted(needed, key=list(LABELS).index) if not getattr(perms, p)]
    if missing:
        return Check(
            name,
            "fail",
            f"pledgebot is missing {', '.join(missing)} there ({used}): allow it in the "
            "channel's permissions",
        )
    if isinstance(channel, discord.Thread) and channel.locked and not perms.manage_threads:
        return Check(name, "fail", f"the thread is locked ({used}): unlock it, or move them")
    if not getattr(perms, FOR_RECOVERY):
        return Check(
            name,
            "warn",
            f"pledgebot is missing {LABELS[FOR_RECOVERY]} there ({used}): after a crash it "
            "cannot look for a post it may have made, and pauses them instead",
        )
    return Check(name, "ok", used)
