"""Fuzzing every slash command through the emulator with hostile option values.

One real bot per test (not per example). Hypothesis runs in a worker thread and hands each
interaction to the test's event loop, where the bot and the emulator keep running between
examples. Inputs are derived from the command schema the bot registered: every option of
every command gets generated values: any Unicode, empty and whitespace-only strings,
strings at and just past each option's max length, markdown, mentions (`@everyone`,
`<@&1>`), SQL and FTS5 syntax, numbers and dates out of range, ids of other servers'
briefings, channels and roles of another server, a deleted channel, a thread, channels the
bot may not post in, plus valid values, so that accepted paths are fuzzed too. Users vary
(moderator, member, operator, an administrator who is no operator); about one interaction
in eight is sent `unchecked`, as a modified client could. A third of the examples draw
plausible values only, so that accepted paths are fuzzed as much as refusals.

For every interaction: it is answered (the emulator saw no rule broken), no traceback or
raw exception text reaches the user, nothing fails with an unexpected internal error (the
"something went wrong" apology), error replies are private, and a refused input changes
nothing in the database (every table is compared before and after). Member commands and
/briefing list|show|preview never write at all. Autocomplete is fuzzed alongside.

The emulator raises CommandUsageError for what Discord's client would never send (too long,
not a choice, a foreign channel without `unchecked`, a command the member cannot see): such
inputs are counted as not sent, and most inputs must have been sent.

Size: PLEDGEBOT_FUZZ_EXAMPLES examples per command (default 12: about 300 interactions with
autocomplete, deterministic). The nightly run, 11,400 command examples across all 19
commands plus their autocompletes, with fresh random inputs each night:

    PLEDGEBOT_FUZZ_EXAMPLES=600 PLEDGEBOT_FUZZ_SEED=random \\
        .venv/bin/python -m pytest tests/test_robustness_fuzz.py -q

PLEDGEBOT_FUZZ_SEED=<integer> replays one seed.
"""

from __future__ import annotations

import asyncio
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st

from bot.client.app import PledgeBot
from bot.local import CommandUsageError
from bot.local.models import GUILD_ANNOUNCEMENT
from tests.e2e import World, embed_text, running_bot, with_config, world
from tests.test_robustness_support import APOLOGY, leaks, snapshot

pytestmark = pytest.mark.e2e

EXAMPLES = int(os.environ.get("PLEDGEBOT_FUZZ_EXAMPLES", "12"))
SEED = os.environ.get("PLEDGEBOT_FUZZ_SEED", "")

GROUPS = {
    "pledge": ["pledge list", "pledge show", "pledge search", "pledge history"],
    "power-about": ["power list", "power show", "claim list", "claim show", "about"],
    # schedule first and cancel last, so the commands in between find briefings to act on
    "briefing": [
        "briefing schedule",
        "briefing edit",
        "briefing show",
        "briefing pause",
        "briefing resume",
        "briefing preview",
        "briefing send-now",
        "briefing list",
        "briefing timezone",
        "briefing moderator-role",
        "briefing cancel",
    ],
    # /pledge suggest writes (a suggestion), unlike the rest of /pledge
    "operator": ["operator status", "operator suggestions", "pledge suggest"],
    "follow": [
        "follow add",
        "follow list",
        "follow remove",
        "follow resume",
        "follow clear",
        "briefing alerts",
        "briefing alerts-off",
    ],
}
READ_ONLY = {*GROUPS["pledge"], *GROUPS["power-about"]} | {
    "briefing list",
    "briefing show",
    "briefing preview",
    "follow list",
    "operator suggestions",
}
# same value again; clearing nothing; showing the alert setting (no channel given)
MAY_CHANGE_NOTHING = {"briefing timezone", "briefing moderator-role", "follow clear"} | {
    "briefing alerts"
}
ALWAYS_PRIVATE = {*GROUPS["briefing"], *GROUPS["operator"], *GROUPS["follow"]}
# /briefing send-now's answers that record a delivery (a double press finds it claimed)
SEND_NOW_DONE = re.compile(r"^(Briefing #\d+ (posted|was not posted \((failed|paused)\))|Nothing)")
STRING, INTEGER, BOOLEAN, CHANNEL, ROLE = 3, 4, 5, 7, 8
DISCORD_MAX_STRING = 6000
DISCORD_MAX_INTEGER = 2**53 - 1  # Discord's integer options: -(2^53 - 1) .. 2^53 - 1
INTEGER_EDGES = [0, -1, 1, DISCORD_MAX_INTEGER, -DISCORD_MAX_INTEGER, 2**31, 2**32 + 1]
EPHEMERAL = 1 << 6
ADMINISTRATOR, SEND_MESSAGES = 1 << 3, 1 << 11

