"""What members' commands read: the store, name catalogs, statements, the records kept in
memory and an answer cache.

Built once at start-up and passed in.
"""

from __future__ import annotations

import asyncio
import logging
import math
import sys
import time
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field, fields

from bot.charts.render import ChartRenderer
from bot.config import Config
from bot.models import Pledge, Power, Statement
from bot.pledges.cards import Card, power_name
from bot.pledges.content import load_content
from bot.pledges.lookup import Catalog
from bot.store import Store

log = logging.getLogger(__name__)


# How stale a member's answer may be after a change made by another process (the CLI).
FRESHNESS_SECONDS = 1.0
MIB = 1024 * 1024


def footprint(record: Pledge | Power) -> int:
    """Bytes a record holds, estimated by `sys.getsizeof` of it and its fields: for 10,000
    generated pledges 11.1 MiB, where tracemalloc counts 9.8 MiB (shared strings are
    counted each time)."""
    total = sys.getsizeof(record)
    for name in (f.name for f in fields(record)):
        value = getattr(record, name)
        total += sys.getsizeof(value)
        if isinstance(value, tuple):
            total += sum(map(sys.getsizeof, value))
    return total


@dataclass
class Records:
    """Every pledge and power, kept so that `/pledge show` and `/power show` need no query.

    A read crosses to aiosqlite's thread and back, which is most of what a first-time
    answer costs beyond sending it. Kept only while they fit in `[content]
    records_memory_mib` (about 1 KiB each), and refreshed like the answer cache: a content
    load re-reads them all, a status change re-reads the pledges it changed.
    """

    pledges: dict[str, Pledge]
    powers: dict[str, Power]
    # the powers each pledge relies on, in the store's order (`Store.powers(pledge=...)`)
    powers_of: dict[str, list[Power]]
    # each pledge's place in the store's order (`Store.pledges(slugs=...)`)
    order: dict[str, int]

    @classmethod
    def of(cls, pledges: list[Pledge], powers: list[Power], bound_mib: int) -> Records | None:
        """The records, or None when they would take more than `bound_mib` MiB."""
        size = sum(map(footprint, pledges)) + sum(map(footprint, powers))
        if size > bound_mib * MIB:
            log.info(
                "pledges and powers (about %.1f MiB) are read from the store: over "
                "[content] records_memory_mib = %d",
                size / MIB,
                bound_mib,
            )
            return None
        powers_of: dict[str, list[Power]] = {}
        for power in powers:
            for slug in power.pledges:
                powers_of.setdefault(slug, []).append(power)
        return cls(
            {p.slug: p for p in pledges},
            {p.slug: p for p in powers},
            powers_of,
            {p.slug: i for i, p in enumerate(pledges)},
        )

    def pledges_of(self, power: Power) -> list[Pledge]:
        found = [self.pledges[slug] for slug in power.pledges if slug in self.pledges]
        return sorted(found, key=lambda p: self.order[p.slug])

    def update(self, pledges: list[Pledge]) -> None:
        """Pledges re-read after their status changed."""
        for pledge in pledges:
            if pledge.slug in self.pledges:
                self.pledges[pledge.slug] = pledge


