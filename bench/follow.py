"""Benchmark 8: follower alerts, 10,000 members following one pledge, one status change.

Every member of the bench server follows one pledge (`Follows.add`, through the store, as
`/follow pledge` does). A status change is then recorded through `Store.set_status` from
this process, as `python -m bot status set` records it from another; every bot process's
`AlertDispatcher` finds the change, claims each follower it owns (`(user_id >> 22) %
shard_count`) and DMs them once through the shared rate budget. Two phases a run:

- first DMs: no follower has a DM channel yet, so each alert is two requests (open the DM
  channel, `POST /users/@me/channels`, then post to it): 2 x the followers;
- channels known: a second status change of the same pledge, every DM channel already kept
  in the `followers` table: one request a follower.

The whole thing runs twice: one bot process, then two (`--shard-count 2 --shard-ids 0` /
`1`, the bot as `pledgebot run` builds it) on one SQLite database; each run starts from a
fresh emulator and database. Followers are created as members of the bench server before any
bot connects (Discord refuses DMs to users who share no server with the bot, 50007); for
two processes, users are created until each shard owns half of the followers.

Wall time is from just before the change is recorded to the last follower's first DM
reaching the emulator. The rate-limit bound is the requests the phase needs (2 or 1 per
follower) at Discord's 50 requests/s, the bound fanout and fanout2 use: the bot's own pace
(50 x `HEADROOM` = 46.5/s) is its choice within that bound and is reported beside it. While
the alerts go out, a member runs `/pledge show` every `PACE` s (open loop) against the process
holding the emulator's one gateway session, each time for another generated pledge; the
baseline is the same pace just before the change, with the processes idle. The bare
discord.py bot (`bench/botproc.py bare`) is measured on the same emulator first: its idle
`/pledge show` and its peak memory, for the processes' peak RSS.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bench.common import (
    PAUSE_RECORDED,
    Report,
    RigPauses,
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
from bench.fanout import route_of
from bench.fanout2 import (
    Member,
    Phase,
    busiest_second,
    inject,
    limited,
    log_findings,
    log_notes,
)
from bench.fixtures import prepare_database, temp_dir, write_config, write_content
from bench.procs import Memory, MilestoneBot
from bot.config import Config
from bot.follows.follows import Follows
from bot.local import ChannelState, Emulator, GuildState, RecordedRequest, UserState
from bot.rate_budget import HEADROOM
from bot.store import Store

RATE = 50.0
TIME_TARGET = 1.1
P99_TARGET = 2.0
PACE = 0.05  # seconds between /pledge show interactions (20 a second), as fanout2
WARMUP = 10
START_TIMEOUT = 180.0
SLOWEST = 3
OPEN_DM = "POST /users/@me/channels"
POST = "POST /channels/{id}/messages"
STATUSES = ("in-progress", "partly-delivered")  # the first change, then the second
PHASES = ("first DMs (every channel opened)", "every channel known")


@dataclass(frozen=True)
class Sizes:
    members: int  # followers
    idle_seconds: float
    generated: int  # pledges for /pledge show to ask about
    late: float  # seconds to wait after the last first DM: late duplicates would show up here

    @classmethod
    def of(cls, settings: Settings) -> Sizes:
        return settings.size(
            cls(10_000, 20.0, 2_000, 2.0),
            quick=cls(1_000, 8.0, 1_000, 2.0),
            tiny=cls(24, 0.5, 50, 0.5),
        )


class DmLog:
    """Every DM the bot posts to a follower, with when it reached the emulator (wall clock);
    `wait_phase` is set once every follower has one since `start_phase`."""

    def __init__(self, followers: Sequence[UserState]) -> None:
        self.followers = {u.id for u in followers}
        self.times: dict[int, list[float]] = {}
        self.phase_start = float("inf")
        self.reached: set[int] = set()
        self.all_arrived = asyncio.Event()

    def start_phase(self, at: float) -> None:
        self.phase_start = at
        self.reached = set()
        self.all_arrived.clear()

    def __call__(self, channel: ChannelState, message: object) -> None:
        user = channel.recipient
        if channel.guild is not None or user is None or user.id not in self.followers:
            return
        now = time.time()
        self.times.setdefault(user.id, []).append(now)
        if now >= self.phase_start:
            self.reached.add(user.id)
            if len(self.reached) == len(self.followers):
                self.all_arrived.set()

    def between(self, start: float, end: float) -> dict[int, list[float]]:
        """Each follower's DMs in [start, end)."""
        return {
            user: [t for t in self.times.get(user, []) if start <= t < end]
            for user in self.followers
        }


