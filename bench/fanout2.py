"""Benchmark 2b: the fan-out shared by two bot processes on one database, one rate limit.

Two real bots (`bench/botproc.py`, built by `bot.client.runner.make_bot` with
`bot.client.runner.shard_options` exactly as `pledgebot run --shard-count 2 --shard-ids I` builds
them), each a subprocess, both on ONE SQLite database and ONE emulator that answers 429
`global: true` past 50 non-interaction requests in any second. Process I schedules only the
servers with `(guild_id >> 22) % 2 == I`: half of the 1,000 briefings each, all due the
same UTC minute, so the two processes can only stay under the limit by sharing the rate
budget the store keeps (`bot/rate_budget.py`).

The emulator serves one gateway session at a time: shard 0 starts first and fills its
guild cache from its own READY; shard 1 then identifies, takes over the session and is the
process that receives every interaction. Posting needs no gateway. Schedules are created by
this process through `Schedules` on the same database, as a moderator's command in any
process would, and each bot plans its half through its reconcile loop (both report their
planned jobs before the minute).

While the fan-out runs, a member runs `/pledge show` against shard 1 at a steady pace
(open loop: one every `PACE` s whatever the answers take), each time for a pledge never
asked before in the run, so the bot's answer cache never helps; the baseline is the same
pace and kind of input against the same process just before the minute, while both
processes sit idle. Round trips are the emulator's clock from INTERACTION_CREATE to the
interaction callback, as in the round-trip benchmark.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.common import (
    Report,
    RigPauses,
    Settings,
    Stats,
    Table,
    Target,
    ms,
    ratio,
    secs,
    times,
)
from bench.fanout import Arrivals, route_of
from bench.fixtures import (
    Planned,
    add_briefings,
    prepare_database,
    temp_dir,
    write_config,
    write_content,
)
from bench.procs import MilestoneBot
from bot.local import ChannelState, Emulator, GuildState, RecordedRequest, UserState
from bot.models import utc_slot
from bot.store import Store

log = logging.getLogger(__name__)

SERVERS = 1_000
SHARDS = 2
RATE = 50.0
TIME_TARGET = 1.1
P99_TARGET = 2.0
PACE = 0.05  # seconds between /pledge show interactions (20 a second), both phases
WARMUP = 10  # /pledge show interactions before the idle phase, not measured
COMMAND_TIMEOUT = 15.0
SETUP_SECONDS = 20.0  # to create every schedule and see both processes plan its half
IDLE_GAP = 2.0  # the idle phase ends this long before the minute
START_TIMEOUT = 180.0
# discord.py's start-up notes about optional voice packages: not the bot's doing.
IGNORED = ("voice will NOT be supported",)
SLOWEST = 5


@dataclass
class Sample:
    sent: float  # wall clock
    latency: float  # seconds; COMMAND_TIMEOUT for one never answered
    answered: bool
    deferred: bool
    private: bool


@dataclass
class Phase:
    name: str
    samples: list[Sample] = field(default_factory=list)

    def latencies(self) -> list[float]:
        return [s.latency for s in self.samples]


@dataclass
class Member:
    """Who runs `/pledge show`, where, and the pledges not asked about yet."""

    emu: Emulator
    guild: GuildState
    user: UserState
    slugs: list[str]
    asked: int = 0

    def next_slug(self) -> str:
        slug = self.slugs[self.asked % len(self.slugs)]
        self.asked += 1
        return slug

    @property
    def repeated(self) -> int:
        return max(0, self.asked - len(self.slugs))


def shard_of(guild_id: int) -> int:
    return (guild_id >> 22) % SHARDS


def add_split_guilds(emu: Emulator, per_shard: int) -> tuple[list[list[GuildState]], int]:
    """Servers until each shard has `per_shard` (ids are timestamps, so the split is not
    exactly even); returns the ones with a briefing, per shard, and how many are extra."""
    chosen: list[list[GuildState]] = [[] for _ in range(SHARDS)]
    extra = 0
    while any(len(c) < per_shard for c in chosen):
        name = f"Server {sum(map(len, chosen)) + extra:05d}"
        guild = emu.add_guild(name, ("general", "briefings"))
        side = chosen[shard_of(guild.id)]
        if len(side) < per_shard:
            side.append(guild)
        else:
            extra += 1
    return chosen, extra


def due_minute(now: datetime, lead: float) -> datetime:
    """The first whole UTC minute at least `lead` seconds away."""
    due = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
    while (due - now).total_seconds() < lead:
        due += timedelta(minutes=1)
    return due


@dataclass(frozen=True)
class Slot:
    """When the briefings fall due: `due` on the bots' clocks, `wall` by the wall clock."""

    due: datetime
    wall: float


