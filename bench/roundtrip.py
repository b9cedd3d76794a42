"""Benchmark 1: command round trip, pledgebot against a bare discord.py bot.

Five bots run at once, each in its own process with its own emulator (in this process):
- the bare baseline, answering a constant;
- the bare bot answering constants as large as pledgebot's answers (an embed, 25
  autocomplete choices): what sending such an answer costs;
- pledgebot with the shipped content and with 10,000 generated pledges, both asked
  first-time questions (answer cache off, and at 10k every input different): the headline
  rows, with the targets;
- pledgebot at 10k asked the same few questions again and again (answer cache on): the
  cache-hit rows, without a target.
Samples are interleaved (every round asks each bot once, in a rotating order) so drift in
machine load hits all alike. The figure is the emulator's own clock from sending
INTERACTION_CREATE to receiving the interaction callback.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.common import (
    DATA_DIR,
    Report,
    Settings,
    Stats,
    Table,
    Target,
    latency_row,
    mib,
    ms,
    ratio,
    times,
)
from bench.fixtures import (
    autocomplete_inputs,
    generated_slugs,
    search_queries,
    temp_dir,
    write_config,
    write_content,
)
from bench.procs import Memory, MilestoneBot
from bot.config import Config
from bot.local import Emulator, GuildState, UserState
from bot.pledges.services import footprint
from bot.search import fts_query
from bot.store import Store

GENERATED = 10_000
MEDIAN_TARGET = 1.2
P99_TARGET = 1.5
REAL_SLUGS = (  # every pledge in data/
    "europe-security-agreement",
    "europol-partnership",
    "police-officers-to-europol",
    "organised-crime-strategy",
    "strengthened-civil-orders",
    "scpo-organised-immigration-crime",
)
KINDS = ("/pledge show", "/pledge search", "autocomplete /pledge show pledge")
REPEATED_INPUTS = 20  # the cache-hit bot's inputs per kind, all seen during warm-up


@dataclass
class Subject:
    """One bot under test with the emulator it talks to and its samples per kind."""

    label: str
    emu: Emulator
    guild: GuildState
    member: UserState
    slugs: list[str]
    queries: list[str]
    typed: list[str]
    samples: dict[str, list[float]] = field(default_factory=dict)
    targets: bool = True  # False: cache-hit rows, shown without a target
    deferred: int = 0
    private_answers: int = 0


def last_interaction_latency(emu: Emulator) -> float:
    """Send-to-callback seconds of the emulator's latest interaction.

    `Emulator.autocomplete` returns only the choices, so this reads the record the
    emulator keeps (the same fields `InteractionResult.latency` uses).
    """
    records = emu._world.interactions  # no public accessor for autocomplete timings
    record = next(reversed(records.values()))
    if record.callback_at is None:
        raise RuntimeError(f"/{record.name} was never acknowledged")
    return record.callback_at - record.sent_at


async def ask(subject: Subject, kind: str, index: int) -> float:
    """One interaction of `kind`; returns its latency in seconds."""
    emu, guild, member = subject.emu, subject.guild, subject.member
    if kind == KINDS[2]:
        typed = subject.typed[index % len(subject.typed)]
        await emu.autocomplete(guild, "pledge show", focused="pledge", value=typed, user=member)
        return last_interaction_latency(emu)
    if kind == KINDS[0]:
        options = {"pledge": subject.slugs[index % len(subject.slugs)]}
        result = await emu.run_command(guild, "pledge show", options=options, user=member)
    else:
        query = subject.queries[index % len(subject.queries)]
        result = await emu.run_command(
            guild, "pledge search", options={"query": query}, user=member
        )
    subject.deferred += result.callback_type == 5
    subject.private_answers += result.ephemeral
    if result.latency is None:
        raise RuntimeError(f"{subject.label}: {kind} was never acknowledged")
    return result.latency


async def run(settings: Settings) -> Report:
    samples = settings.size(1000, quick=60, tiny=3)
    warmup = settings.size(30, quick=10, tiny=1)
    budget = settings.size(240.0, quick=60.0, tiny=30.0)
    generated = settings.size(GENERATED, quick=1_000, tiny=50)
    report = Report(
        "roundtrip",
        "Command round trip",
        "Latency from the emulator sending INTERACTION_CREATE to receiving the callback "
        "(`InteractionResult.latency`; for autocomplete the same two timestamps from the "
        "emulator's interaction record). Each bot is a subprocess (`bench/botproc.py`) with "
        "its own emulator in the benchmark process; rounds are interleaved across the bots "
        f"bots in rotating order after {warmup} warm-up rounds. Baseline: a bare discord.py "
        "`commands.Bot` (guilds intent only) whose `/pledge show`, `/pledge search` and "
        "autocomplete answer a constant. First-time rows (the targets): pledgebot runs with "
        "`[content] answer_cache = 0`, and with 10,000 pledges every round asks a slug, "
        "search query and typed text not asked before (`bench/fixtures.py`); the shipped "
        "content has six pledges, so that bot cycles through them with the cache off. "
        f"Cache-hit rows: pledgebot at 10k with the default cache, cycling through "
        f"{REPEATED_INPUTS} inputs per kind that the warm-up already asked. A second "
        "baseline, the bare bot answering constants as large as pledgebot's (a 6-field "
        "embed for show, a 10-field one for search, 25 choices), separates the cost of "
        "sending an answer of that size from the cost of finding it.",
    )
    with temp_dir("roundtrip") as tmp:
        big_content = write_content(tmp / "content-generated", generated)
        subjects: list[Subject] = []
        procs: list[MilestoneBot] = []
        inputs = warmup + samples
        try:
            for label, content, name, cache, distinct in (
                ("bare discord.py", None, "bare", None, inputs),
                ("bare discord.py, answers of pledgebot's size", None, "sized", None, inputs),
                ("pledgebot, data/, first-time", DATA_DIR, "real", 0, inputs),
                (
                    f"pledgebot, {generated:,} generated, first-time",
                    big_content,
                    "generated",
                    0,
                    inputs,
                ),
                (
                    f"pledgebot, {generated:,} generated, repeated (cache hits)",
                    big_content,
                    "repeated",
                    None,
                    REPEATED_INPUTS,
                ),
            ):
                subject, proc = await start_subject(
                    tmp, label, content, name, generated, cache=cache, distinct=distinct
                )
                subject.targets = name in ("real", "generated")
                subjects.append(subject)
                procs.append(proc)
            await asyncio.gather(*(wait_started(p) for p in procs))
            started = time.monotonic()
            rounds = await measure(subjects, warmup, samples, budget)
            elapsed = time.monotonic() - started
            memories = [proc.memory() for proc in procs]
        finally:
            await asyncio.gather(*(p.stop() for p in procs), return_exceptions=True)
            for subject in subjects:
                await subject.emu.stop()
        violations = [v for s in subjects for v in s.emu.violations]
        report.notes.append(search_selectivity(tmp / "generated.db", subjects[3].queries))
        records = await records_footprint(tmp / "generated.db")
    summarise(report, subjects, rounds, samples, elapsed, violations)
    memory_table(report, subjects, memories, records)
    return report


async def records_footprint(database: Path) -> int:
    """Bytes the generated set's pledges and powers take in memory, as the bot estimates
    them against `[content] records_memory_mib`."""
    store = await Store.open(database)
    try:
        pledges, powers = await store.pledges(), await store.powers()
    finally:
        await store.close()
    return sum(map(footprint, pledges)) + sum(map(footprint, powers))


def memory_table(
    report: Report, subjects: list[Subject], memories: list[Memory], records: int
) -> None:
    """Each bot's resident memory after the run: what keeping records in memory costs."""
    bare = memories[0].rss_kib
    report.tables.append(
        Table(
            "Memory after the run (VmRSS)",
            ("bot", "VmRSS MiB", "vs bare"),
            [
                (subject.label, mib(memory.rss_kib), times(ratio(memory.rss_kib, bare)))
                for subject, memory in zip(subjects, memories, strict=True)
            ],
        )
    )
    report.notes.append(
        "pledgebot keeps every pledge and power in memory while they fit in `[content] "
        f"records_memory_mib` (default {Config.records_memory_mib} MiB), so `/pledge show` "
        "reads no database. The shipped content's take a few KiB; the generated set's "
        f"{mib(records // 1024)} MiB by the bot's estimate (`bot.pledges.services.footprint`), "
        "which is part of the 10,000-pledge bots' memory above."
    )


