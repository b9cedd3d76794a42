"""The member answer cache: bounded, and off when `[content] answer_cache = 0`."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from bot.config import Config
from bot.pledges import answers
from bot.pledges.cards import Card
from bot.pledges.services import Services
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
