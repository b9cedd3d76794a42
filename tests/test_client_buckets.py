"""discord.py's rate-limit buckets are swept for idle ones when their count doubles, not on
every new one: a fan-out to thousands of DM channels scanned them all for each DM."""

from __future__ import annotations

import asyncio
from pathlib import Path

import discord.http
import pytest

from bot.client.buckets import SWEEP_FROM, sweep_buckets_when_doubled
from bot.client.runner import make_bot
from bot.config import Config

CHANNELS = 4_000


def counting_sweeps(http: discord.http.HTTPClient) -> list[int]:
    """Wrap discord.py's own sweep to count how often it runs (with the bucket count)."""
    runs: list[int] = []
    original = http._try_clear_expired_ratelimits

    def counted() -> None:
        if len(http._buckets) >= SWEEP_FROM:
            runs.append(len(http._buckets))
        original()

    http._try_clear_expired_ratelimits = counted  # type: ignore[method-assign]
    return runs


def make_buckets(http: discord.http.HTTPClient, first: int, count: int) -> None:
    for channel_id in range(first, first + count):
        http.get_ratelimit(f"POST /channels/{{channel_id}}/messages:{channel_id}")


async def test_discord_py_alone_sweeps_on_every_new_bucket_past_256() -> None:
    """The cost this module removes, as discord.py has it (fails if a release fixes it)."""
    http = discord.http.HTTPClient(asyncio.get_running_loop())
    runs = counting_sweeps(http)
    make_buckets(http, 1, CHANNELS)
    assert len(runs) == CHANNELS - SWEEP_FROM + 1


async def test_sweeps_only_when_the_count_doubles() -> None:
    http = discord.http.HTTPClient(asyncio.get_running_loop())
    runs = counting_sweeps(http)
    assert sweep_buckets_when_doubled(http)
    make_buckets(http, 1, CHANNELS)
    assert runs == [256, 512, 1024, 2048]  # nothing idle yet: every bucket kept
    assert len(http._buckets) == CHANNELS


async def test_idle_buckets_are_still_forgotten() -> None:
    loop = asyncio.get_running_loop()
    http = discord.http.HTTPClient(loop)
    assert sweep_buckets_when_doubled(http)
    make_buckets(http, 1, 300)
    for bucket in http._buckets.values():
        bucket._last_request = loop.time() - 301  # unused for longer than discord.py keeps
    make_buckets(http, 1_000, 212)  # the 512th bucket sweeps
    assert len(http._buckets) == 212
    assert all(int(key.rsplit(":", 1)[1]) >= 1_000 for key in http._buckets)


async def test_a_release_without_the_parts_is_left_alone() -> None:
    class Other:
        pass

    assert not sweep_buckets_when_doubled(Other())  # type: ignore[arg-type]


async def test_the_bot_sweeps_its_buckets_when_they_double(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    looked_at: list[None] = []
    is_inactive = discord.http.Ratelimit.is_inactive

    def counted(bucket: discord.http.Ratelimit) -> bool:
        looked_at.append(None)
        return is_inactive(bucket)

    monkeypatch.setattr(discord.http.Ratelimit, "is_inactive", counted)
    bot = make_bot(Config(database_path=tmp_path / "bot.db"))
    try:
        make_buckets(bot.http, 1, 600)
        assert len(looked_at) == 256 + 512  # two sweeps (discord.py alone: 345, 148,000 looks)
    finally:
        await bot.close()
