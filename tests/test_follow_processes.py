"""Pledge alerts from real `pledgebot run` processes: exactly one DM per follower.

Each test runs the bot as real child processes (`BotProcess`) against an emulator in the
test's own event loop, on both backends (`[sqlite]`: one SQLite file; `[postgresql]`: one
database on the session's throwaway server). The followers, the server's alert channel
and the content are written before the bots start; the status change comes from a third
party (this test through `Store.set_status`, or the operator CLI), as an operator's would.

1. Two processes on one database, split into two shards or both owning everything (a
   rolling restart): every follower gets one DM and the alert channel one post, with one
   `sent` row each, and no 429 from the shared rate budget. Also the rolling restart as
   it happens: the new process starting while the old one is in the middle of a fan-out.
2. kill -9 in the middle of a fan-out, then a restart: still one DM per follower, with
   the batches the crash left claimed finished under their own nonce.
3. A change recorded while the bot is down goes out once it is back (and the change it
   had already sent before it stopped does not go out again).

Every DM costs two requests the first time (open the DM channel, send), so 200 followers
take about 9 s at the 50/s budget the emulator enforces.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from bot.follows.dispatch import POLL_SECONDS, PROCESS_GONE, marker_for, nonce_for
from bot.follows.follows import Follows
from bot.local import ChannelState, Emulator, GuildState, UserState
from bot.pledges.content import load_content
from bot.store import Store
from tests.conftest import DATA_DIR
from tests.test_robustness_support import (
    BOT_RUN,
    SHARED_PACING,
    BotProcess,
    no_collection_pauses,
    run_cli,
    wait_for,
    write_config,
)

pytestmark = pytest.mark.e2e

PLEDGE = "europol-partnership"
EVIDENCE = "https://example.org/evidence"
RATE_LIMIT = 50  # the emulator refuses (429) what goes beyond Discord's global limit
STARTED = "briefing engine planned"
# discord.py's DEBUG line for on_ready: the bot starts its alert dispatcher right after
# (bot.client.app: plan_all, wait_until_ready, catch_up, then AlertDispatcher.run).
READY = "Dispatching event ready"
# Generous: on a loaded machine two fresh processes load content and sync commands one
# after the other (SQLite's write lock) before either plans.
START_TIMEOUT = 150
# poll (2 s) + quiet wait (3 s) + the fan-out at the budget, with room for a loaded machine
DELIVERED_WITHIN = 120
# After everything is recorded sent: a poll round later, a duplicate would have gone out.
DUPLICATES_WITHIN = POLL_SECONDS + 1.5
# discord.py at DEBUG: one line per request answered (the process that sent it).
POSTED = re.compile(r"POST \S*/channels/(\d+)/messages with .* has returned 200")


@dataclass
class Scene:
    """One emulated server with an alert channel, its followers, and the store they are
    in (opened by this test: the third party that records changes and reads outcomes)."""

    tmp_path: Path
    location: Path | str
    emu: Emulator
    guild: GuildState
    alerts: ChannelState
    followers: list[UserState]
    store: Store
    config: Path
    bots: list[BotProcess] = field(default_factory=list)

    def bot(self, name: str, *options: str) -> BotProcess:
        made = BotProcess(
            self.tmp_path, self.config, self.emu.token, name, argv=(*BOT_RUN, *options)
        )
        self.bots.append(made)
        return made

    def dm_counts(self) -> list[int]:
        return [len(self.emu.dms(user)) for user in self.followers]

    def reached(self) -> int:
        return sum(1 for count in self.dm_counts() if count)

    def explain(self) -> str:
        counts = self.dm_counts()
        lines = [
            f"followers with a DM: {self.reached()}/{len(counts)}; most DMs to one: "
            f"{max(counts)}; alert channel posts: {len(self.emu.messages(self.alerts))}; "
            f"429s: {self.emu.rate_limited_count}"
        ]
        for bot in self.bots:
            code = bot.proc.returncode if bot.proc else None
            tail = [line[:300] for line in bot.output().splitlines()[-12:]]
            lines += [f"--- {bot.name} (exit code {code}), last lines:", *tail]
        return "\n".join(lines)

    async def rate(self, status: str, note: str) -> None:
        await self.store.set_status(
            PLEDGE, status, note=note, changed_by="operator:test", evidence_url=EVIDENCE
        )

    async def deliveries(self) -> list[dict[str, Any]]:
        found = await self.store.rows(
            "SELECT recipient, recipient_id, event_id, batch, state, message_id "
            "FROM alert_deliveries ORDER BY recipient, recipient_id, event_id"
        )
        return [dict(zip(row.keys(), tuple(row), strict=True)) for row in found]

    async def sent(self) -> int:
        return int(
            await self.store.scalar("SELECT count(*) FROM alert_deliveries WHERE state = 'sent'")
        )


def spread_followers(emu: Emulator, count: int) -> list[UserState]:
    """`count` users, each made in a millisecond of its own: a snowflake's shard is
    `(id >> 22) % shard_count`, its creation millisecond, so users made in one tight loop
    would all land in one shard."""
    users = []
    for number in range(count):
        users.append(emu.add_user(f"follower{number}"))
        made = time.time_ns() // 1_000_000
        while time.time_ns() // 1_000_000 == made:
            pass  # at most a millisecond
    return users


@contextlib.asynccontextmanager
async def scene(tmp_path: Path, location: Path | str, followers: int) -> AsyncIterator[Scene]:
    """The emulator, `followers` members following PLEDGE, one server alert channel; every
    bot started through `Scene.bot` is stopped (then the store closed) on the way out."""
    with no_collection_pauses():
        emu = Emulator(token="follow-processes", rate_limit_per_second=RATE_LIMIT)
        await emu.start()
        store: Store | None = None
        made: Scene | None = None
        try:
            guild = emu.add_guild("Followers", channels=("general", "alerts"))
            users = spread_followers(emu, followers)  # members of every guild
            store = await Store.open(location)
            await load_content(store, DATA_DIR)
            follows = Follows(store.db)
            for user in users:
                assert await follows.add(user.id, "pledge", PLEDGE) == "added"
            alerts = guild.channels["alerts"]
            await follows.set_alert_channel(
                guild.id, alerts.id, role_id=None, statement_slug=None, by=1
            )
            config = write_config(
                tmp_path / "bots.toml",
                database=location,
                emulator=emu,
                log_level="DEBUG",
                extra=SHARED_PACING,
            )
            made = Scene(tmp_path, location, emu, guild, alerts, users, store, config)
            yield made
        finally:
            if made is not None:
                for bot in made.bots:
                    await bot.stop()
            if store is not None:
                await store.close()
            await emu.stop()


async def wait_until(
    predicate: Callable[[], Awaitable[bool]],
    timeout: float,
    what: str,
    explain: Callable[[], str] | None = None,
) -> None:
    """`wait_for` with a predicate that reads the store (on either backend)."""
    deadline = time.monotonic() + timeout
    while not await predicate():
        if time.monotonic() > deadline:
            detail = f"\n{explain()}" if explain is not None else ""
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}{detail}")
        await asyncio.sleep(0.1)


async def started(s: Scene, bots: Sequence[BotProcess]) -> None:
    """Until each process's latest run has planned and is ready, and so runs its alert
    dispatcher. One that exits first never will: it fails the test at once."""

    def exited(bot: BotProcess) -> bool:
        return bot.proc is not None and bot.proc.returncode is not None

    def latest_run_started(bot: BotProcess) -> bool:
        if not bot.stderr_path().exists():
            return False
        log = bot.stderr()
        return STARTED in log and READY in log

    await wait_for(
        lambda: all(map(latest_run_started, bots)) or any(map(exited, bots)),
        START_TIMEOUT,
        "every process started",
        explain=s.explain,
    )
    assert all(map(latest_run_started, bots)), s.explain()


async def everyone_reached(s: Scene, dms_each: int = 1, *, then_look: bool = True) -> None:
    """Until each follower has `dms_each` DMs, the channel as many posts, and every
    delivery row is recorded sent; then (`then_look`) a poll round more, for duplicates
    to show."""
    expected = len(s.followers) + 1

    def arrived() -> bool:
        return min(s.dm_counts()) >= dms_each and len(s.emu.messages(s.alerts)) >= dms_each

    await wait_for(arrived, DELIVERED_WITHIN, f"{dms_each} DM(s) to each follower", 0.05, s.explain)

    async def recorded() -> bool:
        return await s.sent() >= expected * dms_each

    await wait_until(recorded, 30, "every delivery recorded sent", s.explain)
    if not then_look:
        return
    with pytest.raises(TimeoutError):  # a poll round later, still nothing more
        await wait_for(
            lambda: max(s.dm_counts()) > dms_each or len(s.emu.messages(s.alerts)) > dms_each,
            DUPLICATES_WITHIN,
            "a duplicate",
        )


async def assert_exactly_once(
    s: Scene, dms_each: int = 1, *, check_logs: bool = True
) -> list[dict[str, Any]]:
    """One DM per follower per change, one post per change; each a `sent` row whose
    message is that DM, carrying its batch's marker and nonce; no 429; and (unless the
    caller looks itself) no traceback in any log. Returns the rows."""
    emu = s.emu
    assert s.dm_counts() == [dms_each] * len(s.followers), s.explain()
    assert len(emu.messages(s.alerts)) == dms_each
    rows = await s.deliveries()
    members = [r for r in rows if r["recipient"] == "member"]
    servers = [r for r in rows if r["recipient"] == "server"]
    assert [r["state"] for r in rows] == ["sent"] * len(rows), [
        r for r in rows if r["state"] != "sent"
    ]
    assert len(members) == len(s.followers) * dms_each
    assert len(servers) == dms_each
    by_member: dict[int, list[dict[str, Any]]] = {}
    for r in members:
        by_member.setdefault(int(r["recipient_id"]), []).append(r)
    for user in s.followers:
        mine = by_member.get(user.id, [])
        assert len(mine) == dms_each, (user.id, mine)
        dms = {int(m["id"]): m for m in emu.dms(user)}
        for r in mine:
            dm = dms[int(r["message_id"])]  # the row names the DM that arrived
            assert dm.get("nonce") == nonce_for(r["batch"])
            footer = dm["embeds"][-1]["footer"]["text"] if dm.get("embeds") else ""
            assert marker_for(r["batch"]) in footer + (dm.get("content") or "")
    posts = {int(m["id"]) for m in emu.messages(s.alerts)}
    assert {int(r["message_id"]) for r in servers} == posts
    # The DM channel was opened once per member and kept.
    kept = {
        int(r[0]): r[1] for r in await s.store.rows("SELECT user_id, dm_channel_id FROM followers")
    }
    for user in s.followers:
        channel = emu.dm_channel(user)
        assert channel is not None and kept.get(user.id) == channel.id
    # Every POST to a member's DM channel (a re-send after a restart too) carried the
    # nonce of one of the member's batches, and every batch was POSTed.
    posted = dm_nonces(s)
    for user in s.followers:
        channel = emu.dm_channel(user)
        assert channel is not None
        batches = {nonce_for(r["batch"]) for r in by_member[user.id]}
        assert set(posted.get(channel.id, [])) == batches, (user.id, posted.get(channel.id))
    assert emu.rate_limited_count == 0
    assert emu.violations == []
    for bot in s.bots:
        assert not check_logs or "Traceback" not in bot.output(), bot.tail()
    return rows


def dm_nonces(s: Scene) -> dict[int, list[str]]:
    """DM channel id -> the nonce of every POST to it, as the emulator saw them."""
    channels = {c.id for u in s.followers if (c := s.emu.dm_channel(u)) is not None}
    found: dict[int, list[str]] = {}
    for r in s.emu.requests:
        posted = re.fullmatch(r"/channels/(\d+)/messages", r.path)
        if r.method == "POST" and posted and int(posted[1]) in channels:
            found.setdefault(int(posted[1]), []).append(str((r.json or {}).get("nonce")))
    return found


def dm_opens(s: Scene) -> int:
    return sum(
        1
        for r in s.emu.requests
        if r.method == "POST" and r.path == "/users/@me/channels" and r.status == 200
    )


def posted_by(bot: BotProcess) -> list[int]:
    """The channels this process posted to (discord.py's DEBUG line per request)."""
    return [int(m[1]) for m in POSTED.finditer(bot.output())]


def dm_channels(s: Scene) -> dict[int, UserState]:
    return {c.id: u for u in s.followers if (c := s.emu.dm_channel(u)) is not None}


def already_claimed(bot: BotProcess) -> int:
    """Claims this process found taken by the other (logged at DEBUG)."""
    return bot.output().count(": already claimed")


# -- 1. two processes on one database ------------------------------------------------


FOLLOWERS_TWO_PROCESSES = 120  # about 3 s of DMs at the shared budget
# The rolling restart needs a fan-out longer than a process takes to start (about 4 s).
FOLLOWERS_ROLLING = 200


@pytest.mark.parametrize("split", [True, False], ids=["two-shards", "both-own-all"])
async def test_two_processes_send_each_follower_one_dm(
    tmp_path: Path, store_location: Path | str, split: bool
) -> None:
    """Started together. Split, each process DMs only its own shard's members, and both
    DM some; unsplit, both go after every member and the claims decide."""
    async with scene(tmp_path, store_location, FOLLOWERS_TWO_PROCESSES) as s:
        options = [("--shard-count", "2", "--shard-ids", str(i)) if split else () for i in (0, 1)]
        bots = [s.bot(f"bot{i}", *options[i]) for i in (0, 1)]
        await asyncio.gather(*(bot.start() for bot in bots))
        await started(s, bots)
        await s.rate("in-progress", "work has started")
        await everyone_reached(s)
        assert [bot.proc.returncode for bot in bots if bot.proc] == [None, None]
        await assert_exactly_once(s)
        assert dm_opens(s) == len(s.followers)  # each member's DM channel opened once

        members = dm_channels(s)
        sent = [[c for c in posted_by(bot) if c in members] for bot in bots]
        # Each DM and the channel post was POSTed once in all (the loser of a claim never
        # sends), by one process.
        assert sorted(sent[0] + sent[1]) == sorted(members)
        alert_posts = [posted_by(bot).count(s.alerts.id) for bot in bots]
        assert sum(alert_posts) == 1
        if split:
            for shard, channels in enumerate(sent):
                assert channels, f"the process running shard {shard} sent no DM"
                shards = {(members[c].id >> 22) % 2 for c in channels}
                assert shards == {shard}, f"shard {shard}'s process DMed others' members"
            assert alert_posts[(s.guild.id >> 22) % 2] == 1  # by the guild's shard's process
        else:
            # Both processes went after every member: claims were contested.
            assert sum(map(already_claimed, bots)) >= 1, [len(c) for c in sent]


async def test_a_process_started_mid_fan_out_leaves_the_others_claims_alone(
    tmp_path: Path, store_location: Path | str
) -> None:
    """A rolling restart: the new process (no shard options, so it owns everything)
    starts while the old one is in the middle of a fan-out. Every follower still gets
    one DM. The new process must not re-send the batches the old one has in flight: they
    are not its crash's."""
    async with scene(tmp_path, store_location, FOLLOWERS_ROLLING) as s:
        old, new = s.bot("old"), s.bot("new")
        await old.start()
        await started(s, [old])
        await s.rate("in-progress", "work has started")
        await wait_for(lambda: s.reached() >= 20, DELIVERED_WITHIN, "the fan-out", 0.01, s.explain)
        await new.start()
        await started(s, [new])
        await everyone_reached(s)
        assert s.reached() == len(s.followers)
        await assert_exactly_once(s, check_logs=False)
        assert already_claimed(new) >= 1, "the new process came up after the fan-out"
        members = dm_channels(s)
        twice = sorted(set(posted_by(old)) & set(posted_by(new)) & set(members))
        assert twice == [], "the new process re-sent batches the old one had in flight"
        for log in (bot.output() for bot in s.bots):
            assert "Traceback (most recent call last)" not in log, log[-4000:]


# -- 2. kill -9 in the middle of a fan-out --------------------------------------------


FOLLOWERS_RESTART = 120  # about 6 s at the budget: time to land a kill in the middle
KILL_AFTER = 25  # DMs arrived before the kill


async def test_kill_9_mid_fan_out_then_restart_sends_each_follower_one_dm(
    tmp_path: Path, store_location: Path | str
) -> None:
    async with scene(tmp_path, store_location, FOLLOWERS_RESTART) as s:
        bot = s.bot("bot")
        await bot.start()
        await started(s, [bot])
        await s.rate("in-progress", "work has started")
        await wait_for(
            lambda: s.reached() >= KILL_AFTER,
            DELIVERED_WITHIN,
            "the fan-out to begin",
            0.01,
            s.explain,
        )
        await bot.kill()
        assert s.reached() < len(s.followers), "the kill came after the fan-out had finished"
        left = await s.store.rows(
            "SELECT recipient_id, batch FROM alert_deliveries WHERE state = 'claimed'"
        )
        assert left, "the kill left no claimed batch: nothing to recover"

        await bot.start()  # finishes the claimed batches, then sends the rest
        await started(s, [bot])
        await everyone_reached(s)
        # It took the killed process's claims over at once, because that pid is gone from
        # this host, rather than once its heartbeat was DEAD_AFTER (30 s) old.
        taken = bot.output().count("from a process that stopped (")
        assert taken >= 1, bot.tail()
        assert bot.output().count(f"from a process that stopped ({PROCESS_GONE})") == taken
        # ...and its nonce check: a batch re-sent after the restart carried its first nonce.
        rows = await assert_exactly_once(s)
        batches = {(int(r["recipient_id"]), r["batch"]) for r in rows}
        assert {(int(r[0]), r[1]) for r in left} <= batches  # finished under their own batch


# -- 3. a change while the bot is down ------------------------------------------------


FOLLOWERS_DOWN = 10


async def test_a_change_recorded_while_the_bot_is_down_is_sent_once_it_is_back(
    tmp_path: Path, store_location: Path | str
) -> None:
    async with scene(tmp_path, store_location, FOLLOWERS_DOWN) as s:
        bot = s.bot("bot")
        await bot.start()
        await started(s, [bot])
        await s.rate("in-progress", "work has started")
        await everyone_reached(s, then_look=False)  # a duplicate would show in the end
        assert await bot.stop() == 0

        done = run_cli(
            "status", "set", PLEDGE, "delivered", "--note", "done while the bot was down",
            "--evidence", EVIDENCE, "--by", "operator:cli",
            config=s.config,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert s.dm_counts() == [1] * len(s.followers)  # nobody told while it was down

        await bot.start()
        await started(s, [bot])
        await everyone_reached(s, dms_each=2)  # the new change; the old one not again
        await assert_exactly_once(s, dms_each=2)
        for user in s.followers:
            latest = s.emu.dms(user)[-1]
            assert "done while the bot was down" in str(latest), latest
        assert "done while the bot was down" in str(s.emu.messages(s.alerts)[-1])
