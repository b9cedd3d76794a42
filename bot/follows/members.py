"""What /follow and the alert buttons answer, without Discord: store and catalogs in,
cards out. `commands.follow` only parses what Discord sends and answers privately."""

from __future__ import annotations

from bot.errors import UserError
from bot.follows.follows import FOLLOW_KINDS, FOLLOW_LIMIT, Follow, FollowKind, Follows, Pause
from bot.pledges import answers, cards
from bot.pledges.cards import AUTOCOMPLETE_CHOICES, CHOICE_NAME_LIMIT, Card
from bot.pledges.lookup import Catalog
from bot.pledges.services import Services

KIND_LABELS: dict[FollowKind, str] = {
    "pledge": "Pledge",
    "power": "Power",
    "statement": "Statement",
}
WHAT_ALERTS: dict[FollowKind, str] = {
    "pledge": "I'll DM you when its status changes.",
    "power": "I'll DM you when the status of a pledge it serves changes.",
    "statement": (
        "I'll DM you when one of its pledges changes status, and when a new edition adds a "
        "pledge or changes one's summary."
    ),
}
TITLE = "Following"
LINES_PER_PAGE = 20
TITLE_IN_LINE = 90  # a followed item's title, shortened, in /follow list
ITEM_HELP = "Start typing a pledge, a power or a statement, and pick it from the list"
LIST_FOOTER = (
    "Stop one with /follow remove; delete everything kept about your follows with /follow clear."
)


def item_value(kind: FollowKind, slug: str) -> str:
    """An `item` option's value: what the command gets back from autocomplete."""
    return f"{kind}:{slug}"


def shown(text: str) -> str:
    """What a member typed, quoted back literally."""
    return cards.escape_markdown(cards.shorten(" ".join(text.split()), 80)) or "(nothing)"