@dataclass
class PhaseRun:
    """One status change and its alerts."""

    name: str
    followers: int
    known_before: int  # followers whose DM channel the store kept before the change
    recorded_at: float  # wall clock, just before `set_status`
    event_id: int
    idle: Phase
    during: Phase
    dms: dict[int, list[float]] = field(default_factory=dict)  # user -> DMs in the phase
    requests: list[RecordedRequest] = field(default_factory=list)
    perf_to_wall: float = 0.0
    limited_429: int = 0
    states: Counter[str] = field(default_factory=Counter)
    gave_up: bool = False
    channel_owner: dict[int, int] = field(default_factory=dict)  # DM channel -> user
    load: tuple[float, float] = (0.0, 0.0)  # 1-minute load average at the change and the end
    rig_pauses: list[float] = field(default_factory=list)  # this process's long collections

    @property
    def required(self) -> int:
        """The requests the phase needs: a post per follower, an open per unknown channel."""
        return self.followers + (self.followers - self.known_before)

    @property
    def bound(self) -> float:
        return self.required / RATE

    @property
    def paced(self) -> float:
        return self.required / (RATE * HEADROOM)


@dataclass(frozen=True)
class Delivered:
    """What reached the followers, and how fast."""

    firsts: list[float]  # each follower's first DM in the phase (wall clock), earliest first
    duplicates: int  # followers with more than one DM in the phase
    misses: int  # followers with none
    total: float  # seconds from the change to the last follower's first DM
    vs_bound: float
    vs_paced: float
    busiest: int  # accepted limited requests in the busiest second
    request_rate: float  # accepted limited requests a second, first to last
    routes: Counter[tuple[str, int]]

    @classmethod
    def of(cls, phase: PhaseRun) -> Delivered:
        counts = [len(t) for t in phase.dms.values()]
        firsts = sorted(t[0] for t in phase.dms.values() if t)
        total = (firsts[-1] - phase.recorded_at) if len(firsts) == phase.followers else float("inf")
        counted = [t for r, t in on_wall_clock(phase) if limited(r) and r.status != 429]
        return cls(
            firsts=firsts,
            duplicates=sum(1 for n in counts if n > 1),
            misses=sum(1 for n in counts if n == 0),
            total=total,
            vs_bound=ratio(total, phase.bound),
            vs_paced=ratio(total, phase.paced),
            busiest=busiest_second(counted),
            request_rate=_rate(sorted(counted)),
            routes=Counter((route_of(r), r.status) for r in phase.requests),
        )

    @property
    def rate(self) -> float:
        """DMs a second, first to last."""
        return _rate(self.firsts)


def _rate(ordered: Sequence[float]) -> float:
    """Events a second from the first to the last of `ordered` times."""
    span = ordered[-1] - ordered[0] if len(ordered) > 1 else 0.0
    return (len(ordered) - 1) / span if span > 0 else 0.0


def on_wall_clock(phase: PhaseRun) -> list[tuple[RecordedRequest, float]]:
    """The phase's requests, each with its wall-clock time (the emulator's is perf_counter)."""
    return [(r, r.time + phase.perf_to_wall) for r in phase.requests]


