"""What members' commands read: the store, name catalogs, statements and an answer cache.

Built once at start-up and passed in.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field

from bot.charts.render import ChartRenderer
from bot.config import Config
from bot.models import Statement
from bot.pledges.cards import Card, power_name
from bot.pledges.content import load_content
from bot.pledges.lookup import Catalog
from bot.store import Store

log = logging.getLogger(__name__)


# How stale a member's answer may be after a change made by another process (the CLI).
FRESHNESS_SECONDS = 1.0


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
            await services.refresh()
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
        signature = await self.store.content_signature()
        if signature == self._signature:
            return
        if self._signature is not None and signature[0] != self._signature[0]:
            await self.refresh()
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

    async def refresh(self) -> None:
        """Re-read what changes only when content is loaded: names and statements."""
        self.statements = {s.slug: s for s in await self.store.statements()}
        self.pledges = Catalog("pledge", [(p.slug, p.title) for p in await self.store.pledges()])
        self.powers = Catalog("power", [(p.slug, power_name(p)) for p in await self.store.powers()])
        self.claims = Catalog("claim", [(c.slug, c.title) for c in await self.store.claims()])
        self.statement_names = Catalog(
            "statement",
            [(s.slug, s.title) for s in self.statements.values()],
            listed_by="/about",
        )

    async def close(self) -> None:
        await self.store.close()
