"""What each member command answers, as cards: store + catalogs in, cards out.

The Discord adapters in `commands/` only parse options and send these cards.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable

from bot.errors import UserError
from bot.models import STATUS_BY_SLUG, Statement
from bot.pledges import cards
from bot.pledges.cards import Card
from bot.pledges.content import UPDATED_AT_KEY
from bot.pledges.services import Services

Answer = Callable[..., Awaitable[list[Card]]]


def cached_answer(answer: Answer) -> Answer:
    """Serve an answer from the services' cache, keyed on the command and its options."""

    @functools.wraps(answer)
    async def serve(services: Services, *options: str | None) -> list[Card]:
        return await services.cached(
            (answer.__name__, *options), lambda: answer(services, *options)
        )

    return serve


def _statement(services: Services, slug: str) -> Statement:
    statement = services.statements.get(slug)
    if statement is None:  # only if content was reloaded under us
        raise UserError("That record's statement is no longer loaded; try again later.")
    return statement


@cached_answer
async def pledge_list(services: Services, statement: str | None, status: str | None) -> list[Card]:
    heading = "Pledges"
    if statement:
        found = services.statements.get(statement)
        if found is None:
            names = ", ".join(f"`{slug}`" for slug in services.statements)
            raise UserError(f"No statement called “{cards.shorten(statement, 80)}”. Try: {names}")
        heading = f"Pledges: {found.title}"
    if status:
        if status not in STATUS_BY_SLUG:
            raise UserError("Unknown status. Pick one from the list.")
        heading += f" — {cards.status_label(status)}"
    pledges = await services.store.pledges(statement=statement, status=status)
    return cards.pledge_list_pages(pledges, heading)


@cached_answer
async def pledge_show(services: Services, query: str) -> list[Card]:
    pledge = await services.store.pledge(services.pledges.resolve(query))
    if pledge is None:
        raise UserError("That pledge was removed a moment ago; try again.")
    statement = _statement(services, pledge.statement_slug)
    return cards.paginate(cards.pledge_card(pledge, statement))


@cached_answer
async def pledge_search(services: Services, query: str) -> list[Card]:
    if not query.strip():
        raise UserError("Type some words to search for.")
    return cards.paginate(cards.search_card(query, await services.store.search(query)))


@cached_answer
async def pledge_history(services: Services, query: str) -> list[Card]:
    pledge = await services.store.pledge(services.pledges.resolve(query))
    if pledge is None:
        raise UserError("That pledge was removed a moment ago; try again.")
    return cards.paginate(
        cards.history_card(pledge, await services.store.status_history(pledge.slug))
    )


@cached_answer
async def power_list(services: Services) -> list[Card]:
    return cards.paginate(cards.power_list_card(await services.store.powers()))


@cached_answer
async def power_show(services: Services, query: str) -> list[Card]:
    power = await services.store.power(services.powers.resolve(query))
    if power is None:
        raise UserError("That power was removed a moment ago; try again.")
    related = await services.store.pledges(slugs=power.pledges) if power.pledges else []
    statement = _statement(services, power.statement_slug)
    return cards.paginate(cards.power_card(power, statement, related))


@cached_answer
async def about(services: Services) -> list[Card]:
    store = services.store
    return cards.paginate(
        cards.about_card(
            list(services.statements.values()),
            await store.claims(),
            await store.get_meta(UPDATED_AT_KEY),
        )
    )


async def set_status(
    services: Services, query: str, status: str, note: str, evidence: str, by: str
) -> list[Card]:
    if evidence and not evidence.startswith(("https://", "http://")):
        raise UserError("Evidence must be a link starting with https://.")
    slug = services.pledges.resolve(query)
    change = await services.store.set_status(
        slug, status, note=note, evidence_url=evidence, changed_by=by
    )
    services.changed()
    pledge = await services.store.pledge(slug)
    assert pledge is not None
    return [
        Card(
            title=f"Status recorded: {pledge.title}",
            description=f"{cards.status_label(change.from_status)} → "
            f"{cards.status_label(change.to_status)}\n{note}",
        )
    ]