async def next_slot(lead: float, steered: Sequence[MilestoneBot] = ()) -> Slot:
    """The first whole UTC minute at least `lead` seconds away. With `steered` bots (tiny
    runs), their clocks are set ahead so that their next whole minute comes in `lead` s."""
    if not steered:
        due = due_minute(datetime.now(UTC), lead)
        return Slot(due, due.timestamp())
    wall = time.time() + lead
    due = due_minute(datetime.fromtimestamp(wall, UTC), 0.0)
    await asyncio.gather(*(proc.steer_clock(due.timestamp() - wall) for proc in steered))
    return Slot(due, wall)


async def wait_planned(procs: Sequence[MilestoneBot], wanted: int, until: float) -> list[int]:
    """Each process's planned briefings once every one reports `wanted` (or at `until`)."""

    def counts() -> list[int]:
        return [int(p.milestones.get("jobs", {}).get("count", -1)) for p in procs]

    while True:  # the counts arrive on the bots' stdout
        found = counts()
        if time.time() >= until or all(c == wanted for c in found):
            return found
        await asyncio.sleep(0.25)


async def show(member: Member, phase: Phase) -> None:
    sent = time.time()
    slug = member.next_slug()
    try:
        result = await member.emu.run_command(
            member.guild,
            "pledge show",
            options={"pledge": slug},
            user=member.user,
            timeout=COMMAND_TIMEOUT,
        )
    except TimeoutError:
        phase.samples.append(Sample(sent, COMMAND_TIMEOUT, False, False, False))
        return
    latency = result.latency if result.latency is not None else COMMAND_TIMEOUT
    answered, deferred = result.latency is not None, result.callback_type == 5
    phase.samples.append(Sample(sent, latency, answered, deferred, result.ephemeral))


async def inject(member: Member, phase: Phase, count: int | None, stop: Callable[[], bool]) -> None:
    """`/pledge show` every PACE seconds (open loop) until `count` are sent or `stop()`."""
    tasks: list[asyncio.Task[None]] = []
    loop = asyncio.get_running_loop()
    next_at = loop.time()
    while (count is None or len(tasks) < count) and not stop():
        tasks.append(asyncio.create_task(show(member, phase)))
        next_at += PACE
        await asyncio.sleep(max(0.0, next_at - loop.time()))
    await asyncio.gather(*tasks)


async def sleep_until(wall: float) -> None:
    await asyncio.sleep(max(0.0, wall - time.time()))


def busiest_second(times_: Sequence[float]) -> int:
    """The most requests in any one-second window (the emulator's sliding window)."""
    ordered = sorted(times_)
    best, low = 0, 0
    for high, t in enumerate(ordered):
        while t - ordered[low] >= 1.0:
            low += 1
        best = max(best, high - low + 1)
    return best


def limited(request: RecordedRequest) -> bool:
    """Counted against the global limit (the emulator exempts interaction routes)."""
    return not request.path.startswith(("/interactions/", "/webhooks/"))


async def deliveries(database: Path | str, slot: str) -> Counter[str]:
    """The slot's deliveries by state, read through the store (SQLite file or PostgreSQL)."""
    store = await Store.open(database)
    try:
        rows = await store.rows(
            "SELECT state, count(*) FROM deliveries WHERE slot = ? GROUP BY state", (slot,)
        )
    finally:
        await store.close()
    return Counter({str(row[0]): int(row[1]) for row in rows})