@dataclass
class ProcessRun:
    """One, or two, bot processes through both phases."""

    processes: int
    followers: list[UserState]
    extra_users: int
    guild: GuildState
    member: Member
    phases: list[PhaseRun] = field(default_factory=list)
    bare_idle: Phase = field(default_factory=lambda: Phase("bare bot, idle"))
    bare_memory: Memory | None = None
    started: list[float] = field(default_factory=list)  # spawn to engine_started, s
    memory_started: list[Memory] = field(default_factory=list)
    memory_end: list[Memory] = field(default_factory=list)
    logs: list[tuple[int, int, list[str]]] = field(default_factory=list)
    identify_count: int = 0
    setup: str = ""
    stray_dms: int = 0  # DMs to followers outside every phase's window

    @property
    def label(self) -> str:
        return "1 process" if self.processes == 1 else f"{self.processes} processes"

    def owner(self, user_id: int) -> int:
        """The process that DMs `user_id`: `(user_id >> 22) % processes`."""
        return (user_id >> 22) % self.processes

    def process_name(self, index: int) -> str:
        if self.processes == 1:
            return "the bot"
        gateway = " (gateway session)" if index == self.processes - 1 else ""
        return f"shard {index}{gateway}"


def describe(settings: Settings) -> tuple[str, str]:
    sizes = Sizes.of(settings)
    n = sizes.members
    title = f"Follower alerts: {n:,} members follow one pledge, one status change"
    method = (
        f"{n:,} members of one server each follow the same pledge (`Follows.add`). A status "
        "change is recorded through `Store.set_status` from the benchmark's process (as "
        "`python -m bot status set` does from its own); the bot's `AlertDispatcher` DMs each "
        "follower once through the shared rate budget. Phase 1, first DMs: no DM channel is "
        f"known, so each alert is two requests (`{OPEN_DM}`, then the post): {2 * n:,}. "
        f"Phase 2, a second change of the same pledge with every channel kept: {n:,}. Run with "
        "one bot process, then with two (`--shard-count 2 --shard-ids 0` / `1`, members split "
        "by `(user_id >> 22) % 2`, half each) on one SQLite database, each run on a fresh "
        f"emulator (global limit {RATE:g} requests/s, 429 `global: true` past it) and "
        "database. Wall time is from just before the change is recorded to the last "
        f"follower's first DM; the rate-limit bound is the requests needed at {RATE:g}/s "
        f"(Discord's limit, as in fanout and fanout2); the bot's own pace, {RATE:g} x "
        f"{HEADROOM} = {RATE * HEADROOM:g}/s, is reported beside it. Duplicates: followers "
        f"with more than one DM from the change to {sizes.late:g} s after the last first DM; "
        "missed: followers with none. `/pledge show` runs every "
        f"{PACE * 1000:.0f} ms (open loop) against the process holding the emulator's one "
        f"gateway session, each for another of {sizes.generated:,} generated pledges: "
        f"{sizes.idle_seconds:g} s just before each change (idle baseline), then until every "
        "follower has the DM. The bare discord.py bot runs first on the same emulator "
        f"({sizes.idle_seconds:g} s of the same `/pledge show`, answered with a constant), "
        "for its round trips and its peak memory (VmHWM)."
    )
    return title, method


async def run(settings: Settings) -> Report:
    report = Report("follow", *describe(settings))
    runs = [await measure(settings, processes) for processes in (1, 2)]
    summarise(report, runs, Sizes.of(settings))
    return report


def add_followers(emu: Emulator, count: int, processes: int) -> tuple[list[UserState], int]:
    """Users (members of every server so far) until each process owns `count / processes`
    of them; returns the followers and how many more users were made (following nothing)."""
    per_process = count // processes
    chosen: list[list[UserState]] = [[] for _ in range(processes)]
    extra = 0
    while any(len(side) < per_process for side in chosen):
        user = emu.add_user(f"follower{sum(map(len, chosen)) + extra:05d}")
        side = chosen[(user.id >> 22) % processes]
        if len(side) < per_process:
            side.append(user)
        else:
            extra += 1
    return [u for side in chosen for u in side], extra


