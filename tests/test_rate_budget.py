"""The global rate budget is one budget for every process on the database (issue item 3),
on SQLite and on PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.rate_budget import HEADROOM, RateBudget
from bot.store import Store
from tests.engine_rig import write_lock_held_elsewhere


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)


async def test_item3_two_processes_draw_on_one_budget(store_location: Path | str) -> None:
    clock = Clock()
    stores = [await Store.open(store_location) for _ in range(2)]  # two connections
    try:
        budgets = [RateBudget(s, 50, clock=clock, sleep=clock.sleep) for s in stores]
        for _ in range(10):
            for budget in budgets:
                await budget.wait()
        interval = 1 / (50 * HEADROOM)
        # 20 requests from both "processes" are spaced as one stream at 46.5/s, not two
        assert len(clock.slept) == 19
        assert all(abs(a - interval * i) < 1e-6 for i, a in enumerate(clock.slept, 1))
    finally:
        for store in stores:
            await store.close()


async def test_item3_discord_py_retries_count_but_do_not_wait(any_store: Store) -> None:
    clock = Clock()
    budget = RateBudget(any_store, 50, clock=clock, sleep=clock.sleep)
    await budget.wait()  # the engine pays for its post
    async with budget.prepaid():
        await budget.on_request("POST", "/api/v10/channels/1/messages")  # the post
        await budget.on_request("POST", "/api/v10/channels/1/messages")  # a retry
        await budget.on_request("POST", "/api/v10/channels/1/messages")  # another
    assert clock.slept == []  # retries were never held back...
    await budget.on_request("GET", "/api/v10/channels/1")
    # ...but they were counted: the next request waits behind three turns
    assert len(clock.slept) == 1
    assert abs(clock.slept[0] - 3 / (50 * HEADROOM)) < 1e-6
    await budget.on_request("POST", "/api/v10/interactions/1/abc/callback")
    await budget.on_request("POST", "/api/v10/webhooks/1/abc")
    assert len(clock.slept) == 1  # interaction answers are exempt, as on Discord


async def test_item3_a_locked_store_paces_locally_instead_of_failing(
    any_store: Store, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Another process holds the write lock past the timeout: SQLite's `database is
    locked`, PostgreSQL's lock timeout. Requests are paced in this process alone."""
    clock = Clock()
    budget = RateBudget(any_store, 50, clock=clock, sleep=clock.sleep)
    async with write_lock_held_elsewhere(any_store, monkeypatch):
        for _ in range(3):
            await budget.wait()  # nothing raised
    paced = [r for r in caplog.records if "pacing locally" in r.getMessage()]
    assert len(paced) == 3
    await budget.wait()  # the store's budget again
    assert len([r for r in caplog.records if "pacing locally" in r.getMessage()]) == 3