def log_findings(proc: MilestoneBot) -> tuple[int, int, list[str]]:
    """Warnings and errors a bot logged (and tracebacks), with a few distinct examples."""
    try:
        lines = proc.stderr().splitlines()
    except OSError:
        return 0, 0, []
    flagged = [
        ln
        for ln in lines
        if ln.startswith(("WARNING", "ERROR", "CRITICAL")) and not any(i in ln for i in IGNORED)
    ]
    tracebacks = sum(ln.startswith("Traceback") for ln in lines)
    examples: list[str] = []
    for line in flagged:
        short = line[:160]
        if short not in examples:
            examples.append(short)
        if len(examples) == 3:
            break
    return len(flagged), tracebacks, examples


@dataclass
class Run:
    """What a fan-out run set up (the first fields) and what `watch_fanout` saw of it."""

    servers: int
    extra_guilds: int
    slot: Slot
    bound: float
    shard_channels: list[list[ChannelState]]
    arrivals: Arrivals
    planned: list[int]
    member: Member
    started: list[float]
    requests: list[RecordedRequest] = field(default_factory=list)
    perf_to_wall: float = 0.0
    limited_429: int = 0
    limited_429_total: int = 0
    states: Counter[str] = field(default_factory=Counter)
    idle: Phase = field(default_factory=lambda: Phase("idle, before the minute"))
    fanout: Phase = field(default_factory=lambda: Phase("during the fan-out"))
    logs: list[tuple[int, int, list[str]]] = field(default_factory=list)
    identify_count: int = 0
    gave_up: bool = False


async def watch_fanout(
    emu: Emulator,
    member: Member,
    database: Path | str,
    run: Run,
    *,
    late_wait: float,
    label: str | None = None,
) -> tuple[Run, list[float]]:
    """`run` filled in: `/pledge show` idle until just before the slot, then through the
    fan-out until every briefing arrived (or 3x the bound and a minute more), then
    `late_wait` for duplicates; the deliveries' states after. The emulator's heap stays out
    of the collector's sight meanwhile (`RigPauses`); the collections still seen are
    returned with the run. With `label`, says how far the fan-out got when it ended."""
    slot, arrivals = run.slot, run.arrivals
    idle_end = slot.wall - IDLE_GAP
    deadline = slot.wall + run.bound * 3 + 60
    async with RigPauses() as pauses:
        watched_from = time.time()
        await inject(member, run.idle, None, lambda: time.time() >= idle_end)
        first_request = len(emu.requests)
        limited_before = emu.rate_limited_count
        await sleep_until(slot.wall)
        await inject(
            member,
            run.fanout,
            None,
            lambda: arrivals.all_arrived.is_set() or time.time() >= deadline,
        )
        run.gave_up = not arrivals.all_arrived.is_set()
        if label is not None:
            print(
                f"... {label}: {len(arrivals.times):,} of {run.servers:,} delivered "
                f"{time.time() - slot.wall:.1f} s after the slot",
                flush=True,
            )
        await asyncio.sleep(late_wait)
        rig_pauses = pauses.between(watched_from, time.time())
    run.requests = emu.requests[first_request:]
    run.limited_429 = emu.rate_limited_count - limited_before
    run.limited_429_total = emu.rate_limited_count
    run.identify_count = emu.identify_count
    run.perf_to_wall = time.time() - time.perf_counter()
    run.states = await deliveries(database, utc_slot(slot.due))
    return run, rig_pauses


@dataclass(frozen=True)
class Sizes:
    servers: int
    idle_seconds: float
    generated: int
    setup_seconds: float  # to create every schedule and see both processes plan its half

    @classmethod
    def of(cls, settings: Settings) -> Sizes:
        return settings.size(
            cls(SERVERS, 20.0, 2_000, SETUP_SECONDS),
            quick=cls(200, 8.0, 1_000, SETUP_SECONDS),
            tiny=cls(10, 1.0, 50, 4.0),
        )

    @property
    def bound(self) -> float:
        return self.servers / RATE