async def add_follows(database: Path, users: Sequence[UserState]) -> str:
    """Every user follows the first pledge of the shipped content; returns its slug."""
    store = await Store.open(database)
    try:
        slug = next(p.slug for p in await store.pledges() if not p.slug.startswith("gen-"))
        follows = Follows(store.db)
        for user in users:
            outcome = await follows.add(user.id, "pledge", slug)
            if outcome != "added":
                raise RuntimeError(f"follow for {user.id}: {outcome}")
        return slug
    finally:
        await store.close()


async def measure(settings: Settings, processes: int) -> ProcessRun:
    sizes = Sizes.of(settings)
    with temp_dir(f"follow{processes}") as tmp:
        content = write_content(tmp / "content", sizes.generated)
        emu = Emulator(rate_limit_per_second=RATE)
        await emu.start()
        procs: list[MilestoneBot] = []
        try:
            guild = emu.add_guild("Followers", ("general",))
            made = time.monotonic()
            followers, extra = add_followers(emu, sizes.members, processes)
            asker = emu.add_user("member")
            users_took = time.monotonic() - made
            database = tmp / "follow.db"
            await prepare_database(database, content)
            made = time.monotonic()
            slug = await add_follows(database, followers)
            follows_took = time.monotonic() - made
            slugs = [f"gen-{i:05d}" for i in range(sizes.generated)]
            random.Random(20261204).shuffle(slugs)
            run = ProcessRun(processes, followers, extra, guild, Member(emu, guild, asker, slugs))
            run.setup = (
                f"{len(followers) + extra + 1:,} users created in the emulator in "
                f"{users_took:.2f} s, {len(followers):,} follows added through the store in "
                f"{follows_took:.1f} s (setup, not measured); followed pledge `{slug}`"
            )
            config = write_config(tmp / "follow.toml", database=database, content=content, emu=emu)
            await measure_bare(tmp, emu, config, run, sizes.idle_seconds)
            for index in range(processes):  # one after the other: the last holds the gateway
                shard_args = ["--shard-count", str(processes), "--shard-ids", str(index)]
                proc = MilestoneBot(
                    tmp,
                    config,
                    emu.token,
                    f"follow{processes}-{index}",
                    kind="pledgebot",
                    sync=False,
                    extra_args=shard_args if processes > 1 else [],
                )
                procs.append(proc)
                await proc.start()
                ready = await proc.milestone("ready", START_TIMEOUT)
                if ready.get("guilds") != 1:
                    raise RuntimeError(f"process {index} ready with {ready.get('guilds')} guilds")
                await proc.milestone("engine_started", START_TIMEOUT)
                run.started.append(proc.since_spawn("engine_started"))
            run.memory_started = [p.memory() for p in procs]
            await inject(run.member, Phase("warm-up"), WARMUP, lambda: False)
            log = DmLog(followers)
            emu.on_message(log)
            async with RigPauses() as pauses:
                for name, status in zip(PHASES, STATUSES, strict=True):
                    phase = await measure_phase(emu, database, run, log, name, slug, status, sizes)
                    phase.rig_pauses = pauses.between(phase.recorded_at, time.time())
                    run.phases.append(phase)
            run.memory_end = [p.memory() for p in procs]
            run.identify_count = emu.identify_count
            await asyncio.sleep(sizes.late)
            in_phases = sum(len(t) for p in run.phases for t in p.dms.values())
            run.stray_dms = sum(len(t) for t in log.times.values()) - in_phases
        finally:
            await asyncio.gather(*(p.stop() for p in procs), return_exceptions=True)
            await emu.stop()
        run.logs = [log_findings(p) for p in procs]
    return run


