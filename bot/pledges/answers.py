"""What each member command answers, as cards: store + catalogs in, cards out.

The Discord adapters in `commands/` only parse options and send these cards.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace

from bot.charts.spec import ChartSpec, status_bars, status_timeline
from bot.errors import UserError
from bot.models import STATUS_BY_SLUG, Pledge, Statement
from bot.pledges import cards
from bot.pledges.cards import Card
from bot.pledges.content import LOADED_AT_KEY
from bot.pledges.ratings import rating_problem
from bot.pledges.services import Services
from bot.pledges.suggestions import Suggestions

Answer = Callable[..., Awaitable[list[Card]]]


def cached_answer(answer: Answer) -> Answer:
    """Serve an answer from the services' cache, keyed on the command and its options;
    its charts are drawn (or found drawn) after, so a failed drawing is never cached."""

    @functools.wraps(answer)
    async def serve(services: Services, *options: str | None) -> list[Card]:
        found = await services.cached(
            (answer.__name__, *options), lambda: answer(services, *options)
        )
        return await cards.draw_charts(found, services.charts.draw)

    return serve


async def statement_chart(
    services: Services, statement: Statement, pledges: Sequence[Pledge] | None = None
) -> ChartSpec | None:
    """A statement's pledges by status (all of them, whatever a list was filtered by)."""
    if pledges is None:
        pledges = await services.store.pledges(statement=statement.slug)
    return status_bars(statement.title, [p.status for p in pledges])


def _statement(services: Services, slug: str) -> Statement:
    statement = services.statements.get(slug)
    if statement is None:  # only if content was reloaded under us
        raise UserError("That record's statement is no longer loaded; try again later.")
    return statement


@cached_answer
async def pledge_list(services: Services, statement: str | None, status: str | None) -> list[Card]:
    slugs = (
        [services.statement_names.resolve(statement)] if statement else list(services.statements)
    )
    label = ""
    if status:
        if status not in STATUS_BY_SLUG:
            raise UserError("Unknown status. Pick one from the list.")
        label = cards.status_label(status)
    pledges = await services.store.pledges(statement=slugs[0] if statement else None, status=status)
    groups = [
        (services.statements[slug], [p for p in pledges if p.statement_slug == slug])
        for slug in slugs
        if slug in services.statements
    ]
    shown = [(s, ps) for s, ps in groups if ps or statement]
    pages = cards.pledge_list_pages(shown, label)
    if not shown:
        return pages
    first, first_pledges = shown[0]
    chart = await statement_chart(services, first, None if status else first_pledges)
    return cards.with_chart(pages, chart)


@cached_answer
async def pledge_show(services: Services, query: str) -> list[Card]:
    pledge, linked = await services.pledge_and_powers(services.pledges.resolve(query))
    if pledge is None:
        raise UserError("That pledge was removed a moment ago; try again.")
    statement = _statement(services, pledge.statement_slug)
    return cards.paginate(cards.pledge_card(pledge, statement, linked))


@cached_answer
async def pledge_search(services: Services, query: str) -> list[Card]:
    if not query.strip():
        raise UserError("Type some words to search for.")
    hits = await services.store.search(query)
    return cards.paginate(cards.search_card(query, hits, services.statements))


@cached_answer
async def pledge_history(services: Services, query: str) -> list[Card]:
    pledge = await services.store.pledge(services.pledges.resolve(query))
    if pledge is None:
        raise UserError("That pledge was removed a moment ago; try again.")
    changes = await services.store.status_history(pledge.slug)
    statement = _statement(services, pledge.statement_slug)
    return cards.with_chart(
        cards.paginate(cards.history_card(pledge, changes, statement)),
        status_timeline(pledge.title, changes),
    )


@cached_answer
async def power_list(services: Services) -> list[Card]:
    powers = await services.store.powers()
    return cards.paginate(cards.power_list_card(powers, services.statements))


@cached_answer
async def power_show(services: Services, query: str) -> list[Card]:
    power, related = await services.power_and_pledges(services.powers.resolve(query))
    if power is None:
        raise UserError("That power was removed a moment ago; try again.")
    statement = _statement(services, power.statement_slug)
    return cards.paginate(cards.power_card(power, statement, related))


@cached_answer
async def claim_list(services: Services, statement: str | None) -> list[Card]:
    slug = services.statement_names.resolve(statement) if statement else None
    claims = await services.store.claims(statement=slug)
    return cards.claim_list_pages(claims, services.statements)


@cached_answer
async def claim_show(services: Services, query: str) -> list[Card]:
    claim = await services.store.claim(services.claims.resolve(query))
    if claim is None:
        raise UserError("That claim was removed a moment ago; try again.")
    statement = _statement(services, claim.statement_slug)
    return cards.paginate(cards.claim_card(claim, statement))


@cached_answer
async def about(services: Services, statement: str | None = None) -> list[Card]:
    store = services.store
    if statement:
        found = _statement(services, services.statement_names.resolve(statement))
        content = await store.statement_content(found.slug)
        counts = (
            {}
            if content is None
            else {
                "pledges": len(content.pledges),
                "powers": len(content.powers),
                "claims": len(content.claims),
            }
        )
        chart = None if content is None else await statement_chart(services, found, content.pledges)
        return cards.with_chart(cards.paginate(cards.statement_card(found, counts)), chart)
    general = cards.about_card(
        list(services.statements.values()),
        await store.claims(),
        await store.get_meta(LOADED_AT_KEY),
    )
    suggested = cards.suggestions_field(*await Suggestions(store.db).record())
    return cards.paginate(replace(general, fields=(*general.fields, suggested)))


async def set_status(
    services: Services, query: str, status: str, note: str, evidence: str, by: str
) -> list[Card]:
    """An operator's rating from Discord, under the same rule as the CLI's."""
    slug = services.pledges.resolve(query)
    if status not in STATUS_BY_SLUG:
        raise UserError("Unknown status. Pick one from the list.")
    problem = rating_problem(status, evidence.strip())
    if problem:
        raise UserError(f"Not recorded: {problem}.")
    change = await services.store.set_status(
        slug, status, note=note, evidence_url=evidence.strip(), changed_by=by
    )
    services.changed()
    pledge = await services.store.pledge(slug)
    assert pledge is not None
    return [
        Card(
            title=f"Status recorded: {pledge.title}",
            description=f"{cards.status_label(change.from_status)} → "
            f"{cards.status_label(change.to_status)}\n{note}",
            fields=(cards.Field("Rating as members see it", cards.rating_text(pledge)),),
        )
    ]