def search_selectivity(database: Path, queries: list[str]) -> str:
    """How many records the search inputs match in the generated set (bm25 ranks them all)."""
    with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as db:
        total = db.execute("SELECT count(*) FROM search_index").fetchone()[0]
        counts = sorted(
            db.execute(
                "SELECT count(*) FROM search_index WHERE search_index MATCH ?", (match,)
            ).fetchone()[0]
            for query in queries
            if (match := fts_query(query)) is not None
        )
    return (
        f"The search inputs match a median of {statistics.median(counts):,.0f} and at most "
        f"{counts[-1]:,} of the {total:,} indexed records in the generated set (all words "
        "must match); every match is ranked."
    )


async def start_subject(
    tmp: Path,
    label: str,
    content: Path | None,
    name: str,
    generated: int,
    *,
    cache: int | None,
    distinct: int,
    database: Path | str | None = None,
) -> tuple[Subject, MilestoneBot]:
    """A bot and its emulator, with `distinct` inputs per kind (asked in order, cycled).

    `database`: where pledgebot keeps its store (a SQLite file or a `postgresql://` URL);
    by default a SQLite file `NAME.db` in `tmp`.
    """
    emu = Emulator()
    await emu.start()
    guild = emu.add_guild("Bench", channels=("general",))
    member = emu.add_user("member")
    config = write_config(
        tmp / f"{name}.toml",
        database=database or tmp / f"{name}.db",
        content=content or DATA_DIR,
        emu=emu,
        answer_cache=cache,
    )
    # Generated slugs do not exist in data/, so that bot gets only the real ones.
    if content == DATA_DIR:
        slugs = list(REAL_SLUGS)
    else:
        slugs = [*REAL_SLUGS, *generated_slugs(generated, max(distinct - len(REAL_SLUGS), 1))]
    queries = search_queries(distinct)
    typed = autocomplete_inputs(distinct, generated)
    kind = "bare" if content is None else "pledgebot"
    sized = ["--sized"] if name == "sized" else []
    proc = MilestoneBot(tmp, config, emu.token, name, kind=kind, sync=True, extra_args=sized)
    await proc.start()
    return Subject(label, emu, guild, member, slugs[:distinct], queries, typed), proc


