"""Members' suggestions (bot.pledges.suggestions) on a real store, both backends, with a
fake clock: each limit, the same pledge and link backing the waiting suggestion, blocks,
accept recording the status, its history entry and the followers' event in one
transaction, reject keeping its reason, nothing deleted, and each outcome told once."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from bot.errors import UserError
from bot.models import StatusChange
from bot.pledges import cards
from bot.pledges import suggestions as suggestions_module
from bot.pledges.suggestions import (
    DAILY_LIMIT,
    NOTE_LIMIT,
    OPEN_LIMIT,
    STALE_SENDING,
    Notice,
    Suggestions,
    outcome_card,
    review_card,
)
from bot.store import Store
from tests.engine_rig import FakeClock, store_on_both_backends

__all__ = ["store_on_both_backends"]

PLEDGE = "europol-partnership"
OTHER = "europe-security-agreement"
LINK = "https://example.org/talks"
MEMBER, OTHER_MEMBER, THIRD = 101 << 22, 102 << 22, 103 << 22
GUILD = 81_000_000_000_000_000
START = datetime(2026, 10, 20, 12, 0, tzinfo=UTC)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START)


@pytest.fixture
def suggestions(loaded_store: Store, clock: FakeClock) -> Suggestions:
    return Suggestions(loaded_store.db, clock=clock)


async def count(store: Store, table: str) -> int:
    return int(await store.scalar(f"SELECT count(*) FROM {table}"))


async def test_a_suggestion_keeps_what_the_member_gave(
    suggestions: Suggestions, loaded_store: Store
) -> None:
    done = await suggestions.suggest(MEMBER, GUILD, PLEDGE, "in-progress", f"  {LINK} ", " Why ")
    s = done.suggestion
    assert (s.pledge_slug, s.status, s.evidence_url, s.note) == (PLEDGE, "in-progress", LINK, "Why")
    assert (s.user_id, s.guild_id, s.state) == (MEMBER, GUILD, "open")
    assert s.created_at == START.isoformat(timespec="microseconds")
    assert (done.backed, done.open_count, done.today_count) == (False, 1, 1)
    in_a_dm = await suggestions.suggest(MEMBER, None, OTHER, "stalled", LINK)
    assert in_a_dm.suggestion.guild_id is None and in_a_dm.suggestion.note == ""
    assert await suggestions.get(s.id) == s
    # a suggestion changes nothing public until an operator accepts it
    pledge = await loaded_store.pledge(PLEDGE)
    assert pledge is not None and pledge.status == "not-yet-rated"
    assert await count(loaded_store, "status_history") == 0


@pytest.mark.parametrize(
    ("status", "evidence", "note", "said"),
    [
        ("done", LINK, "", "Unknown status"),
        ("in-progress", "", "", "needs evidence"),
        ("in-progress", "   ", "", "needs evidence"),
        ("in-progress", "ftp://example.org/a", "", "only http:// and https://"),
        ("in-progress", "javascript:alert(1)", "", "only http:// and https://"),
        ("in-progress", "https://example.org/a b", "", "cannot contain spaces"),
        ("in-progress", "https://", "", "names no web site"),
        ("in-progress", "https://example.org/" + "a" * 490, "", "at most 500 fit"),
        ("in-progress", LINK, "n" * (NOTE_LIMIT + 1), "501 characters long; at most 500"),
        ("in-progress", LINK, "a\x00b", "NUL"),
    ],
)
async def test_bad_input_is_refused_plainly_and_nothing_is_recorded(
    suggestions: Suggestions, loaded_store: Store, status: str, evidence: str, note: str, said: str
) -> None:
    with pytest.raises(UserError) as refused:
        await suggestions.suggest(MEMBER, GUILD, PLEDGE, status, evidence, note)
    assert said in str(refused.value)
    assert "Nothing was recorded." in str(refused.value)
    assert await count(loaded_store, "suggestions") == 0


async def test_a_note_of_exactly_500_characters_is_taken(suggestions: Suggestions) -> None:
    done = await suggestions.suggest(MEMBER, GUILD, PLEDGE, "in-progress", LINK, "n" * NOTE_LIMIT)
    assert len(done.suggestion.note) == NOTE_LIMIT


async def test_the_status_a_pledge_already_has_is_refused(
    suggestions: Suggestions, loaded_store: Store
) -> None:
    with pytest.raises(UserError, match="already rated ⚪ Not yet rated"):
        await suggestions.suggest(MEMBER, GUILD, PLEDGE, "not-yet-rated", LINK)
    assert await count(loaded_store, "suggestions") == 0


async def test_three_open_suggestions_a_member_at_most(
    suggestions: Suggestions, loaded_store: Store
) -> None:
    made = [
        await suggestions.suggest(MEMBER, GUILD, PLEDGE, "in-progress", f"{LINK}/{n}")
        for n in range(OPEN_LIMIT)
    ]
    assert [d.open_count for d in made] == [1, 2, 3]
    with pytest.raises(UserError) as refused:
        await suggestions.suggest(MEMBER, GUILD, OTHER, "stalled", f"{LINK}/more")
    text = str(refused.value)
    assert "3 suggestions waiting for review (#1, #2, #3)" in text
    assert "Nothing was recorded." in text
    # another member is not held back by it
    await suggestions.suggest(OTHER_MEMBER, GUILD, OTHER, "stalled", f"{LINK}/more")
    # once one is decided, the member may suggest again
    await suggestions.reject(made[0].suggestion.id, by="operator:ann", reason="Not about it")
    again = await suggestions.suggest(MEMBER, GUILD, OTHER, "stalled", f"{LINK}/again")
    assert again.open_count == OPEN_LIMIT
    assert await count(loaded_store, "suggestions") == 5


async def test_ten_a_day_a_member_at_most_backings_included(
    suggestions: Suggestions, loaded_store: Store, clock: FakeClock
) -> None:
    """Backings count towards the day's 10 (operators read each) but not the 3 open."""
    others = [(200 + n) << 22 for n in range(4)]
    links = [f"{LINK}/{n}" for n in range(DAILY_LIMIT)]
    for n, link in enumerate(links):  # other members' suggestions to back
        await suggestions.suggest(others[n // 3], GUILD, PLEDGE, "in-progress", link)
    for n in range(2):  # two of the member's own
        clock.now = START + timedelta(minutes=n)
        await suggestions.suggest(MEMBER, GUILD, OTHER, "stalled", f"{LINK}/own/{n}")
    for n, link in enumerate(links[:8]):
        clock.now = START + timedelta(minutes=10 + n)
        done = await suggestions.suggest(MEMBER, GUILD, PLEDGE, "in-progress", link)
        assert done.backed and done.open_count == 2
    assert done.today_count == DAILY_LIMIT
    with pytest.raises(UserError) as refused:
        await suggestions.suggest(MEMBER, GUILD, PLEDGE, "in-progress", links[8])
    frees_up = int((START + timedelta(hours=24)).timestamp())  # the oldest of the ten
    assert "handed in 10 suggestions within 24 hours" in str(refused.value)
    assert f"<t:{frees_up}:R>" in str(refused.value)
    with pytest.raises(UserError, match="within 24 hours"):  # a new one too
        await suggestions.suggest(MEMBER, GUILD, OTHER, "stalled", f"{LINK}/own/new")
    backers_before = await count(loaded_store, "suggestion_backers")
    clock.now = START + timedelta(hours=24, seconds=1)
    done = await suggestions.suggest(MEMBER, GUILD, PLEDGE, "in-progress", links[8])
    assert done.backed and done.today_count == DAILY_LIMIT
    assert await count(loaded_store, "suggestion_backers") == backers_before + 1


async def test_the_same_pledge_and_link_backs_the_waiting_suggestion(
    suggestions: Suggestions, loaded_store: Store
) -> None:
    first = await suggestions.suggest(MEMBER, GUILD, PLEDGE, "in-progress", LINK, "Talks")
    backed = await suggestions.suggest(OTHER_MEMBER, None, PLEDGE, "delivered", LINK, "Done!")
    assert backed.backed and backed.suggestion.id == first.suggestion.id
    assert backed.open_count == 0  # not one of the backer's open suggestions
    [backer] = backed.suggestion.backers
    assert (backer.user_id, backer.guild_id, backer.status, backer.note) == (
        OTHER_MEMBER,
        None,
        "delivered",
        "Done!",
    )
    await suggestions.suggest(THIRD, GUILD, PLEDGE, "in-progress", LINK)
    found = await suggestions.get(first.suggestion.id)
    assert found is not None and [b.user_id for b in found.backers] == [OTHER_MEMBER, THIRD]
    for who in (MEMBER, OTHER_MEMBER):  # handing it in again records nothing
        with pytest.raises(UserError, match="already handed in this link"):
            await suggestions.suggest(who, GUILD, PLEDGE, "stalled", LINK, "again")
    assert await count(loaded_store, "suggestions") == 1
    assert await count(loaded_store, "suggestion_backers") == 2
    # the same link for another pledge is a suggestion of its own
    elsewhere = await suggestions.suggest(OTHER_MEMBER, GUILD, OTHER, "stalled", LINK)
    assert not elsewhere.backed and elsewhere.suggestion.id != first.suggestion.id


async def test_a_decided_link_is_answered_with_its_decision(
    suggestions: Suggestions, loaded_store: Store
) -> None:
    first = await suggestions.suggest(MEMBER, GUILD, PLEDGE, "in-progress", LINK)
    await suggestions.reject(first.suggestion.id, by="operator:ann", reason="Too early to say")
    with pytest.raises(UserError) as refused:
        await suggestions.suggest(OTHER_MEMBER, GUILD, PLEDGE, "in-progress", LINK)
    text = str(refused.value)
    assert "already reviewed" in text and "rejected on 2026-10-20" in text
    assert "Too early to say" in text and "Nothing was recorded." in text
    assert await count(loaded_store, "suggestion_backers") == 0


async def test_a_blocked_user_is_told_plainly_and_unblocking_takes_them_again(
    suggestions: Suggestions, loaded_store: Store
) -> None:
    kept = await suggestions.suggest(MEMBER, GUILD, PLEDGE, "in-progress", LINK)
    assert await suggestions.block(MEMBER, by="operator:ann")
    assert not await suggestions.block(MEMBER, by="operator:ann")  # already
    with pytest.raises(UserError, match="stopped taking suggestions from you"):
        await suggestions.suggest(MEMBER, GUILD, OTHER, "stalled", LINK)
    with pytest.raises(UserError, match="stopped taking suggestions from you"):
        await suggestions.suggest(MEMBER, GUILD, PLEDGE, "in-progress", f"{LINK}/x", "x" * 999)
    found = await suggestions.get(kept.suggestion.id)
    assert found is not None and found.state == "open"  # kept, still reviewed
    assert await suggestions.unblock(MEMBER)
    assert not await suggestions.unblock(MEMBER)
    await suggestions.suggest(MEMBER, GUILD, OTHER, "stalled", LINK)
    with pytest.raises(UserError, match="not a Discord user id"):
        await suggestions.block(-1, by="operator:ann")


async def test_accept_records_the_rating_history_and_event_together(
    suggestions: Suggestions, loaded_store: Store
) -> None:
    made = await suggestions.suggest(
        MEMBER, GUILD, PLEDGE, "in-progress", LINK, "Talks @everyone <#1>"
    )
    await suggestions.suggest(OTHER_MEMBER, GUILD, PLEDGE, "in-progress", LINK)
    events_before = await count(loaded_store, "pledge_events")
    done = await suggestions.accept(made.suggestion.id, by="discord:42")
    change = done.change
    assert change is not None and done.told == 2
    assert (change.from_status, change.to_status, change.changed_by) == (
        "not-yet-rated",
        "in-progress",
        "discord:42",
    )
    assert change.suggestion_id == made.suggestion.id
    assert change.note == "Talks @\u200beveryone <#\u200b1>"  # no mention syntax survives
    [history] = await loaded_store.status_history(PLEDGE)
    assert history == change
    pledge = await loaded_store.pledge(PLEDGE)
    assert pledge is not None
    assert (pledge.status, pledge.status_evidence, pledge.status_changed_by) == (
        "in-progress",
        LINK,
        "discord:42",
    )
    decided = await suggestions.get(made.suggestion.id)
    assert decided is not None
    assert (decided.state, decided.decided_by, decided.history_id) == (
        "accepted",
        "discord:42",
        change.id,
    )
    events = await loaded_store.rows("SELECT kind, history_id FROM pledge_events ORDER BY id")
    assert len(events) == events_before + 1
    assert (events[-1]["kind"], events[-1]["history_id"]) == ("status", change.id)
    states = await suggestions.notice_states(made.suggestion.id)
    assert [(n.user_id, n.state) for n in states] == [
        (MEMBER, "pending"),
        (OTHER_MEMBER, "pending"),
    ]
    with pytest.raises(UserError, match="already accepted"):
        await suggestions.accept(made.suggestion.id, by="discord:43")
    with pytest.raises(UserError, match="no suggestion #999"):
        await suggestions.accept(999, by="discord:43")
    assert len(await loaded_store.status_history(PLEDGE)) == 1


async def test_an_operators_note_replaces_the_members(suggestions: Suggestions) -> None:
    made = await suggestions.suggest(MEMBER, GUILD, PLEDGE, "in-progress", LINK)
    done = await suggestions.accept(made.suggestion.id, by="operator:ann", note=" Checked ")
    assert done.change is not None and done.change.note == "Checked"
    other = await suggestions.suggest(MEMBER, GUILD, OTHER, "stalled", LINK)
    plain = await suggestions.accept(other.suggestion.id, by="operator:ann")
    assert plain.change is not None and plain.change.note == "Evidence suggested by a member."


async def test_an_accept_that_fails_leaves_no_half_behind(
    suggestions: Suggestions, loaded_store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The status change and the decision are one transaction: a failure after the status
    was written (here, writing the notices) undoes the status too."""
    made = await suggestions.suggest(MEMBER, GUILD, PLEDGE, "in-progress", LINK)
    events_before = await count(loaded_store, "pledge_events")

    async def crash(*_: object) -> int:
        raise RuntimeError("the disk went away")

    monkeypatch.setattr(suggestions_module, "_notices_for", crash)
    with pytest.raises(RuntimeError):
        await suggestions.accept(made.suggestion.id, by="operator:ann")
    pledge = await loaded_store.pledge(PLEDGE)
    assert pledge is not None and pledge.status == "not-yet-rated"
    assert await count(loaded_store, "status_history") == 0
    assert await count(loaded_store, "pledge_events") == events_before
    found = await suggestions.get(made.suggestion.id)
    assert found is not None and found.state == "open"


async def test_reject_keeps_the_suggestion_with_its_reason(
    suggestions: Suggestions, loaded_store: Store
) -> None:
    made = await suggestions.suggest(MEMBER, GUILD, PLEDGE, "in-progress", LINK, "Why")
    for reason, said in (("  ", "Say why"), ("r" * 501, "at most 500"), ("a\x00", "NUL")):
        with pytest.raises(UserError, match=said):
            await suggestions.reject(made.suggestion.id, by="operator:ann", reason=reason)
    done = await suggestions.reject(made.suggestion.id, by="operator:ann", reason=" Old news ")
    assert (done.suggestion.state, done.suggestion.reason, done.told) == ("rejected", "Old news", 1)
    found = await suggestions.get(made.suggestion.id)
    assert found is not None
    assert (found.state, found.reason, found.decided_by, found.note) == (
        "rejected",
        "Old news",
        "operator:ann",
        "Why",
    )
    with pytest.raises(UserError, match="already rejected"):
        await suggestions.accept(made.suggestion.id, by="operator:bob")
    assert await count(loaded_store, "status_history") == 0
    pledge = await loaded_store.pledge(PLEDGE)
    assert pledge is not None and pledge.status == "not-yet-rated"


async def test_nothing_an_operator_decides_deletes_anything(
    suggestions: Suggestions, loaded_store: Store
) -> None:
    accepted = await suggestions.suggest(MEMBER, GUILD, PLEDGE, "in-progress", LINK)
    await suggestions.suggest(OTHER_MEMBER, GUILD, PLEDGE, "stalled", LINK, "backing")
    rejected = await suggestions.suggest(MEMBER, GUILD, OTHER, "stalled", LINK)
    tables = ("suggestions", "suggestion_backers")
    before = {t: await count(loaded_store, t) for t in tables}
    await suggestions.accept(accepted.suggestion.id, by="operator:ann")
    await suggestions.reject(rejected.suggestion.id, by="operator:ann", reason="No")
    await suggestions.block(MEMBER, by="operator:ann")
    await suggestions.unblock(MEMBER)
    assert {t: await count(loaded_store, t) for t in tables} == before
    assert await suggestions.record() == (2, 1, 1)


async def test_each_outcome_is_told_once_by_dm_or_after_the_next_command(
    suggestions: Suggestions, clock: FakeClock
) -> None:
    made = await suggestions.suggest(MEMBER, GUILD, PLEDGE, "in-progress", LINK)
    await suggestions.suggest(OTHER_MEMBER, GUILD, PLEDGE, "in-progress", LINK, "me too")
    await suggestions.suggest(THIRD, GUILD, PLEDGE, "in-progress", LINK)
    await suggestions.accept(made.suggestion.id, by="operator:ann")
    sent: list[Notice] = []

    async def send(notice: Notice) -> str | None:
        sent.append(notice)
        if notice.user_id == OTHER_MEMBER:
            return "Discord refused the direct message (Discord error 50007)"
        return None

    # this process owns MEMBER's and OTHER_MEMBER's shard, not THIRD's
    assert await suggestions.deliver_notices(lambda user: user != THIRD, send) == 1
    assert [(n.user_id, n.backed, n.outcome) for n in sent] == [
        (MEMBER, False, "accepted"),
        (OTHER_MEMBER, True, "accepted"),
    ]
    assert await suggestions.deliver_notices(lambda user: user != THIRD, send) == 0  # once
    states = {n.user_id: n for n in await suggestions.notice_states(made.suggestion.id)}
    assert states[MEMBER].state == "dm"
    assert (states[OTHER_MEMBER].state, states[OTHER_MEMBER].error) == (
        "waiting",
        "Discord refused the direct message (Discord error 50007)",
    )
    assert states[THIRD].state == "pending"  # for the process that owns it
    # the refused one is told after the next command, once
    assert await suggestions.notices_to_tell(MEMBER) == []
    [told] = await suggestions.notices_to_tell(OTHER_MEMBER)
    assert told.suggestion_id == made.suggestion.id and told.backed
    assert await suggestions.notices_to_tell(OTHER_MEMBER) == []
    # ... unless showing it failed too: then it waits for the command after
    await suggestions.not_told([told], "not shown after a command: 500")
    assert [n.suggestion_id for n in await suggestions.notices_to_tell(OTHER_MEMBER)] == [
        made.suggestion.id
    ]
    final = {n.user_id: n.state for n in await suggestions.notice_states(made.suggestion.id)}
    assert final == {MEMBER: "dm", OTHER_MEMBER: "command", THIRD: "pending"}


async def test_a_dm_whose_sender_died_is_sent_again_once_looked_for(
    suggestions: Suggestions, clock: FakeClock
) -> None:
    made = await suggestions.suggest(MEMBER, GUILD, PLEDGE, "in-progress", LINK)
    await suggestions.accept(made.suggestion.id, by="operator:ann")

    async def killed(notice: Notice) -> str | None:
        raise asyncio.CancelledError  # the process dies mid-send: the claim stays

    with pytest.raises(asyncio.CancelledError):
        await suggestions.deliver_notices(lambda _: True, killed)
    [state] = await suggestions.notice_states(made.suggestion.id)
    assert state.state == "sending"
    clock.now = START + STALE_SENDING - timedelta(seconds=1)
    sends: list[Notice] = []

    async def sent(notice: Notice) -> str | None:
        sends.append(notice)
        return None

    assert await suggestions.deliver_notices(lambda _: True, sent) == 0  # may still be sending
    clock.now = START + STALE_SENDING + timedelta(seconds=1)
    assert await suggestions.deliver_notices(lambda _: True, sent) == 1
    assert [n.interrupted for n in sends] == [True]  # the sender looks for it first
    [state] = await suggestions.notice_states(made.suggestion.id)
    assert (state.state, state.error) == ("dm", None)
    assert await suggestions.deliver_notices(lambda _: True, sent) == 0  # once
    assert await suggestions.notices_to_tell(MEMBER) == []


async def test_a_send_that_raises_is_recorded_and_waits_for_a_command(
    suggestions: Suggestions,
) -> None:
    made = await suggestions.suggest(MEMBER, GUILD, PLEDGE, "in-progress", LINK)
    await suggestions.reject(made.suggestion.id, by="operator:ann", reason="No")

    async def broken(notice: Notice) -> str | None:
        raise ValueError("unexpected")

    assert await suggestions.deliver_notices(lambda _: True, broken) == 0
    [state] = await suggestions.notice_states(made.suggestion.id)
    assert state.state == "waiting" and "unexpected" in (state.error or "")
    [told] = await suggestions.notices_to_tell(MEMBER)
    assert (told.outcome, told.reason) == ("rejected", "No")


async def test_operators_review_oldest_first_one_a_page(suggestions: Suggestions) -> None:
    empty = await suggestions.review_page(0)
    assert empty.suggestion_id is None and "Nothing waits" in empty.card.description
    first = await suggestions.suggest(MEMBER, GUILD, PLEDGE, "in-progress", LINK, "@here look")
    await suggestions.suggest(OTHER_MEMBER, None, PLEDGE, "delivered", LINK, "me too")
    second = await suggestions.suggest(THIRD, GUILD, OTHER, "stalled", LINK)
    page = await suggestions.review_page(0)
    assert (page.suggestion_id, page.index, page.total) == (first.suggestion.id, 0, 2)
    text = "\n".join([page.card.title, page.card.description, *(f.value for f in page.card.fields)])
    assert f"<@{MEMBER}>" in text and str(GUILD) in text  # operators see who, and where
    assert f"<@{OTHER_MEMBER}> suggests 🟢 Delivered" in text
    assert "@\u200bhere look" in text  # the member's words shown literally, never a mention
    assert page.card.within_limits()
    last = await suggestions.review_page(7)  # past the end: the last one
    assert (last.suggestion_id, last.index) == (second.suggestion.id, 1)
    await suggestions.accept(first.suggestion.id, by="operator:ann")
    moved = await suggestions.review_page(1, "✅ Accepted")
    assert (moved.suggestion_id, moved.index, moved.total) == (second.suggestion.id, 0, 1)
    assert moved.card.description.startswith("✅ Accepted")


async def test_the_public_record_names_the_suggestion_never_the_member(
    suggestions: Suggestions, loaded_store: Store
) -> None:
    made = await suggestions.suggest(MEMBER, GUILD, PLEDGE, "in-progress", LINK, "Talks")
    await suggestions.accept(made.suggestion.id, by="operator:ann")
    pledge = await loaded_store.pledge(PLEDGE)
    statement = (await loaded_store.statements())[0]
    assert pledge is not None
    card = cards.history_card(pledge, await loaded_store.status_history(PLEDGE), statement)
    text = "\n".join(f.value for f in card.fields)
    assert f"from a member's suggestion (#{made.suggestion.id})" in text
    assert str(MEMBER) not in text and str(GUILD) not in text
    assert cards.suggestions_field(*await suggestions.record()).value.endswith(
        "Received 1 · accepted 1 · rejected 0 · waiting for review 0"
    )


def test_a_change_an_operator_made_says_nothing_of_suggestions() -> None:
    change = StatusChange(PLEDGE, "not-yet-rated", "stalled", START.isoformat(), "n", LINK, "x")
    from bot.models import Pledge, Statement

    pledge = Pledge(PLEDGE, "s", "Title", "Summary", "Detail", "Scope", ("q",))
    statement = Statement("s", "T", "P", "", "", "", "")
    card = cards.history_card(pledge, [change], statement)
    assert "suggestion" not in card.fields[0].value


def test_outcome_and_review_cards_fit_discord() -> None:
    notices = [
        Notice(n, MEMBER, "T" * 300, "in-progress", outcome, "r" * 500, bool(n % 2))
        for n, outcome in enumerate(["accepted", "rejected"] * 10, 1)
    ]
    assert outcome_card(notices).within_limits()
    assert outcome_card(notices[:1]).title == "Your suggestion #1: accepted"
    assert "The operator's reason: rrr" in outcome_card(notices[1:2]).description
    from bot.pledges.suggestions import Backer, Suggestion

    crowded = Suggestion(
        1,
        PLEDGE,
        "T" * 300,
        "not-yet-rated",
        "in-progress",
        "https://example.org/" + "a" * 480,
        "n" * 500,
        MEMBER,
        GUILD,
        START.isoformat(),
        "open",
        backers=tuple(Backer(n, None, "stalled", "b" * 500, "") for n in range(6)),
    )
    assert review_card(crowded, 0, 1, "✅ " + "x" * 300).within_limits()
