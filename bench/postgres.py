"""Benchmark: pledgebot on PostgreSQL against pledgebot on SQLite (issue 13).

Starts its own throwaway PostgreSQL server (`tests/pg_server.py`: initdb into /tmp, a free
port on 127.0.0.1, fsync off) and stops it at the end. Two parts, both built from the
other benchmarks' machinery:

- Round trips (`bench/roundtrip.py`): three bot processes, each with its own emulator, asked
  in interleaved rounds: the bare discord.py baseline, pledgebot on a SQLite file and
  pledgebot on a PostgreSQL database, both pledgebots on the same 10,000 generated
  pledges with the answer cache off and every input different.
- Fan-out (`bench/fanout2.py`): its two-process scenario, 1,000 servers due the same
  minute, with the store on PostgreSQL instead of a SQLite file.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time

import asyncpg

from bench import fanout2
from bench.common import Report, Settings, Stats, Table, Target, latency_row, ms, ratio, times
from bench.fixtures import temp_dir, write_content
from bench.procs import MilestoneBot
from bench.roundtrip import KINDS, Subject, measure, start_subject, wait_started
from tests.pg_server import TempPostgres, drop_database, new_database, start_server

GENERATED = 10_000
ROUNDTRIP_KINDS = KINDS[:2]  # /pledge show, /pledge search
LABELS = ("bare discord.py", "pledgebot on SQLite", "pledgebot on PostgreSQL")


async def run(settings: Settings) -> Report:
    samples = settings.size(1000, quick=60, tiny=3)
    warmup = settings.size(30, quick=10, tiny=1)
    budget = settings.size(240.0, quick=60.0, tiny=30.0)
    generated = settings.size(GENERATED, quick=1_000, tiny=50)
    fan_title, fan_method = fanout2.describe(settings, "PostgreSQL")
    report = Report(
        "postgres",
        "PostgreSQL against SQLite: round trips and the two-process fan-out",
        "A throwaway PostgreSQL server started by the benchmark (`tests/pg_server.py`: "
        "initdb, 127.0.0.1, fsync and synchronous_commit off, full_page_writes off), one "
        "fresh database per part. **Round trips** (as `bench/roundtrip.py`): three bot "
        "subprocesses, each with its own emulator, asked `/pledge show` and `/pledge search` "
        f"in interleaved rounds (rotating order, {warmup} warm-up rounds): the bare "
        "discord.py baseline answering a constant, pledgebot on a SQLite file and pledgebot "
        f"on PostgreSQL, both pledgebots on the same {generated:,} generated pledges plus "
        "data/, with `[content] answer_cache = 0` and every slug and query different (first-"
        "time questions, `bench/fixtures.py`). Latency is the emulator's clock from "
        "INTERACTION_CREATE to the callback. The issue sets no limit on these, only asks for "
        "the PostgreSQL/SQLite ratios. **Fan-out** (`bench/fanout2.py` with the store on "
        f"PostgreSQL): {fan_method}",
    )
    server = await asyncio.to_thread(start_server)
    try:
        version = await server_version(server)
        await roundtrips(report, server, generated, warmup, samples, budget)
        database = await new_database(server.dsn)
        try:
            result = await fanout2.measure(settings, database_url=database)
        finally:
            await drop_database(server.dsn, database)
    finally:
        await asyncio.to_thread(server.stop)
    first_table, first_target = len(report.tables), len(report.targets)
    fanout2.summarise(report, result)
    report.tables[first_table:] = [
        dataclasses.replace(t, title=f"Fan-out on PostgreSQL: {t.title}")
        for t in report.tables[first_table:]
    ]
    report.targets[first_target:] = [
        dataclasses.replace(t, name=f"fan-out on PostgreSQL: {t.name}")
        for t in report.targets[first_target:]
    ]
    report.notes.insert(0, f"{fan_title}; PostgreSQL {version}.")
    return report


async def server_version(server: TempPostgres) -> str:
    conn = await asyncpg.connect(server.dsn)
    try:
        return str(await conn.fetchval("SHOW server_version"))
    finally:
        await conn.close()


async def roundtrips(
    report: Report,
    server: TempPostgres,
    generated: int,
    warmup: int,
    samples: int,
    budget: float,
) -> None:
    inputs = warmup + samples
    database = await new_database(server.dsn)
    subjects: list[Subject] = []
    procs: list[MilestoneBot] = []
    try:
        with temp_dir("postgres") as tmp:
            content = write_content(tmp / "content-generated", generated)
            try:
                for label, name, subject_content, location in (
                    (LABELS[0], "bare", None, None),
                    (LABELS[1], "sqlite", content, tmp / "sqlite.db"),
                    (LABELS[2], "postgresql", content, database),
                ):
                    subject, proc = await start_subject(
                        tmp,
                        label,
                        subject_content,
                        name,
                        generated,
                        cache=0 if subject_content else None,
                        distinct=inputs,
                        database=location,
                    )
                    subjects.append(subject)
                    procs.append(proc)
                began = time.monotonic()
                await asyncio.gather(*(wait_started(p) for p in procs))
                startup = time.monotonic() - began
                began = time.monotonic()
                rounds = await measure(subjects, warmup, samples, budget, ROUNDTRIP_KINDS)
                elapsed = time.monotonic() - began
            finally:
                await asyncio.gather(*(p.stop() for p in procs), return_exceptions=True)
                for subject in subjects:
                    await subject.emu.stop()
            logs = [fanout2.log_findings(p) for p in procs[1:]]
    finally:
        await drop_database(server.dsn, database)
    summarise_roundtrips(report, subjects, rounds, samples, elapsed)
    report.notes.append(
        f"Round trips: the three bots started (each loading the {generated:,} pledges into "
        f"its own store) in {startup:.1f} s, together."
    )
    violations = [v for s in subjects for v in s.emu.violations]
    if violations:
        report.notes.append(f"Round trips: emulator violations: {violations[:5]}")
    for label, (flagged, tracebacks, examples) in zip(LABELS[1:], logs, strict=True):
        if flagged or tracebacks:
            report.notes.append(
                f"Round trips: {label} logged {flagged} warnings/errors and {tracebacks} "
                "tracebacks, e.g. " + "; ".join(f"`{e}`" for e in examples)
            )


def summarise_roundtrips(
    report: Report, subjects: list[Subject], rounds: int, wanted: int, elapsed: float
) -> None:
    bare, sqlite, postgres = subjects
    compared: list[tuple[str, ...]] = []
    for kind in ROUNDTRIP_KINDS:
        base = Stats.of(bare.samples[kind])
        rows: list[tuple[str, ...]] = []
        for subject in subjects:
            stats = Stats.of(subject.samples[kind])
            rows.append(latency_row(subject.label, stats, base))
        report.tables.append(
            Table(
                f"Round trip {kind}",
                (
                    "bot",
                    "n",
                    "min ms",
                    "median ms",
                    "p99 ms",
                    "max ms",
                    "median vs bare",
                    "p99 vs bare",
                ),
                rows,
            )
        )
        lite, pg = Stats.of(sqlite.samples[kind]), Stats.of(postgres.samples[kind])
        for measure_name, pg_value, lite_value in (
            ("median", pg.median, lite.median),
            ("p99", pg.p99, lite.p99),
        ):
            value = ratio(pg_value, lite_value)
            compared.append((kind, measure_name, ms(lite_value), ms(pg_value), times(value)))
            report.targets.append(
                Target(
                    f"{kind} {measure_name}, PostgreSQL / SQLite",
                    f"{ms(pg_value)} / {ms(lite_value)} ms = {times(value)}",
                    "none in the issue (ratio reported)",
                    None,
                )
            )
    report.tables.append(
        Table(
            "Round trips: PostgreSQL / SQLite",
            ("kind", "statistic", "SQLite ms", "PostgreSQL ms", "PostgreSQL / SQLite"),
            compared,
        )
    )
    report.notes.append(
        f"Round trips: {rounds} measured rounds of {len(ROUNDTRIP_KINDS)} interactions per bot "
        f"in {elapsed:.1f} s"
        + ("" if rounds >= wanted else f" (time budget reached before {wanted})")
        + "."
    )
    for subject in subjects[1:]:
        if subject.deferred or subject.private_answers:
            report.notes.append(
                f"Round trips: {subject.label}: {subject.deferred} deferred, "
                f"{subject.private_answers} private (error) answers."
            )
