"""Benchmark 2: 1,000 servers with a briefing due the same minute, under a 50/s global limit.

The real bot (`make_bot`, in this process, as the end-to-end tests run it) against an
emulator that answers 429 `global: true` past 50 requests in any second. Briefings are
created through the engine (`engine.schedules.create` + `engine.plan`), one per server,
daily at the same UTC minute, and fired for real: either by APScheduler at that minute
(`clock`), or (`gather`) by calling `engine.fire(id)` for all of them at once, which is what
APScheduler does at the minute, minus the wait. `fire` takes only the schedule id and
derives what is due from the store and the engine's clock, so for `gather` the engine's
clock is moved forward to the slot (and APScheduler paused, so it does not fire them again
at the real minute). The bound is what the limit allows: 1,000 posts / 50 per second = 20 s.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

from bench.common import (
    DATA_DIR,
    GUILD_READY_TIMEOUT,
    Report,
    Settings,
    Table,
    Target,
    ratio,
    secs,
    times,
)
from bench.fixtures import add_guilds, prepare_database, temp_dir, write_config
from bot.briefings.engine import BriefingEngine, utc_clock
from bot.client.app import PledgeBot
from bot.client.endpoints import reset_endpoints
from bot.client.runner import make_bot
from bot.config import load_config
from bot.local import ChannelState, Emulator, GuildState, RecordedRequest

TARGET = 1.1
SERVERS = 1_000
RATE = 50.0
SETUP_MARGIN = 10.0  # seconds to create and plan every briefing before the minute


class Arrivals:
    """When each briefing reached its channel (wall clock, like the slot it was due at)."""

    def __init__(self, channels: list[ChannelState]) -> None:
        self.wanted = {c.id for c in channels}
        self.times: dict[int, list[float]] = {}
        self.all_arrived = asyncio.Event()

    def __call__(self, channel: ChannelState, message: object) -> None:
        if channel.id in self.wanted:
            self.times.setdefault(channel.id, []).append(time.time())
            if len(self.times) == len(self.wanted):
                self.all_arrived.set()


def route_of(request: RecordedRequest) -> str:
    parts = ["{id}" if p.isdigit() else p for p in request.path.split("/")]
    if len(parts) > 3 and parts[1] in ("interactions", "webhooks"):
        parts[3] = "{token}"  # one route, not one row per interaction
    return f"{request.method} {'/'.join(parts)}"


async def start_bot(bot: PledgeBot, token: str) -> asyncio.Task[None]:
    task = asyncio.create_task(bot.start(token))
    ready = asyncio.create_task(bot.engine_started.wait())
    done, _ = await asyncio.wait({task, ready}, timeout=120, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        ready.cancel()
        task.result()
    if ready not in done:
        raise TimeoutError("pledgebot did not start within 120 s")
    return task


def due_minute(mode: str) -> datetime:
    """The next whole UTC minute with time to set up (clock); for gather, hours away (the
    engine's clock is moved to it instead of waiting)."""
    now = datetime.now(UTC)
    minute = now.replace(second=0, microsecond=0)
    if mode != "clock":
        return minute + timedelta(hours=3)
    due = minute + timedelta(minutes=1)
    if (due - now).total_seconds() < SETUP_MARGIN:
        due += timedelta(minutes=1)
    return due


def move_clock_to(engine: BriefingEngine, due: datetime) -> None:
    """`gather`: the engine's clock reads `due` now and runs on from there, so `fire(id)`
    finds the slot due; APScheduler is paused so its jobs (at real times) stay quiet."""
    engine.pause_firings()
    offset = due - datetime.now(UTC)
    engine.clock = lambda: utc_clock() + offset


async def create_briefings(
    engine: BriefingEngine, guilds: list[GuildState], channels: list[ChannelState], due: datetime
) -> list[int]:
    """One daily digest per server at `due`, planned; returns the schedule ids."""
    planned: list[int] = []
    for guild, channel in zip(guilds, channels, strict=True):
        schedule = await engine.schedules.create(
            guild_id=guild.id,
            created_by=guild.owner_id,
            limit=25,
            fields={
                "channel_id": channel.id,
                "timezone": "UTC",
                "time_of_day": due.strftime("%H:%M"),
                "days": "daily",
                "content": "digest",
            },
        )
        plan = await engine.plan(schedule.id)
        if plan is None or plan[1] != due:
            raise RuntimeError(
                f"briefing {schedule.id} planned for {plan}, not {due}: creating "
                f"{len(guilds)} briefings took longer than SETUP_MARGIN ({SETUP_MARGIN} s)"
            )
        planned.append(schedule.id)
    return planned


async def run(settings: Settings) -> Report:
    servers = settings.size(SERVERS, quick=200, tiny=10)
    bound = servers / RATE
    mode = settings.fanout_fire
    how = (
        "APScheduler fired every job at the next whole UTC minute (`clock`)"
        if mode == "clock"
        else "`engine.fire(id)` was called for every briefing at once with "
        "`asyncio.gather` (`gather`), as APScheduler does at the minute, with the engine's "
        "clock moved forward to the slot and APScheduler paused"
    )
    report = Report(
        "fanout",
        f"Fan-out: {servers:,} briefings due the same minute",
        f"{servers:,} servers, one daily digest briefing each, all due the same UTC minute; "
        f"emulator global limit {RATE:g} requests/s (429 `global: true` past it); bot config "
        f"`global_rate_per_second` = 50 (the default). {how}. Time to deliver all is from "
        "the slot (clock) or the gather call (gather) to the last briefing reaching the "
        f"emulator; the bound is {servers:,} / {RATE:g} per second = {bound:g} s. The bot "
        "runs in the benchmark process, as the end-to-end tests run it.",
    )
    with temp_dir("fanout") as tmp:
        emu = Emulator(rate_limit_per_second=RATE)
        await emu.start()
        bot: PledgeBot | None = None
        task: asyncio.Task[None] | None = None
        quiet = logging.getLogger("discord")
        level = quiet.level
        quiet.setLevel(logging.ERROR)  # one "rate limited" warning per 429 would drown the table
        try:
            guilds = add_guilds(emu, servers, ("general", "briefings"))
            channels = [g.channels["briefings"] for g in guilds]
            db = tmp / "fanout.db"
            await prepare_database(db, DATA_DIR)
            config_path = write_config(tmp / "fanout.toml", database=db, content=DATA_DIR, emu=emu)
            config = load_config(config_path, environ={"DISCORD_TOKEN": emu.token})
            bot = make_bot(config, guild_ready_timeout=GUILD_READY_TIMEOUT)
            task = await start_bot(bot, emu.token)
            engine = bot.engine
            assert engine is not None
            due = due_minute(mode)
            arrivals = Arrivals(channels)
            emu.on_message(arrivals)
            planned = await create_briefings(engine, guilds, channels, due)
            first_request = len(emu.requests)
            limited_before = emu.rate_limited_count
            if mode == "clock":
                setup_left = (due - datetime.now(UTC)).total_seconds()
                started = due.timestamp()
                report.notes.append(
                    f"Briefings created and planned with {setup_left:.1f} s to spare before "
                    f"{due:%H:%M} UTC."
                )
                firing: asyncio.Future[list[None]] | None = None
            else:
                move_clock_to(engine, due)
                started = time.time()
                firing = asyncio.gather(*(engine.fire(sid) for sid in planned))
            deadline = (started - time.time()) + bound * 3 + 60
            try:
                await asyncio.wait_for(arrivals.all_arrived.wait(), deadline)
            except TimeoutError:
                report.notes.append(f"Gave up waiting {deadline:.0f} s for every briefing.")
            if firing is not None:
                await firing
            await asyncio.sleep(2.0)  # late duplicates would show up here
            fanout_requests = emu.requests[first_request:]
            limited = emu.rate_limited_count - limited_before
            states: Counter[str] = Counter()
            for sid in planned:
                states.update(d.state for d in await engine.schedules.deliveries(sid))
        finally:
            quiet.setLevel(level)
            if bot is not None:
                await bot.close()
            if task is not None:
                await asyncio.gather(task, return_exceptions=True)
            reset_endpoints()
            await emu.stop()
    summarise(report, arrivals, channels, started, bound, fanout_requests, limited, states)
    return report


def summarise(
    report: Report,
    arrivals: Arrivals,
    channels: list[ChannelState],
    started: float,
    bound: float,
    requests: list[RecordedRequest],
    limited: int,
    states: Counter[str],
) -> None:
    counts = [len(arrivals.times.get(c.id, [])) for c in channels]
    duplicates = sum(1 for n in counts if n > 1)
    misses = sum(1 for n in counts if n == 0)
    firsts = sorted(t[0] for t in arrivals.times.values())
    total = (firsts[-1] - started) if firsts else float("inf")
    first = (firsts[0] - started) if firsts else float("inf")
    measured = ratio(total, bound)
    delivered = len(firsts)
    rate = (delivered - 1) / (firsts[-1] - firsts[0]) if delivered > 1 else 0.0
    report.tables.append(
        Table(
            "Delivery",
            ("measure", "value"),
            [
                ("briefings due", str(len(channels))),
                ("delivered (channels with a post)", str(delivered)),
                ("first post after the slot / gather", f"{secs(first)} s"),
                ("all delivered after", f"{secs(total)} s"),
                ("rate-limit bound", f"{secs(bound)} s"),
                ("ratio to bound", times(measured)),
                ("achieved rate, first to last post", f"{rate:.1f} posts/s"),
                ("429s received", str(limited)),
                ("duplicates (channels with > 1 post)", str(duplicates)),
                ("misses (channels with no post)", str(misses)),
                ("deliveries recorded", ", ".join(f"{k} {v}" for k, v in sorted(states.items()))),
            ],
        )
    )
    by_route = Counter((route_of(r), r.status) for r in requests)
    report.tables.append(
        Table(
            "Requests the bot sent during the fan-out",
            ("route", "status", "count", "per briefing"),
            [
                (route, str(status), str(n), f"{n / len(channels):.2f}")
                for (route, status), n in sorted(by_route.items())
            ],
        )
    )
    report.targets.append(
        Target(
            "time to deliver all vs rate-limit bound",
            f"{secs(total)} s = {times(measured)}",
            f"<= {TARGET}x ({secs(bound * TARGET)} s)",
            measured <= TARGET,
        )
    )
    report.targets.append(Target("429s received", str(limited), "0", limited == 0))
    report.targets.append(
        Target("duplicates / misses", f"{duplicates} / {misses}", "0 / 0", duplicates + misses == 0)
    )