def describe(settings: Settings, backend: str = "SQLite") -> tuple[str, str]:
    """The benchmark's title and method, with the database it runs on named."""
    sizes = Sizes.of(settings)
    servers, bound, generated = sizes.servers, sizes.bound, sizes.generated
    title = f"Fan-out across two processes: {servers:,} briefings due the same minute"
    method = (
        f"{servers:,} servers with one daily digest briefing each, all due the same UTC "
        f"minute, split by shard between two bot subprocesses (`bench/botproc.py` with "
        f"`--shard-count 2 --shard-ids 0` / `1`, the bot as `pledgebot run` builds it) on one "
        f"{backend} database; one emulator with a global limit of {RATE:g} requests/s "
        "(429 `global: true` past it); bot config `global_rate_per_second` = 50 (the "
        "default), so the processes must share the store's rate budget. APScheduler in each "
        "process fires its half at the minute. Time to deliver all is from the slot to the "
        f"last briefing reaching the emulator; the bound is {servers:,} / {RATE:g} per second "
        f"= {bound:g} s. The busiest second counts every non-interaction request the emulator "
        "accepted from the slot until every briefing arrived (and 2 s more). `/pledge show` "
        f"runs every {PACE * 1000:.0f} ms (open loop) in a shard-1 server against shard 1, "
        "the process holding the emulator's one gateway session, each for a pledge not asked "
        f"before ({generated:,} generated pledges plus data/): for {sizes.idle_seconds:g} s "
        f"just before the minute with both processes idle (baseline, after {WARMUP} unmeasured "
        "warm-up commands), then from the slot until every briefing arrived. Round trips are "
        "the emulator's clock from INTERACTION_CREATE to the callback."
    )
    return title, method


async def run(settings: Settings) -> Report:
    report = Report("fanout2", *describe(settings))
    summarise(report, await measure(settings))
    return report


async def measure(settings: Settings, database_url: str | None = None) -> Run:
    """The fan-out on a SQLite file made for it, or on the (empty) PostgreSQL database
    `database_url` names; the store is created and loaded the same way on both."""
    sizes = Sizes.of(settings)
    servers, idle_seconds, generated, bound = (
        sizes.servers,
        sizes.idle_seconds,
        sizes.generated,
        sizes.bound,
    )
    per_shard = servers // SHARDS
    with temp_dir("fanout2") as tmp:
        content = write_content(tmp / "content", generated)
        emu = Emulator(rate_limit_per_second=RATE)
        await emu.start()
        procs: list[MilestoneBot] = []
        try:
            shard_guilds, extra = add_split_guilds(emu, per_shard)
            user = emu.add_user("member")
            database: Path | str = database_url or tmp / "fanout2.db"
            await prepare_database(database, content)
            config = write_config(tmp / "fanout2.toml", database=database, content=content, emu=emu)
            started: list[float] = []
            for shard in range(SHARDS):  # one after the other: the last holds the gateway
                proc = MilestoneBot(
                    tmp,
                    config,
                    emu.token,
                    f"shard{shard}",
                    kind="pledgebot",
                    sync=False,
                    steered=settings.tiny,
                    extra_args=[
                        "--shard-count",
                        str(SHARDS),
                        "--shard-ids",
                        str(shard),
                        "--report-jobs",
                    ],
                )
                procs.append(proc)
                await proc.start()
                ready = await proc.milestone("ready", START_TIMEOUT)
                if ready.get("guilds") != servers + extra:
                    raise RuntimeError(f"shard {shard} ready with {ready.get('guilds')} guilds")
                await proc.milestone("engine_started", START_TIMEOUT)
                started.append(proc.since_spawn("engine_started"))
            rng = random.Random(20261203)
            slugs = [f"gen-{i:05d}" for i in range(generated)]
            rng.shuffle(slugs)
            member = Member(emu, shard_guilds[SHARDS - 1][0], user, slugs)
            await inject(member, Phase("warm-up"), WARMUP, lambda: False)

            lead = sizes.setup_seconds + idle_seconds + IDLE_GAP
            slot = await next_slot(lead, procs if settings.tiny else ())
            due = slot.due
            setup_until = slot.wall - idle_seconds - IDLE_GAP
            everyone = [g for side in shard_guilds for g in side]
            planned_ids = await add_briefings(
                database,
                [Planned(g, g.channels["briefings"], due.strftime("%H:%M")) for g in everyone],
                limit=25,
            )
            planned = await wait_planned(procs, per_shard, setup_until)
            if any(c != per_shard for c in planned):
                raise RuntimeError(
                    f"processes planned {planned} briefings, not {per_shard} each, "
                    f"{sizes.setup_seconds:g} s after creating them"
                )
            channels = [[g.channels["briefings"] for g in side] for side in shard_guilds]
            arrivals = Arrivals([c for side in channels for c in side])
            emu.on_message(arrivals)

            await sleep_until(setup_until)
            result, _ = await watch_fanout(
                emu,
                member,
                database,
                Run(
                    servers=servers,
                    extra_guilds=extra,
                    slot=slot,
                    bound=bound,
                    shard_channels=channels,
                    arrivals=arrivals,
                    planned=planned,
                    member=member,
                    started=started,
                ),
                late_wait=2.0,
            )
            if len(planned_ids) != servers:
                raise RuntimeError(f"created {len(planned_ids)} schedules, not {servers}")
        finally:
            await asyncio.gather(*(p.stop() for p in procs), return_exceptions=True)
            await emu.stop()
        result.logs = [log_findings(p) for p in procs]
    return result


