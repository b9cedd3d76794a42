"""Building what the benchmarks run on: content sets, config files, databases, servers.

Generated content is deterministic (a seeded RNG), passes the real content checks (every
quote is verbatim in a generated source text) and is loaded by the real loader, so the bot
sees exactly what an operator's `pledgebot db load` would give it.
"""

from __future__ import annotations

import random
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import tomli_w

from bench.common import DATA_DIR
from bot.briefings.schedules import Schedules
from bot.local import ChannelState, Emulator, GuildState
from bot.pledges.content import load_content
from bot.store import Store

_VERBS = (
    "Expand", "Fund", "Review", "Reform", "Protect", "Build", "Cut", "Strengthen",
    "Modernise", "Invest in", "Double", "Restore", "Simplify", "Speed up", "Regulate",
)  # fmt: skip
_NOUNS = (
    "rural bus routes", "border security checks", "coastal flood defences",
    "community policing", "housing grants", "rail freight", "school meals",
    "hospital parking", "court backlogs", "fishing quotas", "youth services",
    "broadband rollout", "energy efficiency", "port inspections", "cyber crime units",
    "asylum casework", "legal aid", "victim support", "customs intelligence",
    "vehicle seizures",
)  # fmt: skip
_AREAS = (
    "in Wales", "across the North", "for small firms", "in coastal towns", "in Scotland",
    "for young people", "in city centres", "along the Channel", "for rural areas",
    "with European partners",
)  # fmt: skip
_SCOPES = ("UK-wide", "England", "With European partners", "Local", "Devolved")
_ACTORS = ("Home Office", "Border Force", "National Crime Agency", "Europol", "councils")

# Words a member might type, chosen to hit few, some and many of the generated pledges.
SEARCH_QUERIES = (
    "europol",
    "vehicles",
    "serious crime prevention orders",
    "smuggling gangs",
    "border security",
    "housing grants in wales",
    "fund",
    "flood",
    "pledge",
    "nonexistentword",
)
AUTOCOMPLETE_INPUTS = (
    "",
    "e",
    "euro",
    "europol-partnership",
    "police off",
    "border security",
    "gen-01234",
    "modernise legal",
    "zzz",
)


def search_queries(count: int, seed: int = 11) -> list[str]:
    """`SEARCH_QUERIES`, then words and phrases from the generated vocabulary: `count`
    different queries, so none is a repeat the answer cache has seen."""
    rng = random.Random(seed)
    queries = dict.fromkeys(SEARCH_QUERIES)
    for _ in range(count * 50):
        if len(queries) >= count:
            break
        noun = rng.choice(_NOUNS)
        query = rng.choice(
            (
                noun,
                noun.split()[-1],
                f"{rng.choice(_VERBS)} {noun}",
                f"{noun} {rng.choice(_AREAS)}",
                f"{rng.choice(_VERBS)} {noun} {rng.choice(_AREAS)}",
            )
        )
        queries.setdefault(query.lower())
    if len(queries) < count:
        raise ValueError(f"only {len(queries)} different search queries, {count} asked")
    return list(queries)[:count]


def autocomplete_inputs(count: int, generated: int, seed: int = 13) -> list[str]:
    """`AUTOCOMPLETE_INPUTS`, then what members type on the way to a name: `count`
    different inputs."""
    rng = random.Random(seed)
    inputs = dict.fromkeys(AUTOCOMPLETE_INPUTS)
    for _ in range(count * 50):
        if len(inputs) >= count:
            break
        target = rng.choice(
            (
                rng.choice(_NOUNS),
                f"{rng.choice(_VERBS)} {rng.choice(_NOUNS)}".lower(),
                f"gen-{rng.randrange(max(generated, 1)):05d}",
            )
        )
        inputs.setdefault(target[: rng.randint(1, len(target))])
    if len(inputs) < count:
        raise ValueError(f"only {len(inputs)} different autocomplete inputs, {count} asked")
    return list(inputs)[:count]


@contextmanager
def temp_dir(label: str) -> Iterator[Path]:
    """A private directory removed afterwards, whatever happens."""
    with tempfile.TemporaryDirectory(prefix=f"pledgebot-bench-{label}-") as name:
        yield Path(name)


def write_content(directory: Path, generated: int) -> Path:
    """The shipped content plus a statement with `generated` pledges; returns the directory."""
    shutil.copytree(DATA_DIR, directory, ignore=shutil.ignore_patterns("*.db*"))
    if generated <= 0:
        return directory
    rng = random.Random(20240611)
    quotes: list[str] = []
    pledges: list[dict[str, Any]] = []
    for i in range(generated):
        verb, noun, area = rng.choice(_VERBS), rng.choice(_NOUNS), rng.choice(_AREAS)
        quote = f"We will {verb.lower()} {noun} {area} (commitment {i})."
        quotes.append(quote)
        pledges.append(
            {
                "slug": f"gen-{i:05d}",
                "title": f"{verb} {noun} {area}, commitment {i}",
                "summary": f"The statement says it would {verb.lower()} {noun} {area}.",
                "detail": (
                    f"According to the statement, the plan would {verb.lower()} {noun} {area}. "
                    f"It gives no date or budget for commitment {i}."
                ),
                "scope": rng.choice(_SCOPES),
                "actors": rng.sample(_ACTORS, 2),
                "quotes": [quote],
            }
        )
    (directory / "sources" / "generated.txt").write_text(" ".join(quotes), "utf-8")
    document = {
        "schema": 1,
        "statement": {
            "slug": "generated",
            "title": f"Generated statement with {generated} pledges",
            "author": "pledgebot benchmarks",
            "source": "sources/generated.txt",
            "summary": "Pledges generated for benchmarks.",
        },
        "pledges": pledges,
    }
    (directory / "generated.toml").write_text(tomli_w.dumps(document), "utf-8")
    return directory


