"""Benchmark 4: resident memory with 2,500 servers, against a bare bot with the same servers.

Each bot is its own process (`bench/botproc.py`), so the emulator's memory is not counted;
VmRSS and VmHWM come from /proc/PID/status. Every run gets a fresh emulator and database,
so each does the same work (pledgebot: load content, sync commands, plan its jobs). Memory
is read once the bot is ready (pledgebot: its engine started) and settled, and again after
it has answered a mix of member commands, since answering allocates too.
"""

from __future__ import annotations

import asyncio
import statistics
from pathlib import Path

from bench.common import (
    DATA_DIR,
    Report,
    Settings,
    Table,
    Target,
    mib,
    ratio,
    times,
)
from bench.fixtures import (
    AUTOCOMPLETE_INPUTS,
    SEARCH_QUERIES,
    Planned,
    add_guilds,
    prepare_database,
    quiet_times,
    temp_dir,
    write_config,
)
from bench.procs import Memory, MilestoneBot
from bot.local import Emulator, GuildState

TARGET = 1.15
GUILDS = 2_500
SETTLE = 1.0
SHOW = ("europol-partnership", "police-officers-to-europol", "europe-security-agreement")


async def exercise(emu: Emulator, guild: GuildState, commands: int) -> None:
    """A mix of member commands and autocomplete, as members would use the bot."""
    member = emu.add_user("member")
    for i in range(commands):
        match i % 3:
            case 0:
                options = {"pledge": SHOW[i % len(SHOW)]}
                await emu.run_command(guild, "pledge show", options=options, user=member)
            case 1:
                options = {"query": SEARCH_QUERIES[i % len(SEARCH_QUERIES)]}
                await emu.run_command(guild, "pledge search", options=options, user=member)
            case _:
                typed = AUTOCOMPLETE_INPUTS[i % len(AUTOCOMPLETE_INPUTS)]
                await emu.autocomplete(
                    guild, "pledge show", focused="pledge", value=typed, user=member
                )


async def measure_once(
    tmp: Path, label: str, kind: str, guilds: int, briefings: bool, commands: int
) -> tuple[Memory, Memory]:
    """(after start, after commands) for one fresh bot on a fresh emulator."""
    emu = Emulator()
    await emu.start()
    try:
        servers = add_guilds(emu, guilds, ("general", "briefings"))
        db = tmp / f"{label}.db"
        times_of_day = quiet_times(len(servers))
        plans = [
            Planned(g, g.channels["briefings"], t)
            for g, t in zip(servers, times_of_day, strict=True)
        ]
        await prepare_database(db, DATA_DIR, plans if briefings else ())
        config = write_config(tmp / f"{label}.toml", database=db, content=DATA_DIR, emu=emu)
        async with MilestoneBot(tmp, config, emu.token, label, kind=kind, sync=True) as proc:
            ready = await proc.milestone("ready", 180)
            if ready["guilds"] != guilds:
                raise RuntimeError(f"{label}: ready with {ready['guilds']} of {guilds} guilds")
            if kind == "pledgebot":
                await proc.milestone("engine_started", 180)
            await asyncio.sleep(SETTLE)
            started = proc.memory()
            await exercise(emu, servers[0], commands)
            await asyncio.sleep(SETTLE)
            answered = proc.memory()
    finally:
        await emu.stop()
    return started, answered


async def run(settings: Settings) -> Report:
    guilds = settings.size(GUILDS, quick=500, tiny=10)
    repeats = settings.size(3, quick=1, tiny=1)
    commands = settings.size(150, quick=30, tiny=3)
    report = Report(
        "memory",
        f"Memory with {guilds:,} servers",
        f"VmRSS and VmHWM (peak) of the bot process from /proc/PID/status, {guilds:,} servers "
        f"(2 text channels each) in the emulator, guilds intent only. Read {SETTLE:g} s after "
        f"start-up, then after {commands} member interactions (show, search, autocomplete). "
        f"Median of {repeats} fresh runs per configuration, alternated. The target applies to "
        "pledgebot as specified (shipped content, no briefings); the run with one briefing "
        "per server is for information (the cost of one planned job per schedule).",
    )
    configs = (
        ("bare discord.py", "bare", False),
        ("pledgebot, data/", "pledgebot", False),
        (f"pledgebot, data/ + {guilds:,} briefings", "pledgebot", True),
    )
    results: dict[str, list[tuple[Memory, Memory]]] = {label: [] for label, _, _ in configs}
    with temp_dir("memory") as tmp:
        for attempt in range(repeats):
            for label, kind, briefings in configs:
                name = f"{kind}{'-briefings' if briefings else ''}-{attempt}"
                results[label].append(
                    await measure_once(tmp, name, kind, guilds, briefings, commands)
                )

    def median(label: str, after_commands: bool, peak: bool = False) -> float:
        memories = [pair[1] if after_commands else pair[0] for pair in results[label]]
        return statistics.median(m.hwm_kib if peak else m.rss_kib for m in memories)

    bare = configs[0][0]
    base_rss, base_hwm = median(bare, True), median(bare, True, peak=True)
    rows = []
    for label, _, _ in configs:
        rss, hwm = median(label, True), median(label, True, peak=True)
        rows.append(
            (
                label,
                mib(median(label, False)),
                mib(rss),
                mib(hwm),
                times(ratio(rss, base_rss)),
                times(ratio(hwm, base_hwm)),
                f"{(rss - base_rss) / 1024:+.1f}",
            )
        )
    report.tables.append(
        Table(
            "MiB (median of runs)",
            (
                "bot",
                "VmRSS after start",
                "VmRSS after commands",
                "VmHWM (peak)",
                "RSS ratio",
                "peak ratio",
                "RSS minus bare (MiB)",
            ),
            rows,
        )
    )
    label = configs[1][0]
    rss_ratio = ratio(median(label, True), base_rss)
    hwm_ratio = ratio(median(label, True, peak=True), base_hwm)
    report.targets.append(
        Target(f"{label}: VmRSS vs bare", times(rss_ratio), f"<= {TARGET}x", rss_ratio <= TARGET)
    )
    report.targets.append(
        Target(f"{label}: VmHWM vs bare", times(hwm_ratio), f"<= {TARGET}x", hwm_ratio <= TARGET)
    )
    if any(target.met is False for target in report.targets):
        report.notes.append(
            "Why the targets marked NOT MET are not met, with profiles, and what would meet "
            "them: bench/PROFILES.md."
        )
    with_briefings = configs[2][0]
    extra = median(with_briefings, True) - median(label, True)
    report.notes.append(
        f"One planned briefing costs about {extra / guilds:.1f} KiB "
        f"({extra / 1024:+.1f} MiB for {guilds:,})."
    )
    return report