def summarise(report: Report, run: Run) -> None:
    """The run's tables, targets and notes, added to `report` in that order."""
    delivered = Delivered.of(run)
    report.tables.append(per_process_table(run))
    report.tables.append(delivery_table(run, delivered))
    report.tables.append(requests_table(run, delivered))
    report.tables.append(show_table(run))
    report.tables.append(slowest_table(run, delivered))
    report.targets.extend(targets(run, delivered))
    report.notes.extend(notes(run))


@dataclass(frozen=True)
class Delivered:
    """What reached the channels, and how fast: the figures the tables and targets share."""

    due: int  # briefings due: one per channel
    firsts: list[float]  # each channel's first post (wall clock), earliest first
    duplicates: int  # channels with more than one post
    misses: int  # channels with none
    total: float  # seconds from the slot to the last channel's first post
    vs_bound: float  # `total` against the rate-limit bound
    busiest: int  # requests counted against the limit (and accepted) in the busiest second

    @classmethod
    def of(cls, run: Run) -> Delivered:
        counts = [
            len(run.arrivals.times.get(c.id, [])) for side in run.shard_channels for c in side
        ]
        firsts = sorted(t[0] for t in run.arrivals.times.values())
        total = (firsts[-1] - run.slot.wall) if firsts else float("inf")
        counted = [t for r, t in on_wall_clock(run) if limited(r) and r.status != 429]
        return cls(
            due=len(counts),
            firsts=firsts,
            duplicates=sum(1 for n in counts if n > 1),
            misses=sum(1 for n in counts if n == 0),
            total=total,
            vs_bound=ratio(total, run.bound),
            busiest=busiest_second(counted),
        )


def on_wall_clock(run: Run) -> list[tuple[RecordedRequest, float]]:
    """The requests from the slot on, each with its wall-clock time (the emulator's is
    `time.perf_counter()`)."""
    return [(r, r.time + run.perf_to_wall) for r in run.requests]