HOSTILE = [
    "",
    " ",
    "\t\n ",
    "@everyone",
    "@here",
    "<@&1>",
    "<@1>",
    "<@!1>",
    "<#1>",
    "<t:0:R>",
    "'; DROP TABLE schedules; --",
    "' OR '1'='1",
    '" OR 1=1 --',
    "%",
    "_",
    "\\",
    "NULL",
    'NEAR("a" "b", 2)',
    "title:Europol",
    '"unterminated',
    "*",
    "AND",
    "OR NOT",
    "^start",
    "a:b:c",
    "(",
    ")",
    "**bold** __u__ ~~s~~ `code` ```py\nx = 1```",
    "> quote",
    "||spoiler||",
    "[link](https://example.org)",
    "# Heading",
    "\u202eevil",
    "\u200b",
    "\x00",
    "\ufeff",
    "🙂👍🏽",
    "ﷺ",
    "𒐫",
    "e\u0301",
    "../../../etc/passwd",
    "${jndi:ldap://x}",
    "{{7*7}}",
    "%s%n",
    "0",
    "-1",
    "1e309",
    "NaN",
    "9" * 30,
]
FILLERS = ["x", "é", "🙂", "<@&1> ", "**", "\u202e", "a b ", "'\"", "9", "@everyone "]


def tomorrow() -> str:
    return (datetime.now(UTC) + timedelta(days=1)).date().isoformat()


MEANINGFUL: dict[str, list[str]] = {
    "time": [
        *("09:00", "9:00", "00:00", "23:59", "24:00", "25:00", "12:60", "9am", "0900"),
        *("-1:00", "１２:００", "٠٩:٠٠", "09:00:00", "9", "21:30 "),
    ],
    "days": [
        *("daily", "weekdays", "weekends", "mon-fri", "sat,sun", "mon,wed,fri", "0,7"),
        *("1-5", "fri-mon", "mon-sun", "MONDAY", "mon,,fri", "8", "-1", "0-7", "sun-sat"),
    ],
    "timezone": [
        *("UTC", "Europe/London", "america/new york", "Mars/Olympus", "Etc/GMT+14"),
        *("Etc/GMT-14", "Pacific/Kiritimati", "Pacific/Pago_Pago", "Europe/", "GMT", "EST5EDT"),
    ],
    "content": [
        *("digest", "spotlight", "changes", "pledge:europol-partnership", "power:scpo"),
        *("DIGEST", "pledge:", "power:nope", "europol", "scpo", "pledge:power:x"),
    ],
    "cron": [
        *("0 9 * * 1-5", "* * * * *", "0 */2 * * *", "60 25 32 13 8", "0 9 * * MON"),
        *("@daily", "0 9 L * *", "0 9 * *", "0 9 * * * *", "0 0 29 2 *", "0 0 31 4 *"),
    ],
    "date": [
        *(tomorrow(), "2099-12-31", "2020-01-01", "2026-02-30", "0000-00-00", "9999-12-31"),
        *("0001-01-01", "2026-13-01", "tomorrow", "31/12/2026", "2026-1-1"),
    ],
    "note": ["Talks opened", "@everyone look <@&1> @here", "x"],
    "evidence": [
        *("https://example.org/e", "http://example.org", "javascript:alert(1)", "https://"),
        *("ftp://example.org", "https://" + "a" * 290),
    ],
    "query": ["vehicles", "Europol", "europol AND", "smuggl*", "a OR b", "-", "serious crime"],
    "statement": ["smuggling-gangs", "Labour statement", "smuggling", "nope"],
    "item": [
        *("pledge:europol-partnership", "power:scpo", "statement:smuggling-gangs", "europol"),
        *("pledge:", "statement:nope", "power:pledge:x", "Europol"),
    ],
}
MEANINGFUL["tz"] = MEANINGFUL["timezone"]


