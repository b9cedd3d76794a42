"""The member answer cache: bounded, and off when `[content] answer_cache = 0`."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bot.briefings.composer import Composer
from bot.briefings.schedules import Schedules
from bot.config import Config
from bot.models import Pledge, utc_slot
from bot.pledges import answers
from bot.pledges.cards import Card
from bot.pledges.services import Records, Services, footprint
from bot.store import Store
from tests.conftest import DATA_DIR


async def ask_twice(config: Config) -> tuple[int, list[Card], list[Card]]:
    services = await Services.start(config)
    computed = 0

    async def compute() -> list[Card]:
        nonlocal computed
        computed += 1
        return await answers.pledge_show.__wrapped__(services, "europol-partnership")  # type: ignore[attr-defined]

    try:
        first = await services.cached(("show", "europol-partnership"), compute)
        second = await services.cached(("show", "europol-partnership"), compute)
    finally:
        await services.close()
    return computed, first, second


@pytest.mark.parametrize(("size", "computed"), [(1024, 1), (0, 2)])
async def test_the_answer_cache_can_be_turned_off(tmp_path: Path, size: int, computed: int) -> None:
    config = replace(
        Config(), database_path=tmp_path / "bot.db", content_dir=DATA_DIR, answer_cache=size
    )
    times, first, second = await ask_twice(config)
    assert times == computed
    assert first == second  # the same answer either way


async def test_the_answer_cache_never_grows_past_its_size(tmp_path: Path) -> None:
    config = replace(
        Config(), database_path=tmp_path / "bot.db", content_dir=DATA_DIR, answer_cache=3
    )
    services = await Services.start(config)
    try:
        for number in range(10):
            await services.cached(("n", number), lambda: _empty())
            assert len(services.answers) <= 3
    finally:
        await services.close()


async def _empty() -> list[Card]:
    return []


# -- records kept in memory ([content] records_memory_mib) -----------------------------


def config_at(location: Path | str, records_memory_mib: int = Config.records_memory_mib) -> Config:
    """Settings for a store on either backend (`store_location`), with the shipped content."""
    config = replace(
        Config(), content_dir=DATA_DIR, answer_cache=0, records_memory_mib=records_memory_mib
    )
    if isinstance(location, str):
        return replace(config, database_url=location)
    return replace(config, database_path=location)


async def every_show(services: Services) -> dict[str, list[Card]]:
    """Every pledge's and power's `/… show` answer, computed afresh."""
    shown: dict[str, list[Card]] = {}
    for pledge in await services.store.pledges():
        shown[f"pledge:{pledge.slug}"] = await answers.pledge_show(services, pledge.slug)
    for power in await services.store.powers():
        shown[f"power:{power.slug}"] = await answers.power_show(services, power.slug)
    return shown


async def test_answers_from_memory_are_the_stores_answers(store_location: Path | str) -> None:
    """The same cards for every pledge and power, records in memory or not: the
    in-memory order of a pledge's powers and a power's pledges is the store's."""
    kept = await Services.start(config_at(store_location))
    try:
        assert kept.records is not None
        from_memory = await every_show(kept)
    finally:
        await kept.close()
    read = await Services.start(config_at(store_location, records_memory_mib=0))
    try:
        assert read.records is None
        from_store = await every_show(read)
    finally:
        await read.close()
    assert len(from_memory) == 7  # the shipped statement's pledges and power
    assert from_memory == from_store


async def test_records_are_kept_only_within_their_bound(any_loaded_store: Store) -> None:
    pledges, powers = await any_loaded_store.pledges(), await any_loaded_store.powers()
    size = sum(map(footprint, pledges)) + sum(map(footprint, powers))
    assert 7 * 1024 < size < 7 * 8 * 1024  # seven records of 1 to 8 KiB each
    assert Records.of(pledges, powers, bound_mib=0) is None
    kept = Records.of(pledges, powers, bound_mib=1)
    assert kept is not None and set(kept.pledges) == {p.slug for p in pledges}


async def talks_opened(other: Store) -> None:
    """Another process (a second store on the same database) rates a pledge."""
    await other.set_status(
        "europol-partnership",
        "in-progress",
        note="Talks opened",
        evidence_url="https://example.org/talks",
        changed_by="operator",
    )


async def test_a_status_changed_by_another_process_reaches_memory(
    store_location: Path | str,
) -> None:
    """Another process (a second store on the same database) rates a pledge: the next
    answer after the freshness check shows it, and only that pledge is read again."""
    services = await Services.start(config_at(store_location))
    other = await Store.open(store_location)
    try:
        assert services.records is not None
        before = services.records.pledges["europol-partnership"]
        untouched = services.records.pledges["police-officers-to-europol"]
        await talks_opened(other)
        services.changed()  # as if FRESHNESS_SECONDS had passed
        cards = await answers.pledge_show(services, "europol-partnership")
        after = services.records.pledges["europol-partnership"]
        assert (before.status, after.status) == ("not-yet-rated", "in-progress")
        assert after.status_note == "Talks opened"
        assert services.records.pledges["police-officers-to-europol"] is untouched
        assert "Talks opened" in str(cards[0])
    finally:
        await other.close()
        await services.close()


async def test_a_digest_is_composed_from_memory_as_the_store_has_it_now(
    store_location: Path | str,
) -> None:
    """The briefing engine's composer takes every pledge from memory, yet a status set by
    another process a moment before the slot is in the digest: it is posted once for the
    whole slot, so it may not be up to a second old as an answer may."""
    services = await Services.start(config_at(store_location))
    other = await Store.open(store_location)
    try:
        schedules = Schedules(services.store)
        schedule = await schedules.create(
            guild_id=1,
            created_by=1,
            limit=25,
            fields={"channel_id": 5, "timezone": "UTC", "content": "digest"},
        )
        await talks_opened(other)
        reads: list[object] = []
        read_from_store = services.store.pledges

        async def counted(**filters: Any) -> list[Pledge]:
            reads.append(filters)
            return await read_from_store(**filters)

        services.store.pledges = counted  # type: ignore[method-assign]
        composer = Composer(services.store, schedules, pledges=services.current_pledges)
        nine = datetime(2026, 10, 21, 9, 0, tzinfo=UTC)
        briefing = await composer.compose(schedule, utc_slot(nine), nine)
        assert briefing is not None
        lines = [line for line in str(briefing.cards).split("\\n") if "europol-partnership" in line]
        assert lines and "In progress" in lines[0]
        assert reads == [{"slugs": ["europol-partnership"]}]  # the changed pledge alone
    finally:
        await other.close()
        await services.close()