def generated_slugs(count: int, picks: int, seed: int = 7) -> list[str]:
    """`picks` different slugs of generated pledges, spread over the whole set."""
    rng = random.Random(seed)
    return [f"gen-{i:05d}" for i in rng.sample(range(count), picks)]


def write_config(
    path: Path,
    *,
    database: Path | str,
    content: Path,
    emu: Emulator,
    answer_cache: int | None = None,
) -> Path:
    """A pledgebot config file pointing at the emulator (the token stays in the environment).

    `database`: a SQLite file (`[database] path`) or a `postgresql://` URL (`[database] url`).
    """
    content_table: dict[str, Any] = {"directory": str(content)}
    if answer_cache is not None:
        content_table["answer_cache"] = answer_cache
    document = {
        "database": database_table(database),
        "content": content_table,
        "logging": {"level": "WARNING"},
        "discord": {"api_base_url": emu.base_url, "gateway_url": emu.gateway_url},
    }
    path.write_text(tomli_w.dumps(document), "utf-8")
    return path


def database_table(database: Path | str) -> dict[str, str]:
    """The config's [database] table for a SQLite file or a `postgresql://` URL."""
    if isinstance(database, str) and database.startswith(("postgresql://", "postgres://")):
        return {"url": database}
    return {"path": str(database)}


def add_guilds(
    emu: Emulator, count: int, channels: Sequence[str] = ("general",)
) -> list[GuildState]:
    return [emu.add_guild(f"Server {i:05d}", channels=channels) for i in range(count)]


@dataclass(frozen=True)
class Planned:
    """A briefing to create: where it posts and at what UTC time of day."""

    guild: GuildState
    channel: ChannelState
    time_of_day: str


async def prepare_database(
    path: Path | str, content: Path, briefings: Sequence[Planned] = (), *, limit: int = 500
) -> list[int]:
    """Create the database (a SQLite file or a `postgresql://` URL), load content, insert
    briefings (daily, digest, UTC); return their ids."""
    store = await Store.open(path)
    try:
        await load_content(store, content)
    finally:
        await store.close()
    return await add_briefings(path, briefings, limit=limit)


async def add_briefings(
    path: Path | str, briefings: Sequence[Planned], *, limit: int = 500
) -> list[int]:
    """Insert briefings (daily, digest, UTC) through the store, as any process would
    (`path`: a SQLite file or a `postgresql://` URL)."""
    store = await Store.open(path)
    try:
        schedules = Schedules(store)
        ids = []
        for planned in briefings:
            created = await schedules.create(
                guild_id=planned.guild.id,
                created_by=planned.guild.owner_id,
                limit=limit,
                fields={
                    "channel_id": planned.channel.id,
                    "timezone": "UTC",
                    "time_of_day": planned.time_of_day,
                    "days": "daily",
                    "content": "digest",
                },
            )
            ids.append(created.id)
        return ids
    finally:
        await store.close()


async def copy_briefings(path: Path, copies: int, *, now: datetime | None = None) -> int:
    """Copy every briefing `copies` times at other quiet times (see `quiet_times`);
    returns how many there are now.

    One INSERT ... SELECT per copy: 100,000 briefings in seconds instead of minutes of one
    transaction each. The rows are what `add_briefings` makes (daily, UTC, times of day
    only), so the engine plans them the same way.
    """
    start = ((now or datetime.now(UTC)) + timedelta(hours=2)).strftime("%Y-%m-%d %H:%M")
    store = await Store.open(path)
    try:
        columns = [r["name"] for r in await store.rows("PRAGMA table_info(schedules)")]
        copied = ", ".join(c for c in columns if c not in ("id", "time_of_day"))
        async with store.transaction() as tx:
            last = await tx.scalar("SELECT max(id) FROM schedules")
            for copy in range(1, copies + 1):
                await tx.execute(  # SQLite dialect (strftime)
                    f"INSERT INTO schedules (time_of_day, {copied}) "
                    "SELECT strftime('%H:%M', ?, '+' || ((id * 7 + ? * 71) % 720) || ' minutes'), "
                    f"{copied} FROM schedules WHERE id <= ?",
                    (start, copy, last),
                )
        return int(await store.scalar("SELECT count(*) FROM schedules"))
    finally:
        await store.close()


def quiet_times(count: int, *, now: datetime | None = None) -> list[str]:
    """`count` times of day (UTC, up to 720 different ones) between 2 and 14 hours from now,
    so none falls due, or is caught up, while a benchmark runs."""
    start = (now or datetime.now(UTC)) + timedelta(hours=2)
    return [
        (start + timedelta(minutes=(i * 7) % (12 * 60))).strftime("%H:%M") for i in range(count)
    ]
