"""The global rate budget is one budget for every process on the database (issue item 3),
on SQLite and on PostgreSQL, on one clock that may step (issue 17 item 8).

A budget on SQLite reads the fake `Clock` it is given; on PostgreSQL it reads the
server's clock, which moves on in real time: `database_now` reads whichever it is, so
the tests bound what the real clock may have added.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from bot.rate_budget import HEADROOM, RateBudget
from bot.store import Store
from tests.engine_rig import write_lock_held_elsewhere

BOOKED = "SELECT next_at FROM rate_budget WHERE name = 'global'"
REPAIRED = "booking from now instead"


class Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)


async def database_now(store: Store, clock: Clock) -> float:
    """Now by the clock a budget on `store` reads: the PostgreSQL server's, else `clock`."""
    if store.db.dialect == "postgresql":
        return float(await store.scalar("SELECT extract(epoch FROM clock_timestamp())::float8"))
    return clock()


async def test_item3_two_processes_draw_on_one_budget(store_location: Path | str) -> None:
    clock = Clock()
    stores = [await Store.open(store_location) for _ in range(2)]  # two connections
    try:
        budgets = [RateBudget(s.db, 50, clock=clock, sleep=clock.sleep) for s in stores]
        before = await database_now(stores[0], clock)
        for _ in range(10):
            for budget in budgets:
                await budget.wait()
        after = await database_now(stores[0], clock)
        interval = 1 / (50 * HEADROOM)
        # 20 requests from both "processes" book one stream of 20 turns at 46.5/s, not two
        booked = await stores[0].scalar(BOOKED)
        assert before + 20 * interval - 1e-6 <= booked <= after + 20 * interval + 1e-6
        if stores[0].db.dialect == "sqlite":  # the fake clock stood still: exact waits
            assert len(clock.slept) == 19
            assert all(abs(a - interval * i) < 1e-6 for i, a in enumerate(clock.slept, 1))
    finally:
        for store in stores:
            await store.close()


async def test_item3_discord_py_retries_count_but_do_not_wait(any_store: Store) -> None:
    clock = Clock()
    # 5 a second: PostgreSQL's clock, which moves on, cannot catch up with 3 turns here
    budget = RateBudget(any_store.db, 5, clock=clock, sleep=clock.sleep)
    before = await database_now(any_store, clock)
    await budget.wait()  # the engine pays for its post
    async with budget.prepaid():
        await budget.on_request("POST", "/api/v10/channels/1/messages")  # the post
        await budget.on_request("POST", "/api/v10/channels/1/messages")  # a retry
        await budget.on_request("POST", "/api/v10/channels/1/messages")  # another
    assert clock.slept == []  # retries were never held back...
    await budget.on_request("GET", "/api/v10/channels/1")
    moved = await database_now(any_store, clock) - before
    # ...but they were counted: the next request waits behind three turns
    assert len(clock.slept) == 1
    three = 3 / (5 * HEADROOM)
    assert three - moved - 1e-6 <= clock.slept[0] <= three + 1e-6
    await budget.on_request("POST", "/api/v10/interactions/1/abc/callback")
    await budget.on_request("POST", "/api/v10/webhooks/1/abc")
    assert len(clock.slept) == 1  # interaction answers are exempt, as on Discord


async def test_item17_8_a_clock_stepped_back_an_hour_does_not_wait_an_hour(
    store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    """SQLite: one host, whose clock the budget reads (here a fake one)."""
    clock = Clock()
    budget = RateBudget(store.db, 50, clock=clock, sleep=clock.sleep)
    await budget.wait()
    clock.now -= 3600  # NTP steps the clock back an hour
    for _ in range(3):
        await budget.wait()
    interval = 1 / (50 * HEADROOM)
    # the first turn after the step is now; the next ones are paced from it
    assert clock.slept == pytest.approx([interval, 2 * interval])
    assert caplog.text.count(REPAIRED) == 1


async def test_item17_8_a_far_future_booked_turn_is_repaired(
    any_store: Store, caplog: pytest.LogCaptureFixture
) -> None:
    """A turn booked an hour ahead (by a clock since stepped back, or one far ahead) is
    repaired, on both backends, not waited for by every request."""
    clock = Clock(time.time())  # the host's time: PostgreSQL's server runs on this host
    # 5 a second: PostgreSQL's clock, which moves on, cannot catch up with 2 turns here
    budget = RateBudget(any_store.db, 5, clock=clock, sleep=clock.sleep)
    async with any_store.transaction() as tx:
        far = await database_now(any_store, clock) + 3600
        await tx.execute("INSERT INTO rate_budget(name, next_at) VALUES ('global', ?)", (far,))
    for _ in range(3):
        await budget.wait()
    assert len(clock.slept) == 2
    assert all(0 < a <= 2 / (5 * HEADROOM) + 1e-6 for a in clock.slept), clock.slept
    assert await any_store.scalar(BOOKED) < far - 3500
    assert caplog.text.count(REPAIRED) == 1


async def test_item17_8_hosts_with_different_clocks_share_the_servers_clock(
    pg_migrated_dsn: str, caplog: pytest.LogCaptureFixture
) -> None:
    """PostgreSQL: two hosts whose clocks are 2 s apart book turns on the server's clock.
    Neither waits 2 s per request (the one behind, on its own clock), nor books turns too
    close together (the one ahead), nor has its turns repaired as broken."""
    now = time.time()
    clocks = [Clock(now), Clock(now - 2)]
    stores = [await Store.open(pg_migrated_dsn) for _ in clocks]
    try:
        # 10 a second, 8 requests: queued turns stay within the second a wait may last
        budgets = [
            RateBudget(s.db, 10, clock=c, sleep=c.sleep)
            for s, c in zip(stores, clocks, strict=True)
        ]
        before = await database_now(stores[0], clocks[0])
        for _ in range(4):
            for budget in budgets:
                await budget.wait()
        after = await database_now(stores[0], clocks[0])
        interval = 1 / (10 * HEADROOM)
        slept = clocks[0].slept + clocks[1].slept
        assert all(a <= 8 * interval + 1e-6 for a in slept), slept
        booked = await stores[0].scalar(BOOKED)
        assert before + 8 * interval - 1e-6 <= booked <= after + 8 * interval + 1e-6
        assert REPAIRED not in caplog.text
    finally:
        for store in stores:
            await store.close()


async def test_item3_a_locked_store_paces_locally_instead_of_failing(
    any_store: Store, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Another process holds the write lock past the timeout: SQLite's `database is
    locked`, PostgreSQL's lock timeout. Requests are paced in this process alone."""
    clock = Clock()
    budget = RateBudget(any_store.db, 50, clock=clock, sleep=clock.sleep)
    async with write_lock_held_elsewhere(any_store, monkeypatch):
        for _ in range(3):
            await budget.wait()  # nothing raised
    paced = [r for r in caplog.records if "pacing locally" in r.getMessage()]
    assert len(paced) == 3
    await budget.wait()  # the store's budget again
    assert len([r for r in caplog.records if "pacing locally" in r.getMessage()]) == 3