async def measure_bare(
    tmp: Path, emu: Emulator, config: Path, run: ProcessRun, idle_seconds: float
) -> None:
    """The bare bot on the same emulator: idle `/pledge show` and its memory."""
    async with MilestoneBot(tmp, config, emu.token, "bare", kind="bare", sync=True) as proc:
        ready = await proc.milestone("ready", START_TIMEOUT)
        if ready.get("guilds") != 1:
            raise RuntimeError(f"bare: ready with {ready.get('guilds')} guilds")
        member = Member(emu, run.guild, run.member.user, run.member.slugs)
        await inject(member, Phase("warm-up"), WARMUP, lambda: False)
        until = time.time() + idle_seconds
        await inject(member, run.bare_idle, None, lambda: time.time() >= until)
        run.bare_memory = proc.memory()


async def measure_phase(
    emu: Emulator,
    database: Path,
    run: ProcessRun,
    log: DmLog,
    name: str,
    slug: str,
    status: str,
    sizes: Sizes,
) -> PhaseRun:
    idle = Phase(f"{name}: idle, before the change")
    until = time.time() + sizes.idle_seconds
    await inject(run.member, idle, None, lambda: time.time() >= until)
    store = await Store.open(database)
    try:
        known = int(
            await store.scalar("SELECT count(*) FROM followers WHERE dm_channel_id IS NOT NULL")
        )
        first_request, limited_before = len(emu.requests), emu.rate_limited_count
        load_before = os.getloadavg()[0]
        recorded_at = time.time()
        log.start_phase(recorded_at)
        await store.set_status(
            slug,
            status,
            note="Benchmark: a status change for every follower",
            changed_by="operator:bench",
            evidence_url="https://example.org/evidence",
        )
        event_id = int(await store.scalar("SELECT max(id) FROM pledge_events"))
    finally:
        await store.close()
    phase = PhaseRun(
        name, len(run.followers), known, recorded_at, event_id, idle, Phase(f"{name}: during")
    )
    deadline = recorded_at + phase.paced * 3 + 60

    def done() -> bool:
        return log.all_arrived.is_set() or time.time() >= deadline

    await inject(run.member, phase.during, None, done)
    phase.gave_up = not log.all_arrived.is_set()
    phase.load = (load_before, os.getloadavg()[0])
    await asyncio.sleep(sizes.late)
    phase.dms = log.between(recorded_at, time.time())
    phase.requests = emu.requests[first_request:]
    phase.perf_to_wall = time.time() - time.perf_counter()
    phase.limited_429 = emu.rate_limited_count - limited_before
    phase.states = await alert_states(database, event_id)
    for user in run.followers:
        channel = emu.dm_channel(user)
        if channel is not None:
            phase.channel_owner[channel.id] = user.id
    return phase


async def alert_states(database: Path, event_id: int) -> Counter[str]:
    """The event's member alerts by state (`alert_deliveries`)."""
    store = await Store.open(database)
    try:
        rows = await store.rows(
            "SELECT state, count(*) FROM alert_deliveries WHERE recipient = 'member' "
            "AND event_id = ? GROUP BY state",
            (event_id,),
        )
    finally:
        await store.close()
    return Counter({str(row[0]): int(row[1]) for row in rows})


# -- the report -----------------------------------------------------------------------


def summarise(report: Report, runs: Sequence[ProcessRun], sizes: Sizes) -> None:
    labelled = [(f"{r.label}: {p.name}", r, p, Delivered.of(p)) for r in runs for p in r.phases]
    report.tables.append(delivery_table(labelled))
    report.tables.append(requests_table(labelled, sizes.late))
    report.tables.append(per_process_table(labelled))
    report.tables.append(show_table(runs))
    report.tables.append(slowest_table(labelled))
    report.tables.append(memory_table(runs))
    for label, _, phase, delivered in labelled:
        report.targets.extend(targets(label, phase, delivered))
    report.notes.extend(notes(runs, labelled))


Labelled = tuple[str, ProcessRun, PhaseRun, Delivered]