def per_process_table(run: Run) -> Table:
    slot = run.slot.wall
    timed = on_wall_clock(run)
    channel_shard = {c.id: i for i, side in enumerate(run.shard_channels) for c in side}
    rows: list[tuple[str, ...]] = []
    for shard, side in enumerate(run.shard_channels):
        got = sorted(run.arrivals.times[c.id][0] for c in side if c.id in run.arrivals.times)
        posts = [
            t
            for r, t in timed
            if r.method == "POST"
            and r.status == 200
            and channel_shard.get(_channel_id(r.path)) == shard
        ]
        rows.append(
            (
                f"shard {shard}" + (" (gateway session)" if shard == SHARDS - 1 else ""),
                str(run.planned[shard]),
                str(len(got)),
                f"{secs(got[0] - slot)} s" if got else "-",
                f"{secs(got[-1] - slot)} s" if got else "-",
                str(busiest_second(posts)),
                f"{secs(run.started[shard])} s",
            )
        )
    return Table(
        "Per process",
        (
            "process",
            "briefings planned",
            "delivered",
            "first post after the slot",
            "last post after the slot",
            "busiest second (its posts)",
            "spawn to engine started",
        ),
        rows,
    )


def delivery_table(run: Run, delivered: Delivered) -> Table:
    firsts = delivered.firsts
    rate = (len(firsts) - 1) / (firsts[-1] - firsts[0]) if len(firsts) > 1 else 0.0
    return Table(
        "Delivery",
        ("measure", "value"),
        [
            ("briefings due", str(delivered.due)),
            ("delivered (channels with a post)", str(len(firsts))),
            ("all delivered after", f"{secs(delivered.total)} s"),
            ("rate-limit bound", f"{secs(run.bound)} s"),
            ("ratio to bound", times(delivered.vs_bound)),
            ("achieved rate, first to last post", f"{rate:.1f} posts/s"),
            ("busiest second, every limited request", f"{delivered.busiest} requests"),
            ("429s received during the fan-out", str(run.limited_429)),
            ("429s received in the whole run", str(run.limited_429_total)),
            ("duplicates (channels with > 1 post)", str(delivered.duplicates)),
            ("misses (channels with no post)", str(delivered.misses)),
            (
                "deliveries recorded for the slot",
                ", ".join(f"{k} {v}" for k, v in sorted(run.states.items())) or "none",
            ),
        ],
    )


def requests_table(run: Run, delivered: Delivered) -> Table:
    by_route = Counter((route_of(r), r.status) for r in run.requests)
    return Table(
        "Requests both processes sent from the slot on (interactions included)",
        ("route", "status", "count", "per briefing"),
        [
            (route, str(status), str(n), f"{n / delivered.due:.2f}")
            for (route, status), n in sorted(by_route.items())
        ],
    )


def show_table(run: Run) -> Table:
    """`/pledge show` round trips idle, during the fan-out, and in its first second and after."""
    idle = Stats.of(run.idle.latencies())
    burst = Phase("during the fan-out: its first second")
    steady = Phase("during the fan-out: after its first second")
    for sample in run.fanout.samples:
        (burst if sample.sent - run.slot.wall < 1.0 else steady).samples.append(sample)
    rows = []
    for phase in (run.idle, run.fanout, burst, steady):
        if not phase.samples:
            continue
        stats = Stats.of(phase.latencies())
        rows.append(
            (
                phase.name,
                str(stats.count),
                ms(stats.min),
                ms(stats.median),
                ms(stats.p99),
                ms(stats.max),
                times(ratio(stats.median, idle.median)),
                times(ratio(stats.p99, idle.p99)),
                str(sum(not s.answered for s in phase.samples)),
            )
        )
    return Table(
        "/pledge show round trip, shard 1",
        (
            "phase",
            "n",
            "min ms",
            "median ms",
            "p99 ms",
            "max ms",
            "median ratio",
            "p99 ratio",
            "unanswered",
        ),
        rows,
    )


def slowest_table(run: Run, delivered: Delivered) -> Table:
    slowest = sorted(run.fanout.samples, key=lambda s: s.latency, reverse=True)[:SLOWEST]
    return Table(
        f"The {len(slowest)} slowest /pledge show during the fan-out",
        ("sent after the slot", "round trip ms", "briefings delivered by then"),
        [
            (
                f"{secs(s.sent - run.slot.wall)} s",
                ms(s.latency),
                str(sum(1 for t in delivered.firsts if t <= s.sent)),
            )
            for s in slowest
        ],
    )