class FollowDesk:
    """What /follow and the alert buttons answer: store and catalogs in, cards out."""

    def __init__(self, services: Services, follows: Follows) -> None:
        self.services = services
        self.follows = follows

    def catalog(self, kind: FollowKind) -> Catalog:
        return {
            "pledge": self.services.pledges,
            "power": self.services.powers,
            "statement": self.services.statement_names,
        }[kind]

    def label(self, kind: FollowKind, slug: str, limit: int = CHOICE_NAME_LIMIT) -> str:
        """The item as members see it, "Pledge · <title>" (its slug once no longer carried),
        within `limit` characters."""
        title = self.catalog(kind).title_of(slug)
        gone = "" if title is not None else " (no longer carried)"
        return cards.shorten(f"{KIND_LABELS[kind]} · {title or slug}", limit - len(gone)) + gone

    # -- choosing an item ---------------------------------------------------------

    def choices(self, text: str) -> list[tuple[str, str]]:
        """Pledges, powers and statements matching `text`, each labelled with its kind.

        The 25 places are shared out in turn, so a kind with thousands of matches never
        crowds the others out; each kind keeps its best matches first.
        """
        found = {kind: self.catalog(kind).matches(text[:200]) for kind in FOLLOW_KINDS}
        taken = dict.fromkeys(FOLLOW_KINDS, 0)
        room = AUTOCOMPLETE_CHOICES
        while room:
            more = [k for k in FOLLOW_KINDS if taken[k] < len(found[k])][:room]
            if not more:
                break
            for kind in more:
                taken[kind] += 1
            room -= len(more)
        return [
            (self.label(kind, entry.slug), item_value(kind, entry.slug))
            for kind in FOLLOW_KINDS
            for entry in found[kind][: taken[kind]]
        ]

    def item(self, text: str) -> tuple[FollowKind, str]:
        """The item an `item` option names: a choice's value, or one item's exact name."""
        typed_kind, colon, slug = text.strip().partition(":")
        for kind in FOLLOW_KINDS:
            if colon and typed_kind == kind and self.catalog(kind).title_of(slug) is not None:
                return kind, slug
        query = " ".join(text.split()).casefold()
        exact = [
            (known, entry.slug)
            for known in FOLLOW_KINDS
            for entry in self.catalog(known).matches(query)
            if query and query in (entry.slug, entry.folded)
        ]
        if len(exact) == 1:
            return exact[0]
        if exact:
            raise UserError(
                f"“{shown(text)}” names more than one item. Pick the one you mean from the "
                "list as you type: each choice says whether it is a pledge, a power or a "
                "statement."
            )
        raise UserError(
            f"Unknown item: I carry no pledge, power or statement called “{shown(text)}”. "
            "Pick one from the list as you type (/pledge list, /power list and /about show "
            "what I carry)."
        )

    async def own_choices(self, user_id: int, text: str) -> list[tuple[str, str]]:
        """The member's own follows matching `text` (for /follow remove)."""
        folded = " ".join(text.split()).casefold()
        found = []
        for follow in await self.follows.of(user_id):
            name = self.label(follow.kind, follow.slug)
            if folded in name.casefold() or folded in follow.slug:
                found.append((name, item_value(follow.kind, follow.slug)))
        return found[:AUTOCOMPLETE_CHOICES]

    def own_item(self, follows: list[Follow], text: str) -> tuple[FollowKind, str]:
        """Which of the member's follows `text` names: a choice's value or its exact name."""
        query = " ".join(text.split()).casefold()
        for follow in follows:
            names = (
                item_value(follow.kind, follow.slug),
                follow.slug,
                (self.catalog(follow.kind).title_of(follow.slug) or "").casefold(),
                self.label(follow.kind, follow.slug).casefold(),
            )
            if query and query in names:
                return follow.kind, follow.slug
        raise UserError(
            f"You don't follow “{shown(text)}”. Pick one of your follows from the list as you "
            "type, or see them all with /follow list."
        )

    # -- answers --------------------------------------------------------------------

    async def add(self, user_id: int, text: str) -> list[Card]:
        await self.services.fresh()
        kind, slug = self.item(text)
        name = self.label(kind, slug)
        outcome = await self.follows.add(user_id, kind, slug)
        if outcome == "already":
            raise UserError(f"You already follow **{name}**: nothing to add.")
        if outcome == "limit":
            raise UserError(
                f"You already follow {FOLLOW_LIMIT} items, the most one member can. Stop "
                f"following one with /follow remove, then add **{name}**."
            )
        count = len(await self.follows.of(user_id))
        text = (
            f"You now follow **{name}**. {WHAT_ALERTS[kind]}\n\n"
            "Alerts come by direct message, which Discord lets me send while we share a server "
            "and you allow DMs from its members. "
            f"You follow {count} of at most {FOLLOW_LIMIT} items."
        )
        pause = await self.follows.pause_of(user_id)
        if pause is not None:
            text += "\n\n" + paused_text(pause)
        return [Card(title=TITLE, description=text)]

    async def listing(self, user_id: int) -> list[Card]:
        await self.services.fresh()
        follows = await self.follows.of(user_id)
        pause = await self.follows.pause_of(user_id)
        head = paused_text(pause) if pause is not None else ""
        if not follows:
            nothing = (
                "You follow nothing yet. Follow a pledge, a power or a whole statement with "
                "/follow add, and I'll DM you when it changes."
            )
            return [
                Card(
                    title="What you follow", description="\n\n".join(filter(None, [head, nothing]))
                )
            ]
        lines = [f"• {self.label(f.kind, f.slug, TITLE_IN_LINE)}" for f in follows]
        chunks = [lines[i : i + LINES_PER_PAGE] for i in range(0, len(lines), LINES_PER_PAGE)]
        title = f"What you follow: {len(follows)} of {FOLLOW_LIMIT}"
        pages = []
        for number, chunk in enumerate(chunks, 1):
            text = "\n".join(chunk)
            if number == 1 and head:
                text = f"{head}\n\n{text}"
            counter = f" ({number}/{len(chunks)})" if len(chunks) > 1 else ""
            pages.append(Card(title=title + counter, description=text, footer=LIST_FOOTER))
        return pages

    async def remove(self, user_id: int, text: str) -> list[Card]:
        await self.services.fresh()
        kind, slug = self.own_item(await self.follows.of(user_id), text)
        return [await self.stop(user_id, kind, slug)]

    async def stop(self, user_id: int, kind: FollowKind, slug: str) -> Card:
        """Stop one follow (/follow remove, or an alert's button); refused if already gone."""
        name = self.label(kind, slug)
        if not await self.follows.remove(user_id, kind, slug):
            raise UserError(f"You weren't following **{name}** any more: nothing to stop.")
        return Card(
            title=TITLE,
            description=(
                f"You no longer follow **{name}**: no more alerts for it. Follow it again "
                "with /follow add."
            ),
        )

    async def clear(self, user_id: int) -> list[Card]:
        count = await self.follows.clear(user_id)
        followed = f"your {count} follow{'s' if count != 1 else ''}" if count else "no follows"
        return [
            Card(
                title=TITLE,
                description=(
                    f"Done: you had {followed}. Nothing about your follows is kept now: no "
                    "follows, no DM channel, no pause, no record of the alerts I sent you."
                ),
            )
        ]

    async def resume(self, user_id: int) -> list[Card]:
        if not await self.follows.resume(user_id):
            raise UserError("Your alerts aren't paused: there is nothing to resume.")
        text = (
            "Alerts resumed: I'll DM you about changes from now on (those made while your "
            "alerts were paused are not sent). Keep DMs open to me in a server we share."
        )
        return [Card(title=TITLE, description=text)]

    async def show(self, slug: str) -> list[Card]:
        """A pledge's card, for an alert's "Show pledge" button."""
        return await answers.pledge_show(self.services, slug)


def paused_text(pause: Pause) -> str:
    reason = cards.escape_markdown(cards.shorten(pause.reason, 300))
    return (
        f"⏸️ **Your alerts are paused** (since {cards.discord_date(pause.since)}): I couldn't "
        f"DM you ({reason}). Open your direct messages to me in a server we share (allow DMs "
        "from its members in its Privacy Settings), or join one I am in if we share none, then "
        "run /follow resume."
    )