@dataclass
class Seen:
    """What one fuzz test did, for the assertions after Hypothesis has finished."""

    attempted: Counter[str] = field(default_factory=Counter)
    sent: Counter[str] = field(default_factory=Counter)
    refused: Counter[str] = field(default_factory=Counter)
    not_sent: Counter[str] = field(default_factory=Counter)
    reasons: Counter[str] = field(default_factory=Counter)  # why inputs were refused
    autocompleted: int = 0

    def summary(self) -> str:
        return (
            f"attempted {dict(self.attempted)}\nsent {dict(self.sent)}\n"
            f"refused {dict(self.refused)}\nautocompleted {self.autocompleted}\n"
            "reasons:\n" + "\n".join(f"  {n:4} {r}" for r, n in self.reasons.most_common())
        )


@dataclass
class Reply:
    texts: list[str]
    embeds: int
    private: bool


class Fuzzer:
    """Draws inputs (in Hypothesis's thread) and runs them on the bot's loop."""

    def __init__(self, w: World) -> None:
        """Build the servers' extra channels, roles and users (before the bot starts)."""
        self.w = w
        self.seen = Seen()
        emu, guild, other = w.emu, w.guild, w.other_guild
        self.operator = emu.add_user("operator", permissions=ADMINISTRATOR)
        self.admin = emu.add_user("admin", permissions=ADMINISTRATOR)
        self.helper = emu.add_user("helper")
        helpers = emu.add_role(guild, "Helpers")
        emu.add_member(guild, self.helper, roles=[helpers])
        news = emu.add_channel(guild, "news", GUILD_ANNOUNCEMENT)
        thread = emu.add_thread(w.briefings, "thread")
        muted = emu.add_channel(guild, "muted")
        emu.set_bot_channel_permissions(muted, deny=SEND_MESSAGES)
        gone = emu.add_channel(guild, "gone")
        emu.delete_channel(gone)
        self.channels = [w.general, w.briefings, news, thread, muted]
        self.foreign_channels = [other.channels["briefings"], gone]  # need `unchecked`
        self.roles = [
            guild.roles["@everyone"],
            emu.add_role(guild, "Mentionable", mentionable=True),
            emu.add_role(guild, "Quiet"),
            helpers,
        ]
        self.foreign_roles = [emu.add_role(other, "Elsewhere", mentionable=True)]
        self.foreign_ids: list[int] = []
        self.meaningful = dict(MEANINGFUL)
        self.config = with_config(
            w, schedule_limit_per_guild=500, operator_ids=frozenset({self.operator.id})
        )
        self.database = self.config.database_path

    async def attach(self, bot: PledgeBot) -> None:
        """Use this running bot: names from its catalogs, briefings in the other server."""
        self.bot = bot
        self.loop = asyncio.get_running_loop()
        assert bot.services is not None and bot.engine is not None
        bot.engine.pause_firings()  # no briefing fires mid-test and writes
        services = bot.services
        for kind, catalog in (
            ("pledge", services.pledges),
            ("power", services.powers),
            ("claim", services.claims),
        ):
            pairs = catalog.choices("")
            values = [v for _, v in pairs] + [n for n, _ in pairs]
            self.meaningful[kind] = [*values, kind[:4], values[0].upper(), f" {values[0]} "]
        other = self.w.other_guild
        for _ in range(2):
            foreign = await bot.engine.schedules.create(
                guild_id=other.id,
                created_by=self.w.moderator.id,
                limit=500,
                fields={
                    "channel_id": other.channels["briefings"].id,
                    "timezone": "UTC",
                    "time_of_day": "09:00",
                    "content": "digest",
                },
            )
            self.foreign_ids.append(foreign.id)
        for content in ("digest", "spotlight", "changes"):
            mine = await bot.engine.schedules.create(
                guild_id=self.w.guild.id,
                created_by=self.w.moderator.id,
                limit=500,
                fields={
                    "channel_id": self.w.briefings.id,
                    "timezone": "Europe/London",
                    "time_of_day": "07:30",
                    "content": content,
                },
            )
            if content == "spotlight":  # one paused briefing, to resume
                await bot.engine.schedules.update(
                    self.w.guild.id, mine.id, {"state": "paused"}, by=0, action="paused"
                )

    # -- running on the bot's loop ----------------------------------------------------

    def call(self, coroutine: Any, timeout: float = 60) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    async def _command(
        self, name: str, options: dict[str, Any], user: Any, unchecked: bool
    ) -> Reply | str:
        try:
            result = await self.w.emu.run_command(
                self.w.guild, name, options=options, user=user, unchecked=unchecked, timeout=10
            )
        except CommandUsageError as refused:
            return str(refused)
        messages = [m for m in (result.message, *result.followups) if m is not None]
        return Reply(
            texts=[embed_text(m) for m in messages],
            embeds=sum(len(m.get("embeds", [])) for m in messages),
            private=all(m["flags"] & EPHEMERAL for m in messages) and bool(messages),
        )

    async def _autocomplete(
        self, name: str, focused: str, typed: str, options: dict[str, Any], user: Any
    ) -> list[dict[str, Any]] | str:
        others = {k: v for k, v in options.items() if k != focused}
        try:
            return await self.w.emu.autocomplete(
                self.w.guild, name, focused=focused, value=typed, user=user, options=others
            )
        except CommandUsageError as refused:
            return str(refused)

    async def _guild_ids(self) -> list[int]:
        assert self.bot.engine is not None
        return [s.id for s in await self.bot.engine.schedules.in_guild(self.w.guild.id)]

    # -- drawing inputs -----------------------------------------------------------------

    def schema(self, name: str) -> dict[str, Any]:
        path = name.split()
        (command,) = [c for c in self.w.emu.commands() if c["name"] == path[0]]
        node = command
        for part in path[1:]:
            (node,) = [o for o in node["options"] if o["name"] == part]
        return node

    def text(self, name: str, limit: int) -> st.SearchStrategy[str]:
        pieces = st.one_of(
            st.text(max_size=30),
            st.sampled_from(HOSTILE),
            st.sampled_from(self.meaningful.get(name) or HOSTILE),
        )
        huge = st.builds(
            lambda n, unit: (unit * n)[:n],
            st.integers(max(limit - 2, 0), limit + 2),
            st.sampled_from(FILLERS),
        )
        return st.one_of(
            st.sampled_from(self.meaningful.get(name) or HOSTILE),
            pieces,
            st.lists(pieces, min_size=2, max_size=4).map("".join),
            st.lists(pieces, min_size=2, max_size=4).map(" ".join),
            huge,
        )

    def value(
        self, data: st.DataObject, option: dict[str, Any], unchecked: bool, plausible: bool
    ) -> Any:
        kind, name = option["type"], option["name"]
        if option.get("choices"):
            allowed = [c["value"] for c in option["choices"]]
            return data.draw(st.sampled_from([*allowed, "nope"]), name)
        if kind == STRING:
            if plausible and name in self.meaningful:
                return data.draw(st.sampled_from(self.meaningful[name]), name)
            limit = option.get("max_length", DISCORD_MAX_STRING)
            return data.draw(self.text(name, limit), name)
        if kind == INTEGER:
            # The same draws whatever the database holds, so Hypothesis can replay them.
            branch = data.draw(st.integers(0, 3), f"{name}: kind")
            index = data.draw(st.integers(0, 2**16), f"{name}: index")
            anything = data.draw(st.integers(-DISCORD_MAX_INTEGER, DISCORD_MAX_INTEGER), name)
            mine = self.call(self._guild_ids())
            if branch <= 1 and mine:
                return mine[index % len(mine)]  # this server's briefings
            if branch == 2:
                return [*self.foreign_ids, *INTEGER_EDGES][index % (2 + len(INTEGER_EDGES))]
            return anything
        if kind == BOOLEAN:
            return data.draw(st.booleans(), name)
        if kind == CHANNEL:
            pool = self.channels + (self.foreign_channels if unchecked else [])
            pool = self.channels[:2] if plausible else pool
            return data.draw(st.sampled_from(pool), name)
        if kind == ROLE:
            pool = self.roles + (self.foreign_roles if unchecked else [])
            return data.draw(st.sampled_from(pool), name)
        raise AssertionError(f"option type {kind} of {name!r} is not fuzzed yet")

    def user(self, data: st.DataObject, command: str, plausible: bool) -> Any:
        w = self.w
        if plausible:
            return {"briefing": w.moderator, "operator": self.operator}.get(
                command.split()[0], w.member
            )
        if command.startswith("briefing"):
            pool = [w.moderator] * 8 + [self.helper, w.member]
        elif command.startswith("operator"):
            pool = [self.operator] * 8 + [self.admin, w.member]
        else:
            pool = [w.member] * 4 + [w.moderator, self.operator]
        return data.draw(st.sampled_from(pool), "user")

    # -- one example ----------------------------------------------------------------------

    def example(self, data: st.DataObject, command: str) -> None:
        schema = self.schema(command)
        plausible = data.draw(st.integers(0, 2), "plausible?") == 0  # mostly valid values
        unchecked = not plausible and data.draw(st.integers(0, 4), "unchecked?") == 0
        options: dict[str, Any] = {}
        for option in schema.get("options") or []:
            # plausible: fewer options, and a schedule always gets its time
            give = data.draw(st.integers(0, 5), f"give {option['name']}?") < (2 if plausible else 3)
            needed = option.get("required") or (plausible and option["name"] == "time")
            if needed or give:
                options[option["name"]] = self.value(data, option, unchecked, plausible)
        if plausible and "cron" in options:  # one rule: cron alone, or a time
            if data.draw(st.booleans(), "cron alone?"):
                options = {k: v for k, v in options.items() if k not in ("time", "days", "date")}
            else:
                del options["cron"]
        if plausible and "days" in options and "date" in options:
            del options[data.draw(st.sampled_from(["days", "date"]), "drop")]
        user = self.user(data, command, plausible)
        given = [v for v in options.values() if isinstance(v, str)]
        self.seen.attempted[command] += 1
        before = snapshot(self.database)
        violations = len(self.w.emu.violations)
        reply = self.call(self._command(command, options, user, unchecked))
        after = snapshot(self.database)
        shown = f"/{command} {options!r} as {getattr(user, 'username', user)}"
        new_violations = self.w.emu.violations[violations:]
        assert new_violations == [], f"{shown}: Discord's rules broken: {new_violations}"
        if isinstance(reply, str):
            self.seen.not_sent[command] += 1
            self.seen.reasons["not sent: " + re.sub(r"'[^']*'|\d+", "…", reply)[:70]] += 1
            assert after == before, f"{shown}: not sent, yet the database changed"
        else:
            self.seen.sent[command] += 1
            self.check_reply(command, options, reply, before, after, shown, given)
        for option in schema.get("options") or []:
            if option.get("autocomplete") and data.draw(st.booleans(), "autocomplete?"):
                self.check_autocomplete(data, command, option, options, user)

    def check_reply(
        self,
        command: str,
        options: dict[str, Any],
        reply: Reply,
        before: Any,
        after: Any,
        shown: str,
        given: list[str],
    ) -> None:
        text = "\n".join(reply.texts)
        assert reply.texts, f"{shown}: answered with nothing visible"
        assert APOLOGY not in text, f"{shown}: an unexpected error instead of an answer:\n{text}"
        assert leaks(text, given) == [], f"{shown}: internals shown to the user:\n{text}"
        if command == "briefing send-now":
            refused = not SEND_NOW_DONE.search(reply.texts[-1])
        else:
            refused = reply.embeds == 0
        if refused:
            self.seen.refused[command] += 1
            self.seen.reasons[f"/{command}: " + reply.texts[-1].split("\n")[0][:60]] += 1
            assert reply.private, f"{shown}: an error answered in public:\n{text}"
        if refused or command in READ_ONLY:
            assert after == before, (
                f"{shown}: wrote to the database:\n{text}\n{diff(before, after)}"
            )
        if command in ALWAYS_PRIVATE:
            assert reply.private, f"{shown}: a moderator/operator answer in public:\n{text}"
        elif not refused:
            assert reply.private == bool(options.get("private")), f"{shown}: wrong visibility"
        if not refused and command not in READ_ONLY | MAY_CHANGE_NOTHING:
            assert after != before, f"{shown}: reported success but stored nothing:\n{text}"

    def check_autocomplete(
        self,
        data: st.DataObject,
        command: str,
        option: dict[str, Any],
        options: dict[str, Any],
        user: Any,
    ) -> None:
        typed = data.draw(self.text(option["name"], 200), f"typed into {option['name']}")
        before = snapshot(self.database)
        violations = len(self.w.emu.violations)
        choices = self.call(self._autocomplete(command, option["name"], typed, options, user))
        shown = f"/{command} autocomplete {option['name']}={typed!r}"
        assert self.w.emu.violations[violations:] == [], shown
        assert snapshot(self.database) == before, f"{shown}: wrote to the database"
        if isinstance(choices, str):
            return
        self.seen.autocompleted += 1
        assert len(choices) <= 25, shown
        for choice in choices:
            assert 1 <= len(choice["name"]) <= 100, f"{shown}: {choice!r}"
            assert leaks(choice["name"], [typed]) == [], f"{shown}: {choice!r}"

    # -- a whole command --------------------------------------------------------------------

    def fuzz(self, command: str) -> None:
        options: dict[str, Any] = {
            "max_examples": EXAMPLES,
            "deadline": None,
            "suppress_health_check": list(HealthCheck),
        }
        if not SEED:
            options["derandomize"] = True
        else:
            options["database"] = None

        @settings(**options)
        @given(data=st.data())
        def one(data: st.DataObject) -> None:
            self.example(data, command)

        if SEED and SEED != "random":
            one = seed(int(SEED))(one)
        one()