def targets(run: Run, delivered: Delivered) -> list[Target]:
    idle = Stats.of(run.idle.latencies())
    during = Stats.of(run.fanout.latencies()) if run.fanout.samples else None
    p99_ratio = ratio(during.p99, idle.p99) if during is not None else float("inf")
    unanswered = sum(not s.answered for s in run.fanout.samples)
    busiest, duplicates, misses = delivered.busiest, delivered.duplicates, delivered.misses
    return [
        Target(
            "time to deliver all vs rate-limit bound",
            f"{secs(delivered.total)} s = {times(delivered.vs_bound)}",
            f"<= {TIME_TARGET}x ({secs(run.bound * TIME_TARGET)} s)",
            delivered.vs_bound <= TIME_TARGET,
        ),
        Target(
            "busiest second, both processes",
            f"{busiest} requests = {times(ratio(busiest, RATE))} the limit",
            f"<= {RATE:g} (1.00x)",
            busiest <= RATE,
        ),
        Target("429s received", str(run.limited_429), "0", run.limited_429 == 0),
        Target(
            "duplicates / misses", f"{duplicates} / {misses}", "0 / 0", duplicates + misses == 0
        ),
        Target(
            "/pledge show p99 during the fan-out vs idle",
            f"{ms(during.p99) if during else '-'} ms = {times(p99_ratio)}",
            f"<= {P99_TARGET}x ({ms(idle.p99 * P99_TARGET)} ms)",
            p99_ratio <= P99_TARGET and unanswered == 0,
        ),
    ]


def notes(run: Run) -> list[str]:
    found = [
        f"Briefings due at {run.slot.due:%H:%M} UTC; {run.servers:,} servers with a briefing, "
        f"{run.servers // SHARDS} per shard"
        + (
            f", plus {run.extra_guilds} servers without one (ids are timestamps, so servers "
            "were added until each shard had its half)"
            if run.extra_guilds
            else ""
        )
        + f"; gateway identifies: {run.identify_count}."
    ]
    deferred = sum(s.deferred for s in run.idle.samples + run.fanout.samples)
    private = sum(s.private for s in run.idle.samples + run.fanout.samples)
    found.append(
        f"/pledge show: {run.member.asked} asked in all (warm-up included), "
        + (
            f"{run.member.repeated} of them repeats (more asked than pledges)"
            if run.member.repeated
            else "every one for a different pledge"
        )
        + f"; {deferred} deferred, {private} private (error) answers."
    )
    if run.gave_up:
        found.append("Gave up waiting for every briefing (3x the bound + 60 s).")
    found.extend(log_notes(run.logs))
    return found


def log_notes(logs: list[tuple[int, int, list[str]]]) -> list[str]:
    """What each shard logged (from `log_findings`), and what a known discord.py warning means."""
    found = []
    for shard, (flagged, tracebacks, examples) in enumerate(logs):
        if flagged or tracebacks:
            found.append(
                f"shard {shard} logged {flagged} warnings/errors and {tracebacks} tracebacks, "
                "e.g. " + "; ".join(f"`{e}`" for e in examples)
            )
        else:
            found.append(f"shard {shard} logged no warnings or errors.")
    if any("Can't keep up" in e for _, _, examples in logs for e in examples):
        found.append(
            "discord.py's `Can't keep up ... N s behind` at about its heartbeat interval "
            "(41.25 s in the emulator) is its keep-alive thread racing an instant local ACK "
            "(`_last_send` is set in that thread only after the send completes, so an ACK "
            "handled first measures from the previous heartbeat), not a loop stalled for N s."
        )
    return found


def _channel_id(path: str) -> int:
    """The channel of `/channels/{id}/messages`, else 0."""
    parts = path.split("/")
    if len(parts) >= 4 and parts[1] == "channels" and parts[2].isdigit():
        return int(parts[2])
    return 0