def delivery_table(labelled: Sequence[Labelled]) -> Table:
    def states(phase: PhaseRun) -> str:
        return ", ".join(f"{k} {v}" for k, v in sorted(phase.states.items())) or "none"

    measures: list[tuple[str, ...]] = []

    def row(title: str, value: Callable[[PhaseRun, Delivered], object]) -> None:
        measures.append((title, *(str(value(p, d)) for _, _, p, d in labelled)))

    row("followers", lambda p, d: p.followers)
    row("DM channels kept before the change", lambda p, d: p.known_before)
    row("requests needed (opens + posts)", lambda p, d: p.required)
    row(f"rate-limit bound (at {RATE:g}/s)", lambda p, d: f"{secs(p.bound)} s")
    row(f"the bot's pace (at {RATE * HEADROOM:g}/s)", lambda p, d: f"{secs(p.paced)} s")
    row("followers with a DM", lambda p, d: len(d.firsts))
    row(
        "first DM after the change",
        lambda p, d: f"{secs(d.firsts[0] - p.recorded_at)} s" if d.firsts else "-",
    )
    row("all delivered after (wall time)", lambda p, d: f"{secs(d.total)} s")
    row("ratio to the rate-limit bound", lambda p, d: times(d.vs_bound))
    row("ratio to the bot's pace", lambda p, d: times(d.vs_paced))
    row("achieved rate, first to last DM", lambda p, d: f"{d.rate:.1f} DMs/s")
    row(
        "limited requests accepted a second, first to last",
        lambda p, d: f"{d.request_rate:.1f} (pace {RATE * HEADROOM:g})",
    )
    row("busiest second, every limited request", lambda p, d: d.busiest)
    row("429s received", lambda p, d: p.limited_429)
    row("duplicates (followers with > 1 DM)", lambda p, d: d.duplicates)
    row("missed (followers with no DM)", lambda p, d: d.misses)
    row("alert_deliveries for the change", lambda p, d: states(p))
    row(
        f"emulator process: collections >= {PAUSE_RECORDED * 1000:.0f} ms (longest)",
        lambda p, d: f"{len(p.rig_pauses)} ({ms(max(p.rig_pauses, default=0.0))} ms)",
    )
    return Table("Delivery", ("measure", *(label for label, *_ in labelled)), measures)


def requests_table(labelled: Sequence[Labelled], late: float) -> Table:
    """Every request the bots sent from the change until `late` s after the last first DM."""
    keys = sorted({key for *_, d in labelled for key in d.routes})
    rows = [
        (route, str(status), *(str(d.routes.get((route, status), 0)) for *_, d in labelled))
        for route, status in keys
    ]
    per_follower = [
        sum(n for (route, status), n in d.routes.items() if status != 429 and _limited(route))
        / p.followers
        for _, _, p, d in labelled
    ]
    rows.append(
        ("limited requests accepted, per follower", "", *(f"{n:.2f}" for n in per_follower))
    )
    return Table(
        f"Requests, from the change to {late:g} s after the last first DM (interactions included)",
        ("route", "status", *(label for label, *_ in labelled)),
        rows,
    )


def _limited(route: str) -> bool:
    return not route.split(" ", 1)[-1].startswith(("/interactions/", "/webhooks/"))


def per_process_table(labelled: Sequence[Labelled]) -> Table:
    rows: list[tuple[str, ...]] = []
    for label, run, phase, _ in labelled:
        timed = on_wall_clock(phase)
        for index in range(run.processes):
            owned = [u for u in phase.dms if run.owner(u) == index]
            got = sorted(phase.dms[u][0] for u in owned if phase.dms[u])
            mine = [(r, t) for r, t in timed if _owner_of(run, phase, r) == index]
            opens = sum(1 for r, _ in mine if route_of(r) == OPEN_DM and r.status == 200)
            posts = sum(1 for r, _ in mine if route_of(r) == POST and r.status == 200)
            accepted = [t for r, t in mine if r.status != 429]
            rows.append(
                (
                    label,
                    run.process_name(index),
                    str(len(owned)),
                    str(len(got)),
                    str(opens),
                    str(posts),
                    f"{secs(got[0] - phase.recorded_at)} s" if got else "-",
                    f"{secs(got[-1] - phase.recorded_at)} s" if got else "-",
                    str(busiest_second(accepted)),
                )
            )
    return Table(
        "Per process",
        (
            "run and phase",
            "process",
            "followers it owns",
            "with a DM",
            "channels opened",
            "DMs posted",
            "first DM after the change",
            "last DM after the change",
            "busiest second (its requests)",
        ),
        rows,
    )