async def wait_started(proc: MilestoneBot) -> None:
    await proc.milestone("ready", 120)
    if proc.kind == "pledgebot":
        await proc.milestone("engine_started", 120)


async def measure(
    subjects: list[Subject],
    warmup: int,
    samples: int,
    budget: float,
    kinds: tuple[str, ...] = KINDS,
) -> int:
    """Interleaved rounds of `kinds`; returns how many measured rounds fit in `budget` s."""
    for subject in subjects:
        subject.samples = {kind: [] for kind in kinds}
    deadline = time.monotonic() + budget
    done = 0
    for round_index in range(warmup + samples):
        if time.monotonic() > deadline:
            break
        shift = round_index % len(subjects)
        order = subjects[shift:] + subjects[:shift]
        for kind in kinds:
            for subject in order:
                latency = await ask(subject, kind, round_index)
                if round_index >= warmup:
                    subject.samples[kind].append(latency)
        if round_index >= warmup:
            done += 1
    return done


def summarise(
    report: Report,
    subjects: list[Subject],
    rounds: int,
    wanted: int,
    elapsed: float,
    violations: list[str],
) -> None:
    baseline = subjects[0]
    for kind in KINDS:
        base = Stats.of(baseline.samples[kind])
        rows: list[tuple[str, ...]] = []
        for subject in subjects:
            stats = Stats.of(subject.samples[kind])
            rows.append(latency_row(subject.label, stats, base))
            if subject is baseline or not subject.targets:
                continue  # the baseline, the same-size baseline and the cache-hit rows
            median_ratio = ratio(stats.median, base.median)
            p99_ratio = ratio(stats.p99, base.p99)
            report.targets.append(
                Target(
                    f"{kind}, {subject.label}: median",
                    f"{ms(stats.median)} ms = {times(median_ratio)}",
                    f"<= {MEDIAN_TARGET}x ({ms(base.median * MEDIAN_TARGET)} ms)",
                    median_ratio <= MEDIAN_TARGET,
                )
            )
            report.targets.append(
                Target(
                    f"{kind}, {subject.label}: p99",
                    f"{ms(stats.p99)} ms = {times(p99_ratio)}",
                    f"<= {P99_TARGET}x ({ms(base.p99 * P99_TARGET)} ms)",
                    p99_ratio <= P99_TARGET,
                )
            )
        report.tables.append(
            Table(
                kind,
                (
                    "bot",
                    "n",
                    "min ms",
                    "median ms",
                    "p99 ms",
                    "max ms",
                    "median ratio",
                    "p99 ratio",
                ),
                rows,
            )
        )
    sized = subjects[1]
    rows = []
    for kind in KINDS:
        base, same_size = Stats.of(baseline.samples[kind]), Stats.of(sized.samples[kind])
        for subject in subjects[2:4]:
            stats = Stats.of(subject.samples[kind])
            rows.append(
                (
                    kind,
                    subject.label,
                    times(ratio(same_size.median, base.median)),
                    times(ratio(stats.median, same_size.median)),
                    times(ratio(stats.p99, same_size.p99)),
                )
            )
    report.tables.append(
        Table(
            "Sending against finding: the bare bot answering constants of pledgebot's size",
            (
                "kind",
                "pledgebot",
                "same-size bare vs bare, median",
                "pledgebot vs same-size bare, median",
                "pledgebot vs same-size bare, p99",
            ),
            rows,
        )
    )
    if any(target.met is False for target in report.targets):
        report.notes.append(
            "Why the targets marked NOT MET are not met, with profiles, and what would meet "
            "them: bench/PROFILES.md."
        )
    report.notes.append(
        f"{rounds} measured rounds of {len(KINDS)} interactions per bot in {elapsed:.1f} s"
        + ("" if rounds >= wanted else f" (time budget reached before {wanted})")
        + "."
    )
    report.notes.append(
        "pledgebot caches each answer until content or a status changes "
        "(bot/pledges/services.py, `[content] answer_cache`). The first-time rows are what a "
        "member meets asking something new; the cache-hit rows show a question asked again, "
        "and have no target. Autocomplete is never cached: its cache-hit row differs from "
        "the first-time row only in its inputs."
    )
    for subject in subjects[1:]:
        if subject.deferred:
            report.notes.append(f"{subject.label}: {subject.deferred} commands were deferred.")
        if subject.private_answers:
            report.notes.append(
                f"{subject.label}: {subject.private_answers} private (error) answers."
            )
    if violations:
        report.notes.append(f"Emulator violations: {violations[:5]}")
