"""Benchmark 5: start-up with 10,000 briefings in the database, against a bare bot.

One emulator serves 1,000 servers; the database holds the shipped content and 10 daily
briefings per server, all due 2 to 14 hours from now (so nothing is caught up or fires
while we measure). Each start is a fresh process (`bench/botproc.py`); starts alternate
between the bots. One unmeasured start of each first: pledgebot's first start syncs its
commands and stores their hash, like any deployment's first run, and both warm the page cache.
"""

from __future__ import annotations

import statistics
from pathlib import Path

from bench.common import (
    DATA_DIR,
    GUILD_READY_TIMEOUT,
    Report,
    Settings,
    Stats,
    Table,
    Target,
    ratio,
    secs,
    times,
)
from bench.fixtures import (
    Planned,
    add_guilds,
    prepare_database,
    quiet_times,
    temp_dir,
    write_config,
)
from bench.procs import MilestoneBot
from bot.local import Emulator

TARGET = 1.5
GUILDS = 1_000
SCHEDULES = 10_000


async def start_once(
    kind: str,
    config: Path,
    emu: Emulator,
    workdir: Path,
    name: str,
    expect_guilds: int,
    expect_jobs: int,
) -> dict[str, float]:
    """Seconds from spawn to each milestone of one start."""
    async with MilestoneBot(workdir, config, emu.token, name, kind=kind, sync=False) as proc:
        ready = await proc.milestone("ready", 180)
        if ready["guilds"] != expect_guilds:
            raise RuntimeError(
                f"{kind}: ready with {ready['guilds']} of {expect_guilds} guilds; "
                "raise GUILD_READY_TIMEOUT"
            )
        marks = {"ready": proc.since_spawn("ready"), "built": proc.since_spawn("built")}
        if kind == "pledgebot":
            started = await proc.milestone("engine_started", 300)
            if started["jobs"] != expect_jobs:
                raise RuntimeError(f"planned {started['jobs']} jobs, expected {expect_jobs}")
            marks["engine_started"] = proc.since_spawn("engine_started")
    return marks


async def run(settings: Settings) -> Report:
    guilds = settings.size(GUILDS, quick=200, tiny=10)
    schedules = settings.size(SCHEDULES, quick=2_000, tiny=20)
    repeats = settings.size(5, quick=2, tiny=1)
    report = Report(
        "startup",
        f"Start-up with {schedules:,} briefings",
        f"Seconds from spawning the process to on_ready (both bots) and to pledgebot's "
        f"`engine_started` (every job planned), with {guilds:,} servers in the emulator and "
        f"{schedules:,} active briefings ({schedules // guilds} per server) in the database. "
        f"guild_ready_timeout={GUILD_READY_TIMEOUT} s for both bots (the last "
        f"{GUILD_READY_TIMEOUT} s before on_ready is that wait). {repeats} starts per "
        "configuration, alternated, after one unmeasured start each. A third configuration, "
        "pledgebot with no briefings, separates the cost of planning from the rest. The "
        f"target must hold in every one of the {repeats} starts: each start's "
        "engine_started against the bare bot's median on_ready. The machine has 2 CPUs and "
        "other work may run meanwhile, so single starts are noisy.",
    )
    with temp_dir("startup") as tmp:
        emu = Emulator()
        await emu.start()
        try:
            servers = add_guilds(emu, guilds, ("general", "briefings"))
            # Up to 720 different times of day, as moderators pick their own.
            per_server = schedules // guilds
            times_of_day = iter(quiet_times(per_server * guilds))
            planned = [
                Planned(g, g.channels["briefings"], next(times_of_day))
                for g in servers
                for _ in range(per_server)
            ]
            full_db, empty_db = tmp / "briefings.db", tmp / "empty.db"
            await prepare_database(full_db, DATA_DIR, planned)
            await prepare_database(empty_db, DATA_DIR)

            def config(name: str, database: Path) -> Path:
                return write_config(
                    tmp / f"{name}.toml", database=database, content=DATA_DIR, emu=emu
                )

            configs = {
                "bare discord.py": ("bare", config("bare", empty_db), 0),
                f"pledgebot, {schedules:,} briefings": (
                    "pledgebot",
                    config("full", full_db),
                    schedules,
                ),
                "pledgebot, no briefings": ("pledgebot", config("empty", empty_db), 0),
            }
            runs: dict[str, list[dict[str, float]]] = {label: [] for label in configs}
            for attempt in range(repeats + 1):
                for label, (kind, config_path, jobs) in configs.items():
                    name = f"{config_path.stem}-{attempt}"
                    marks = await start_once(kind, config_path, emu, tmp, name, guilds, jobs)
                    if attempt > 0:
                        runs[label].append(marks)
        finally:
            await emu.stop()
    summarise(report, runs)
    return report


def summarise(report: Report, runs: dict[str, list[dict[str, float]]]) -> None:
    labels = list(runs)
    bare = Stats.of([m["ready"] for m in runs[labels[0]]])
    rows: list[tuple[str, ...]] = []
    for label, marks in runs.items():
        for milestone in ("ready", "engine_started"):
            values = [m[milestone] for m in marks if milestone in m]
            if not values:
                continue
            stats = Stats.of(values)
            built = statistics.median(m["built"] for m in marks)
            rows.append(
                (
                    label,
                    "on_ready" if milestone == "ready" else "engine_started",
                    str(stats.count),
                    secs(built),
                    secs(stats.min),
                    secs(stats.median),
                    secs(stats.max),
                    times(ratio(stats.median, bare.median)),
                    f"{stats.median - bare.median:+.2f}",
                )
            )
    report.tables.append(
        Table(
            "Seconds from spawn",
            (
                "bot",
                "milestone",
                "n",
                "imports done",
                "min",
                "median",
                "max",
                "ratio to bare on_ready",
                "minus bare (s)",
            ),
            rows,
        )
    )
    # The target holds in every start, not only in the median one: each start of the full
    # pledgebot against the bare bot's median on_ready (measured in the same run).
    started = [m["engine_started"] for m in runs[labels[1]]]
    full = Stats.of(started)
    each = [ratio(value, bare.median) for value in started]
    worst = max(each)
    report.tables.append(
        Table(
            "Each start of pledgebot with briefings",
            ("start", "engine_started (s)", "ratio to bare median on_ready", "within target"),
            [
                (str(i), secs(value), times(r), "yes" if r <= TARGET else "NO")
                for i, (value, r) in enumerate(zip(started, each, strict=True), 1)
            ],
        )
    )
    report.targets.append(
        Target(
            f"{labels[1]}: engine_started vs bare on_ready, every start (worst; median)",
            f"worst {secs(full.max)} s = {times(worst)}; "
            f"median {secs(full.median)} s = {times(ratio(full.median, bare.median))}",
            f"<= {TARGET}x ({secs(bare.median * TARGET)} s) in all {len(started)}",
            worst <= TARGET,
        )
    )