@dataclass
class Services:
    config: Config
    store: Store
    pledges: Catalog
    powers: Catalog
    statements: dict[str, Statement]
    claims: Catalog = field(default_factory=lambda: Catalog("claim", []))
    statement_names: Catalog = field(default_factory=lambda: Catalog("statement", []))
    answers: dict[Hashable, list[Card]] = field(default_factory=dict)
    records: Records | None = None  # None: content is over the bound, answers read the store
    # Charts are kept apart from answers, by their data: an answer cached without its
    # picture (drawing failed) gets it once drawn, and one picture serves many answers.
    charts: ChartRenderer = field(default_factory=ChartRenderer)
    _signature: tuple[str | None, int | None, int | None, int] | None = None
    _checked_at: float = -math.inf

    @classmethod
    async def start(cls, config: Config) -> Services:
        """Open the store and load content (skipped when unchanged since last start)."""
        store = await Store.open(config.database)
        try:
            report = await load_content(store, config.content_dir, skip_if_unchanged=True)
            log.info(
                "content %s: %d statements, %d pledges, %d powers",
                "unchanged" if report.skipped else "loaded",
                report.statements,
                report.pledges,
                report.powers,
            )
            services = cls(config, store, Catalog("pledge", []), Catalog("power", []), {})
            await services.fresh()
        except BaseException:
            await store.close()
            raise
        return services

    async def fresh(self) -> None:
        """Notice content loads and status changes, also those made by other processes.

        Checked at most once every FRESHNESS_SECONDS, so most answers need no query.
        """
        now = time.monotonic()
        if now - self._checked_at < FRESHNESS_SECONDS:
            return
        self._checked_at = now
        # Read before what it stands for: a change made meanwhile is seen next time.
        signature = await self.store.content_signature()
        old = self._signature
        if signature == old:
            return
        if old is None or signature[0] != old[0] or (signature[1] or 0) < (old[1] or 0):
            await self.refresh()
        elif signature[1] != old[1] and self.records is not None:
            changes = await self.store.status_history(after_id=old[1] or 0)
            changed = sorted({change.pledge_slug for change in changes})
            self.records.update(await self.store.pledges(slugs=changed))
        self._signature = signature
        self.answers.clear()

    def changed(self) -> None:
        """This process wrote content or a status: look again before the next answer."""
        self._checked_at = -math.inf

    async def cached(
        self, key: Hashable, compute: Callable[[], Awaitable[list[Card]]]
    ) -> list[Card]:
        """A member-facing answer, computed once per content state."""
        await self.fresh()
        found = self.answers.get(key)
        if found is None:
            found = await compute()
            if self.config.answer_cache:
                if len(self.answers) >= self.config.answer_cache:
                    self.answers.clear()
                self.answers[key] = found
        return found

    async def current_pledges(self) -> list[Pledge]:
        """Every pledge in the store's order, as the store has it now, not up to a second
        ago: a briefing composed from them is posted once for its whole slot. From memory
        when kept (one signature query), so a 09:00 digest builds no 10,000 pledges on the
        event loop."""
        self.changed()
        await self.fresh()
        if self.records is not None:
            return list(self.records.pledges.values())
        return await self.store.pledges()

    async def pledge_and_powers(self, slug: str) -> tuple[Pledge | None, list[Power]]:
        """A pledge and the powers it relies on."""
        if self.records is not None:
            return self.records.pledges.get(slug), self.records.powers_of.get(slug, [])
        # both at once: on PostgreSQL each is a round trip of its own
        pledge, powers = await asyncio.gather(
            self.store.pledge(slug), self.store.powers(pledge=slug)
        )
        return pledge, powers

    async def power_and_pledges(self, slug: str) -> tuple[Power | None, list[Pledge]]:
        """A power and the pledges that rely on it."""
        if self.records is not None:
            power = self.records.powers.get(slug)
            return power, [] if power is None else self.records.pledges_of(power)
        power = await self.store.power(slug)
        if power is None or not power.pledges:
            return power, []
        return power, await self.store.pledges(slugs=power.pledges)

    async def refresh(self) -> None:
        """Re-read what changes only when content is loaded: names, statements, records."""
        self.statements = {s.slug: s for s in await self.store.statements()}
        pledges, powers = await self.store.pledges(), await self.store.powers()
        self.records = Records.of(pledges, powers, self.config.records_memory_mib)
        self.pledges = Catalog("pledge", [(p.slug, p.title) for p in pledges])
        self.powers = Catalog("power", [(p.slug, power_name(p)) for p in powers])
        self.claims = Catalog("claim", [(c.slug, c.title) for c in await self.store.claims()])
        self.statement_names = Catalog(
            "statement",
            [(s.slug, s.title) for s in self.statements.values()],
            listed_by="/about",
        )

    async def close(self) -> None:
        await self.store.close()