def diff(before: dict[str, list[tuple]], after: dict[str, list[tuple]]) -> str:
    changed = []
    for table in sorted(set(before) | set(after)):
        old, new = set(before.get(table, [])), set(after.get(table, []))
        if old != new:
            changed.append(f"{table}: -{sorted(old - new)!r}\n{table}: +{sorted(new - old)!r}")
    return "\n".join(changed)


def leaf_commands(commands: list[dict[str, Any]]) -> set[str]:
    found = set()

    def walk(node: dict[str, Any], path: list[str]) -> None:
        subs = [o for o in node.get("options") or [] if o["type"] in (1, 2)]
        if not subs:
            found.add(" ".join(path))
        for sub in subs:
            walk(sub, [*path, sub["name"]])

    for command in commands:
        walk(command, [command["name"]])
    return found


@pytest.mark.parametrize("group", list(GROUPS))
async def test_hostile_option_values_get_clean_answers(tmp_path: Path, group: str) -> None:
    async with world(tmp_path) as w:
        fuzzer = Fuzzer(w)
        async with running_bot(w, fuzzer.config) as bot:
            registered = leaf_commands(w.emu.commands())
            assert registered == {c for cs in GROUPS.values() for c in cs}, (
                f"fuzz every command: GROUPS must list exactly {sorted(registered)}"
            )
            await fuzzer.attach(bot)
            for command in GROUPS[group]:
                await asyncio.to_thread(fuzzer.fuzz, command)
        assert w.emu.unhandled == []
    seen = fuzzer.seen
    attempted, sent = sum(seen.attempted.values()), sum(seen.sent.values())
    summary = seen.summary()
    print(summary)
    assert set(seen.sent) == set(GROUPS[group]), f"a command was never sent\n{summary}"
    assert sent >= 0.6 * attempted, f"too few inputs reached the bot\n{summary}"
