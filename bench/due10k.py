"""Benchmark 9: 10,000 servers, 10,000 briefings due the same minute, one process then two.

Issue 22, target 3: where fanout2 shows 1,000 briefings sharing the rate limit, this is the
size a large deployment meets, every server with a briefing at the same minute, so the
limit (10,000 / 50 per second = 200 s) and not the bot sets the pace for over three
minutes, while members keep asking. The same fan-out runs twice, each time on a fresh
emulator (global limit 50 requests/s, 429 `global: true` past it) and a fresh SQLite file:
one bot process holding every shard, then two (`--shard-count 2 --shard-ids 0` / `1`, the
bot as `pledgebot run` builds it, see fanout2) on that one file, sharing the store's rate
budget.

Each phase: the bare discord.py bot (`bench/botproc.py bare`) answers `/pledge show` idle on
the same emulator first (its p99 and peak memory are the baselines); then the pledgebot
process(es) start, and once they are up one daily digest per server is created through
`Schedules.create`, as a moderator's command in any process would, in a mix of time zones
(UTC, Europe/Paris, Asia/Kolkata, ...) whose local times all name the same UTC minute, so
the zone handling is exercised; each process plans its servers' through its reconcile loop.
A member runs `/pledge show` every 50 ms (open loop, fanout2's `inject`) against the process
holding the emulator's one gateway session: just before the minute (idle baseline), then
from the minute until every briefing has reached its channel.

The full run waits for the real clock minute; `--quick` and the test suite's tiny run steer
the bots' briefing clocks (`bench/botproc.py --steer-clock`) so the minute comes a few
seconds after setup instead.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from bench.common import (
    Report,
    Settings,
    Stats,
    Table,
    Target,
    mib,
    ms,
    ratio,
    secs,
    times,
)
from bench.fanout import Arrivals, route_of
from bench.fanout2 import (
    IDLE_GAP,
    Delivered,
    Member,
    Phase,
    Run,
    add_split_guilds,
    busiest_second,
    inject,
    log_findings,
    log_notes,
    next_slot,
    sleep_until,
    wait_planned,
    watch_fanout,
)
from bench.fixtures import add_guilds, prepare_database, temp_dir, write_config, write_content
from bench.follow import cache_note
from bench.procs import Memory, MilestoneBot
from bot.briefings.schedules import Schedules
from bot.local import ChannelState, Emulator, GuildState
from bot.models import utc_slot
from bot.store import Store

RATE = 50.0
TIME_TARGET = 1.1
P99_TARGET = 2.0
WARMUP = 10  # /pledge show interactions before each measured phase, not measured
LATE_WAIT = 2.0  # seconds after the last first post: late duplicates would show up here
START_TIMEOUT = 300.0
SLOWEST = 3
# Whole-hour, half-hour and quarter-hour offsets, either side of UTC (and of DST rules).
ZONES = ("UTC", "Europe/Paris", "Asia/Kolkata", "America/New_York", "Asia/Kathmandu")


@dataclass(frozen=True)
class Sizes:
    servers: int
    idle_seconds: float
    generated: int  # pledges, so that every /pledge show asks something new
    setup_seconds: float  # to create every schedule and see the process(es) plan them
    steered: bool  # the bots' clocks are set ahead instead of waiting for the minute

    @classmethod
    def of(cls, settings: Settings) -> Sizes:
        return settings.size(
            cls(10_000, 20.0, 6_000, 75.0, False),
            quick=cls(300, 5.0, 1_000, 8.0, True),
            tiny=cls(10, 1.0, 50, 4.0, True),
        )

    @property
    def bound(self) -> float:
        return self.servers / RATE


@dataclass(frozen=True)
class Zoned:
    """A briefing to create: where it posts and in which zone (its local time is the
    phase's minute there)."""

    guild: GuildState
    channel: ChannelState
    zone: str


@dataclass
class PhaseRun:
    """One phase (one process, or two): fanout2's figures and what this benchmark adds."""

    processes: int
    run: Run
    zones: dict[int, str]  # briefing channel id -> its schedule's zone
    local: dict[str, str]  # zone -> the local time of day of the slot there
    claims: Claims
    bare_idle: Phase
    bare_memory: Memory
    memory_started: list[Memory]
    memory_end: list[Memory]
    rig_pauses: list[float]  # this process's long collections, idle phase to the end
    setup: str

    @property
    def label(self) -> str:
        return "1 process" if self.processes == 1 else f"{self.processes} processes"

    def process_name(self, index: int) -> str:
        if self.processes == 1:
            return "the bot (every shard)"
        return f"shard {index}" + (" (gateway session)" if index == self.processes - 1 else "")


def describe(settings: Settings) -> tuple[str, str]:
    sizes = Sizes.of(settings)
    n = sizes.servers
    title = f"{n:,} briefings due the same minute: one process, then two"
    clock = (
        "the bots' briefing clocks are steered so that a whole minute comes "
        f"{sizes.setup_seconds + sizes.idle_seconds + IDLE_GAP:g} s after setup starts "
        "(`--steer-clock`; the full run waits for the real minute)"
        if sizes.steered
        else "APScheduler fires at the real whole UTC minute"
    )
    method = (
        f"{n:,} servers, one daily digest briefing each, created through `Schedules.create` "
        f"once the bot is up, in {len(ZONES)} time zones in turn ({', '.join(ZONES)}) at the "
        "local time that names the same UTC minute; "
        f"{clock}. Run with one bot process holding every shard, then with two "
        "(`--shard-count 2 --shard-ids 0` / `1`, half the servers each, sharing the "
        "store's rate budget) on one SQLite database; each run on a fresh emulator (global "
        f"limit {RATE:g} requests/s, 429 `global: true` past it) and database. Time to the "
        "last post is from the slot to the last channel's first post reaching the emulator; "
        f"the rate-limit bound is {n:,} / {RATE:g} per second = {sizes.bound:g} s. Deliveries "
        "recorded are the `deliveries` rows of the slot by state, and those flagged late "
        f"(claimed over a minute after the slot). Duplicates: channels with more than one "
        f"post up to {LATE_WAIT:g} s after the last. `/pledge show` runs every 50 ms "
        "(open loop) against the process holding the emulator's one gateway session, each "
        f"for another of {sizes.generated:,} generated pledges: {sizes.idle_seconds:g} s "
        "just before the minute (idle baseline, after "
        f"{WARMUP} unmeasured warm-up commands), then until every briefing arrived. The bare "
        f"discord.py bot runs first in each run on the same emulator ({sizes.idle_seconds:g} s "
        "of the same `/pledge show`, answered with a constant) for its idle p99 and its peak "
        "memory (VmHWM)."
    )
    return title, method


async def run(settings: Settings) -> Report:
    report = Report("due10k", *describe(settings))
    phases = []
    for processes in (1, 2):
        print(f"... due10k: {processes} process(es)", flush=True)
        phases.append(await measure(settings, processes))
    summarise(report, phases)
    return report


def local_times(due: datetime) -> dict[str, str]:
    """Each zone's wall time at `due`, checked to name `due` again (a time the clocks
    repeat names its first occurrence), so every zone's briefing lands on the same minute."""
    found = {}
    for zone in ZONES:
        local = due.astimezone(ZoneInfo(zone)).replace(tzinfo=None)
        if local.replace(tzinfo=ZoneInfo(zone), fold=0).astimezone(UTC) != due:
            raise RuntimeError(f"{local:%H:%M} in {zone} does not name {due:%H:%M} UTC today")
        found[zone] = f"{local:%H:%M}"
    return found


async def add_zoned_briefings(
    database: Path, briefings: Sequence[Zoned], local: dict[str, str]
) -> list[int]:
    """As `fixtures.add_briefings` (which makes UTC ones only), each in its own zone."""
    store = await Store.open(database)
    try:
        schedules = Schedules(store)
        ids = []
        for planned in briefings:
            created = await schedules.create(
                guild_id=planned.guild.id,
                created_by=planned.guild.owner_id,
                limit=25,
                fields={
                    "channel_id": planned.channel.id,
                    "timezone": planned.zone,
                    "time_of_day": local[planned.zone],
                    "days": "daily",
                    "content": "digest",
                },
            )
            ids.append(created.id)
        return ids
    finally:
        await store.close()


@dataclass(frozen=True)
class Claims:
    """The slot's deliveries as the bots claimed them: how many were flagged late (claimed
    over a minute after the slot, which the issue counts against the bot even when posted),
    and when the first and last claims came (seconds after the slot, on the bots' clocks)."""

    late: int
    first: float | None
    last: float | None


async def claims(database: Path, due: datetime) -> Claims:
    store = await Store.open(database)
    try:
        rows = await store.rows(
            "SELECT sum(late), min(claimed_at), max(claimed_at) FROM deliveries WHERE slot = ?",
            (utc_slot(due),),
        )
    finally:
        await store.close()
    late, first, last = rows[0][0], rows[0][1], rows[0][2]

    def after(stamp: str | None) -> float | None:
        return None if stamp is None else (datetime.fromisoformat(stamp) - due).total_seconds()

    return Claims(int(late or 0), after(first), after(last))


async def measure_bare(
    tmp: Path, emu: Emulator, config: Path, member: Member, idle_seconds: float, guilds: int
) -> tuple[Phase, Memory]:
    """The bare bot on the same emulator: idle `/pledge show`, then its memory."""
    async with MilestoneBot(tmp, config, emu.token, "bare", kind="bare", sync=True) as proc:
        ready = await proc.milestone("ready", START_TIMEOUT)
        if ready.get("guilds") != guilds:
            raise RuntimeError(f"bare: ready with {ready.get('guilds')} of {guilds} guilds")
        await inject(member, Phase("warm-up"), WARMUP, lambda: False)
        idle = Phase("bare discord.py, idle")
        until = time.time() + idle_seconds
        await inject(member, idle, None, lambda: time.time() >= until)
        return idle, proc.memory()


async def measure(settings: Settings, processes: int) -> PhaseRun:
    sizes = Sizes.of(settings)
    per_process = sizes.servers // processes
    with temp_dir(f"due10k{processes}") as tmp:
        content = write_content(tmp / "content", sizes.generated)
        emu = Emulator(rate_limit_per_second=RATE)
        await emu.start()
        procs: list[MilestoneBot] = []
        try:
            if processes == 1:
                sides, extra = [add_guilds(emu, sizes.servers, ("general", "briefings"))], 0
            else:  # servers until each shard has its half (ids are timestamps)
                sides, extra = add_split_guilds(emu, per_process)
            everyone = [g for side in sides for g in side]
            user = emu.add_user("member")
            database = tmp / "due10k.db"
            await prepare_database(database, content)
            config = write_config(tmp / "due10k.toml", database=database, content=content, emu=emu)
            slugs = [f"gen-{i:05d}" for i in range(sizes.generated)]
            random.Random(20261205).shuffle(slugs)
            # a server of the process holding the gateway session (the last one started)
            member = Member(emu, sides[-1][0], user, slugs)
            bare_idle, bare_memory = await measure_bare(
                tmp,
                emu,
                config,
                Member(emu, member.guild, user, slugs),
                sizes.idle_seconds,
                len(everyone) + extra,
            )
            print(f"... due10k: bare bot measured; starting {processes} pledgebot", flush=True)
            started: list[float] = []
            for index in range(processes):  # one after the other: the last holds the gateway
                shards = ["--shard-count", str(processes), "--shard-ids", str(index)]
                proc = MilestoneBot(
                    tmp,
                    config,
                    emu.token,
                    f"due10k{processes}-{index}",
                    kind="pledgebot",
                    sync=False,
                    steered=sizes.steered,
                    extra_args=[*(shards if processes > 1 else []), "--report-jobs"],
                )
                procs.append(proc)
                await proc.start()
                ready = await proc.milestone("ready", START_TIMEOUT)
                if ready.get("guilds") != len(everyone) + extra:
                    raise RuntimeError(f"process {index} ready with {ready.get('guilds')} guilds")
                await proc.milestone("engine_started", START_TIMEOUT)
                started.append(proc.since_spawn("engine_started"))
            memory_started = [p.memory() for p in procs]
            await inject(member, Phase("warm-up"), WARMUP, lambda: False)

            lead = sizes.setup_seconds + sizes.idle_seconds + IDLE_GAP
            slot = await next_slot(lead, procs if sizes.steered else ())
            setup_until = slot.wall - sizes.idle_seconds - IDLE_GAP
            local = local_times(slot.due)
            zoned = [
                Zoned(g, g.channels["briefings"], ZONES[i % len(ZONES)])
                for i, g in enumerate(everyone)
            ]
            made = time.monotonic()
            ids = await add_zoned_briefings(database, zoned, local)
            created = time.monotonic() - made
            planned = await wait_planned(procs, per_process, setup_until)
            planned_by = time.monotonic() - made
            if len(ids) != sizes.servers or any(c != per_process for c in planned):
                raise RuntimeError(
                    f"created {len(ids)} schedules; processes planned {planned}, not "
                    f"{per_process} each, {sizes.setup_seconds:g} s after creating began"
                )
            print(
                f"... due10k: {len(ids):,} briefings created in {created:.1f} s, planned "
                f"{planned} by {planned_by:.1f} s; due at {slot.due:%H:%M} UTC",
                flush=True,
            )
            channels = [[g.channels["briefings"] for g in side] for side in sides]
            arrivals = Arrivals([c for side in channels for c in side])
            emu.on_message(arrivals)

            await sleep_until(setup_until)
            measured, rig_pauses = await watch_fanout(
                emu,
                member,
                database,
                Run(
                    servers=sizes.servers,
                    extra_guilds=extra,
                    slot=slot,
                    bound=sizes.bound,
                    shard_channels=channels,
                    arrivals=arrivals,
                    planned=planned,
                    member=member,
                    started=started,
                ),
                late_wait=LATE_WAIT,
                label="due10k",
            )
            claimed = await claims(database, slot.due)
            memory_end = [p.memory() for p in procs]
        finally:
            await asyncio.gather(*(p.stop() for p in procs), return_exceptions=True)
            await emu.stop()
        measured.logs = [log_findings(p) for p in procs]
    return PhaseRun(
        processes=processes,
        run=measured,
        zones={z.channel.id: z.zone for z in zoned},
        local=local,
        claims=claimed,
        bare_idle=bare_idle,
        bare_memory=bare_memory,
        memory_started=memory_started,
        memory_end=memory_end,
        rig_pauses=rig_pauses,
        setup=(
            f"{len(ids):,} schedules created through the store in {created:.1f} s, all planned "
            f"by {planned_by:.1f} s (setup, not measured)"
        ),
    )


# -- the report -----------------------------------------------------------------------

Labelled = tuple[PhaseRun, Delivered]


def summarise(report: Report, phases: Sequence[PhaseRun]) -> None:
    labelled = [(phase, Delivered.of(phase.run)) for phase in phases]
    report.tables.append(delivery_table(labelled))
    report.tables.append(per_process_table(labelled))
    report.tables.append(zones_table(phases))
    report.tables.append(show_table(phases))
    report.tables.append(slowest_table(labelled))
    report.tables.append(requests_table(labelled))
    for phase, delivered in labelled:
        report.targets.extend(targets(phase, delivered))
    report.notes.extend(notes(phases))


def delivery_table(labelled: Sequence[Labelled]) -> Table:
    measures: list[tuple[str, ...]] = []

    def row(title: str, value: Callable[[PhaseRun, Delivered], object]) -> None:
        measures.append((title, *(str(value(p, d)) for p, d in labelled)))

    def rate(d: Delivered) -> float:
        span = d.firsts[-1] - d.firsts[0] if len(d.firsts) > 1 else 0.0
        return (len(d.firsts) - 1) / span if span > 0 else 0.0

    def states(p: PhaseRun) -> str:
        return ", ".join(f"{k} {v}" for k, v in sorted(p.run.states.items())) or "none"

    def claimed(p: PhaseRun) -> str:
        first, last = p.claims.first, p.claims.last
        return "-" if first is None or last is None else f"{secs(first)} -> {secs(last)} s"

    row("briefings due", lambda p, d: d.due)
    row("delivered (channels with a post)", lambda p, d: len(d.firsts))
    row(
        "first post after the slot",
        lambda p, d: f"{secs(d.firsts[0] - p.run.slot.wall)} s" if d.firsts else "-",
    )
    row("last post after the slot", lambda p, d: f"{secs(d.total)} s")
    row(f"rate-limit bound (at {RATE:g}/s)", lambda p, d: f"{secs(p.run.bound)} s")
    row("ratio to the bound", lambda p, d: times(d.vs_bound))
    row("achieved rate, first to last post", lambda p, d: f"{rate(d):.1f} posts/s")
    row("busiest second, every limited request", lambda p, d: d.busiest)
    row("429s received during the fan-out", lambda p, d: p.run.limited_429)
    row("429s received in the whole run", lambda p, d: p.run.limited_429_total)
    row("duplicates (channels with > 1 post)", lambda p, d: d.duplicates)
    row("channels with no post", lambda p, d: d.misses)
    row("deliveries recorded for the slot", lambda p, d: states(p))
    row("of them recorded late", lambda p, d: p.claims.late)
    row("claimed after the slot: first -> last (the bots' clocks)", lambda p, d: claimed(p))
    row(
        "emulator process: collections >= 20 ms (longest)",
        lambda p, d: f"{len(p.rig_pauses)} ({ms(max(p.rig_pauses, default=0.0))} ms)",
    )
    return Table("Delivery", ("measure", *(p.label for p, _ in labelled)), measures)


def per_process_table(labelled: Sequence[Labelled]) -> Table:
    rows: list[tuple[str, ...]] = []
    for phase, _ in labelled:
        run, slot, bare = phase.run, phase.run.slot.wall, phase.bare_memory
        for index, side in enumerate(run.shard_channels):
            got = sorted(run.arrivals.times[c.id][0] for c in side if c.id in run.arrivals.times)
            start, end = phase.memory_started[index], phase.memory_end[index]
            rows.append(
                (
                    phase.label,
                    phase.process_name(index),
                    str(run.planned[index]),
                    str(len(got)),
                    f"{secs(got[-1] - slot)} s" if got else "-",
                    str(busiest_second(got)),
                    f"{secs(run.started[index])} s",
                    f"{mib(start.rss_kib)} -> {mib(end.rss_kib)}",
                    mib(end.hwm_kib),
                    times(ratio(end.hwm_kib, bare.hwm_kib)),
                )
            )
        blank = ("-",) * 6
        rows.append((phase.label, "bare discord.py (before)", *blank, mib(bare.hwm_kib), "1.00x"))
    return Table(
        "Per process: delivery, start-up and memory (MiB)",
        (
            "run",
            "process",
            "briefings planned",
            "delivered",
            "last post after the slot",
            "busiest second (its posts)",
            "spawn to engine started",
            "VmRSS started -> end",
            "VmHWM (peak)",
            "VmHWM vs bare",
        ),
        rows,
    )


def zones_table(phases: Sequence[PhaseRun]) -> Table:
    rows: list[tuple[str, ...]] = []
    for phase in phases:
        run = phase.run
        by_zone: dict[str, list[ChannelState]] = {}
        for side in run.shard_channels:
            for channel in side:
                by_zone.setdefault(phase.zones[channel.id], []).append(channel)
        for zone in ZONES:
            channels = by_zone.get(zone, [])
            got = [run.arrivals.times[c.id][0] for c in channels if c.id in run.arrivals.times]
            rows.append(
                (
                    phase.label,
                    zone,
                    phase.local[zone],
                    str(len(channels)),
                    str(len(got)),
                    f"{secs(max(got) - run.slot.wall)} s" if got else "-",
                )
            )
    return Table(
        "Briefings by time zone (every local time names the same UTC minute)",
        ("run", "zone", "local time", "briefings", "delivered", "last post after the slot"),
        rows,
    )


def show_table(phases: Sequence[PhaseRun]) -> Table:
    rows: list[tuple[str, ...]] = []
    for phase in phases:
        bare = Stats.of(phase.bare_idle.latencies())
        idle = Stats.of(phase.run.idle.latencies())
        burst = Phase("during the fan-out: its first second")
        steady = Phase("during the fan-out: after its first second")
        for sample in phase.run.fanout.samples:
            (burst if sample.sent - phase.run.slot.wall < 1.0 else steady).samples.append(sample)
        measured = (phase.bare_idle, phase.run.idle, phase.run.fanout, burst, steady)
        for part in measured:
            if not part.samples:
                continue
            stats = Stats.of(part.latencies())
            rows.append(
                (
                    phase.label,
                    part.name,
                    str(stats.count),
                    ms(stats.median),
                    ms(stats.p99),
                    ms(stats.max),
                    times(ratio(stats.p99, idle.p99)),
                    times(ratio(stats.p99, bare.p99)),
                    str(sum(not s.answered for s in part.samples)),
                )
            )
    return Table(
        "/pledge show round trip, against the process holding the gateway session",
        (
            "run",
            "phase",
            "n",
            "median ms",
            "p99 ms",
            "max ms",
            "p99 vs idle",
            "p99 vs bare idle",
            "unanswered",
        ),
        rows,
    )


def slowest_table(labelled: Sequence[Labelled]) -> Table:
    rows = []
    for phase, delivered in labelled:
        samples = phase.run.fanout.samples
        for sample in sorted(samples, key=lambda s: s.latency, reverse=True)[:SLOWEST]:
            rows.append(
                (
                    phase.label,
                    f"{secs(sample.sent - phase.run.slot.wall)} s",
                    ms(sample.latency),
                    str(sum(1 for t in delivered.firsts if t <= sample.sent)),
                )
            )
    return Table(
        f"The {SLOWEST} slowest /pledge show during each fan-out",
        ("run", "sent after the slot", "round trip ms", "briefings delivered by then"),
        rows,
    )


def requests_table(labelled: Sequence[Labelled]) -> Table:
    routes = [Counter((route_of(r), r.status) for r in p.run.requests) for p, _ in labelled]
    keys = sorted({key for counted in routes for key in counted})
    return Table(
        f"Requests from the slot to {LATE_WAIT:g} s after the last post (interactions included)",
        ("route", "status", *(p.label for p, _ in labelled)),
        [
            (route, str(status), *(str(counted.get((route, status), 0)) for counted in routes))
            for route, status in keys
        ],
    )


def targets(phase: PhaseRun, delivered: Delivered) -> list[Target]:
    label, run = phase.label, phase.run
    idle = Stats.of(run.idle.latencies())
    bare = Stats.of(phase.bare_idle.latencies())
    during = Stats.of(run.fanout.latencies()) if run.fanout.samples else None
    p99 = during.p99 if during is not None else float("inf")
    unanswered = sum(not s.answered for s in run.fanout.samples)
    states = run.states
    missed, failed = states.get("missed", 0), states.get("failed", 0)
    sent = states.get("sent", 0)
    memory = "; ".join(
        f"{phase.process_name(i)} {mib(m.hwm_kib)} MiB = "
        f"{times(ratio(m.hwm_kib, phase.bare_memory.hwm_kib))}"
        for i, m in enumerate(phase.memory_end)
    )
    return [
        Target(
            f"{label}: time to the last post vs rate-limit bound",
            f"{secs(delivered.total)} s = {times(delivered.vs_bound)}",
            f"<= {TIME_TARGET}x ({secs(run.bound * TIME_TARGET)} s)",
            delivered.vs_bound <= TIME_TARGET,
        ),
        Target(
            f"{label}: deliveries recorded late / missed / failed",
            f"{phase.claims.late} / {missed} / {failed} (sent {sent:,} of {delivered.due:,})",
            "0 / 0 / 0",
            phase.claims.late + missed + failed == 0 and sent == delivered.due,
        ),
        Target(f"{label}: 429s received", str(run.limited_429), "0", run.limited_429 == 0),
        Target(
            f"{label}: duplicates / channels with no post",
            f"{delivered.duplicates} / {delivered.misses}",
            "0 / 0",
            delivered.duplicates + delivered.misses == 0,
        ),
        Target(
            f"{label}: /pledge show p99 during the fan-out vs idle",
            f"{ms(p99)} ms = {times(ratio(p99, idle.p99))}"
            + (f", {unanswered} unanswered" if unanswered else ""),
            f"<= {P99_TARGET}x ({ms(idle.p99 * P99_TARGET)} ms)",
            ratio(p99, idle.p99) <= P99_TARGET and unanswered == 0,
        ),
        Target(
            f"{label}: /pledge show p99 during the fan-out vs the bare bot idle",
            f"{ms(p99)} ms = {times(ratio(p99, bare.p99))}",
            "none set (figure)",
            None,
        ),
        Target(
            f"{label}: busiest second, every limited request",
            f"{delivered.busiest} requests = {times(ratio(delivered.busiest, RATE))} the limit",
            "none set (figure; the 429s are the target)",
            None,
        ),
        Target(
            f"{label}: VmHWM (peak) of each process vs the bare bot",
            memory,
            "none set (figure)",
            None,
        ),
    ]


def notes(phases: Sequence[PhaseRun]) -> list[str]:
    found = []
    for phase in phases:
        run = phase.run
        found.append(
            f"{phase.label}: briefings due at {run.slot.due:%H:%M} UTC; {phase.setup}"
            + (
                f"; {run.extra_guilds} more servers without a briefing (ids are timestamps, "
                "so servers were added until each shard had its half)"
                if run.extra_guilds
                else ""
            )
            + f"; gateway identifies: {run.identify_count} (the bare bot's included)."
        )
        asked, repeated = run.member.asked, run.member.repeated
        found.append(
            f"{phase.label}: /pledge show asked {asked:,} times of pledgebot (warm-up included)"
            + (
                f", {repeated:,} of them repeats ({cache_note(len(run.member.slugs))})"
                if repeated
                else ", every one for a different pledge"
            )
            + "."
        )
        if run.gave_up:
            found.append(f"{phase.label}: gave up waiting for every briefing (3x bound + 60 s).")
        for line in log_notes(run.logs):
            if phase.processes == 1:
                line = line.replace("shard 0 logged", "the bot logged")
            found.append(f"{phase.label}: {line}")
    return found