def _owner_of(run: ProcessRun, phase: PhaseRun, request: RecordedRequest) -> int | None:
    """Which process a DM request was for: by the recipient, or the DM channel's."""
    route = route_of(request)
    user: int | None = None
    if route == OPEN_DM and isinstance(request.json, dict):
        recipient = str(request.json.get("recipient_id", ""))
        user = int(recipient) if recipient.isdigit() else None
    elif route == POST:
        user = phase.channel_owner.get(int(request.path.split("/")[2]))
    return None if user is None else run.owner(user)


def show_table(runs: Sequence[ProcessRun]) -> Table:
    rows: list[tuple[str, ...]] = []
    for run in runs:
        bare = Stats.of(run.bare_idle.latencies())
        rows.append(show_row(run.label, run.bare_idle, bare, bare))
        for phase in run.phases:
            idle = Stats.of(phase.idle.latencies())
            for measured in (phase.idle, phase.during):
                if measured.samples:
                    rows.append(show_row(run.label, measured, idle, bare))
    return Table(
        "/pledge show round trip, against the process holding the gateway session",
        (
            "run",
            "phase",
            "n",
            "min ms",
            "median ms",
            "p99 ms",
            "max ms",
            "median vs idle",
            "p99 vs idle",
            "p99 vs bare idle",
            "unanswered",
        ),
        rows,
    )


def show_row(label: str, phase: Phase, idle: Stats, bare: Stats) -> tuple[str, ...]:
    stats = Stats.of(phase.latencies())
    return (
        label,
        phase.name,
        str(stats.count),
        ms(stats.min),
        ms(stats.median),
        ms(stats.p99),
        ms(stats.max),
        times(ratio(stats.median, idle.median)),
        times(ratio(stats.p99, idle.p99)),
        times(ratio(stats.p99, bare.p99)),
        str(sum(not s.answered for s in phase.samples)),
    )


def slowest_table(labelled: Sequence[Labelled]) -> Table:
    rows = []
    for label, _, phase, delivered in labelled:
        slowest = sorted(phase.during.samples, key=lambda s: s.latency, reverse=True)[:SLOWEST]
        rows += [
            (
                label,
                f"{secs(s.sent - phase.recorded_at)} s",
                ms(s.latency),
                str(sum(1 for t in delivered.firsts if t <= s.sent)),
            )
            for s in slowest
        ]
    return Table(
        f"The {SLOWEST} slowest /pledge show during each phase's alerts",
        ("run and phase", "sent after the change", "round trip ms", "followers with a DM by then"),
        rows,
    )


def memory_table(runs: Sequence[ProcessRun]) -> Table:
    rows: list[tuple[str, ...]] = []
    for run in runs:
        bare = run.bare_memory
        if bare is not None:
            rows.append((run.label, "bare bot", "-", mib(bare.rss_kib), mib(bare.hwm_kib), "1.00x"))
        for index, (start, end) in enumerate(zip(run.memory_started, run.memory_end, strict=True)):
            rows.append(
                (
                    run.label,
                    f"pledgebot, {run.process_name(index)}",
                    f"{secs(run.started[index])} s",
                    f"{mib(start.rss_kib)} -> {mib(end.rss_kib)}",
                    mib(end.hwm_kib),
                    times(ratio(end.hwm_kib, bare.hwm_kib)) if bare is not None else "-",
                )
            )
    return Table(
        "Bot processes: start-up and memory (MiB)",
        (
            "run",
            "process",
            "spawn to engine started",
            "VmRSS (bare: after its idle phase; pledgebot: started -> after both phases)",
            "VmHWM (peak)",
            "VmHWM vs bare",
        ),
        rows,
    )


