"""What the commands depend on, built once at start-up and passed in."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bot.config import Config
from bot.content import load_content
from bot.lookup import Catalog
from bot.models import Statement
from bot.store import Store

if TYPE_CHECKING:
    from bot.briefing_admin import BriefingAdmin

log = logging.getLogger(__name__)


@dataclass
class Services:
    config: Config
    store: Store
    pledges: Catalog
    powers: Catalog
    statements: dict[str, Statement]
    briefings: BriefingAdmin | None = None  # set once the Discord client exists

    @classmethod
    async def start(cls, config: Config) -> Services:
        """Open the store and load content (skipped when unchanged since last start)."""
        store = await Store.open(config.database_path)
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
        except BaseException:
            await store.close()
            raise
        return services

    async def refresh(self) -> None:
        """Re-read what changes only when content is loaded: names and statements."""
        self.statements = {s.slug: s for s in await self.store.statements()}
        self.pledges = Catalog("pledge", [(p.slug, p.title) for p in await self.store.pledges()])
        self.powers = Catalog(
            "power",
            [
                (p.slug, f"{p.name} ({p.abbreviation})" if p.abbreviation else p.name)
                for p in await self.store.powers()
            ],
        )

    async def close(self) -> None:
        await self.store.close()