def targets(label: str, phase: PhaseRun, delivered: Delivered) -> list[Target]:
    idle = Stats.of(phase.idle.latencies())
    during = Stats.of(phase.during.latencies()) if phase.during.samples else None
    p99_ratio = ratio(during.p99, idle.p99) if during is not None else float("inf")
    unanswered = sum(not s.answered for s in phase.during.samples)
    duplicates, misses = delivered.duplicates, delivered.misses
    return [
        Target(
            f"{label}: time to DM all vs rate-limit bound",
            f"{secs(delivered.total)} s = {times(delivered.vs_bound)} "
            f"({times(delivered.vs_paced)} the bot's pace)",
            f"<= {TIME_TARGET}x ({secs(phase.bound * TIME_TARGET)} s)",
            delivered.vs_bound <= TIME_TARGET,
        ),
        Target(f"{label}: 429s received", str(phase.limited_429), "0", phase.limited_429 == 0),
        Target(
            f"{label}: duplicates / missed",
            f"{duplicates} / {misses}",
            "0 / 0",
            duplicates + misses == 0,
        ),
        Target(
            f"{label}: /pledge show p99 during the alerts vs idle",
            f"{ms(during.p99) if during else '-'} ms = {times(p99_ratio)}",
            f"<= {P99_TARGET}x ({ms(idle.p99 * P99_TARGET)} ms)",
            p99_ratio <= P99_TARGET and unanswered == 0,
        ),
    ]


def notes(runs: Sequence[ProcessRun], labelled: Sequence[Labelled]) -> list[str]:
    found = []
    for run in runs:
        shard = (run.guild.id >> 22) % run.processes
        found.append(
            f"{run.label}: {run.setup}"
            + (
                f"; {run.extra_users:,} more users follow nothing (ids are timestamps, so users "
                "were added until each process owned its half)"
                if run.extra_users
                else ""
            )
            + (
                f"; the bench server is on shard {shard}, and the emulator sends every "
                "interaction over its one gateway session, held by the last process started"
                if run.processes > 1
                else ""
            )
            + f"; gateway identifies: {run.identify_count} (the bare bot's included)."
        )
        asked = run.member.asked
        repeated = run.member.repeated
        found.append(
            f"{run.label}: /pledge show asked {asked:,} times of pledgebot (warm-up included)"
            + (
                f", {repeated:,} of them repeats of a pledge asked {len(run.member.slugs):,} "
                f"asks earlier ({cache_note(len(run.member.slugs))})"
                if repeated
                else ", every one for a different pledge"
            )
            + "."
        )
        if run.stray_dms:
            found.append(f"{run.label}: {run.stray_dms} DMs to followers outside both phases.")
        for line in log_notes(run.logs):
            if run.processes == 1:
                line = line.replace("shard 0 logged", "the bot logged")
            found.append(f"{run.label}: {line}")
    loads = "; ".join(
        f"{label}: {phase.load[0]:.1f} -> {phase.load[1]:.1f}" for label, _, phase, _ in labelled
    )
    found.append(
        f"Machine load (1-minute load average at the change -> once every DM arrived, on "
        f"{len(os.sched_getaffinity(0))} CPUs): {loads}."
    )
    for label, _, phase, _ in labelled:
        if phase.gave_up:
            found.append(f"{label}: gave up waiting for every DM (3x the bot's pace + 60 s).")
    return found


def cache_note(cycle: int) -> str:
    """Whether a pledge asked again `cycle` asks later can come from the answer cache."""
    size = Config().answer_cache
    if cycle > size:
        return (
            f"the answer cache holds {size:,} answers and is emptied when full, so none is "
            "answered from it"
        )
    return f"the answer cache holds {size:,} answers, so repeats may be answered from it"
