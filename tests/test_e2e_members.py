"""Member commands end to end: the real bot, the emulator, a real websocket and HTTP."""

from __future__ import annotations

import asyncio
import io
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.client.runner import console_bot
from bot.config import Config
from bot.local.console import Console
from bot.pledges.content import load_content, read_content
from bot.pledges.services import FRESHNESS_SECONDS
from bot.store import Store
from commands import ui
from tests.conftest import DATA_DIR, REPO
from tests.e2e import World, embed_text, running_bot, with_config, world

pytestmark = pytest.mark.e2e

MEMBER_COMMANDS = [
    ("pledge list", {}, "Pledges"),
    ("pledge show", {"pledge": "europol-partnership"}, "New partnership with Europol"),
    ("pledge search", {"query": "vehicles"}, "Serious Crime Prevention Orders"),
    ("pledge history", {"pledge": "europol-partnership"}, "No status changes recorded"),
    ("power list", {}, "Serious Crime Prevention Orders"),
    ("power show", {"power": "serious-crime-prevention-orders"}, "High Court"),
    ("about", {}, "Status vocabulary"),
    ("about", {"statement": "smuggling-gangs"}, "The full text, verbatim"),
    ("claim list", {}, "convictions for people smuggling are plummeting"),
    ("claim show", {"claim": "uk-security-under-threat"}, "UK security is under threat"),
]


@pytest.fixture
async def w(tmp_path: Path):  # type: ignore[no-untyped-def]
    async with world(tmp_path) as value:
        yield value


async def test_every_member_command_answers_in_public_and_in_private(w: World) -> None:
    async with running_bot(w):
        for command, options, expected in MEMBER_COMMANDS:
            for private in (False, True):
                result = await w.emu.run_command(
                    w.guild, command, options={**options, "private": private}, user=w.member
                )
                assert expected in embed_text(result.message), command
                assert result.ephemeral is private, command
                assert result.latency is not None and result.latency < 3
    assert w.emu.violations == []
    assert w.emu.unhandled == []


async def test_commands_sync_once_and_not_again_on_restart(w: World) -> None:
    def command_puts() -> int:
        return sum(r.method == "PUT" and r.path.endswith("/commands") for r in w.emu.requests)

    async with running_bot(w):
        pass
    assert command_puts() == 1
    names = {c["name"] for c in w.emu.commands()}
    assert names == {"pledge", "power", "claim", "about", "follow", "briefing", "operator"}
    async with running_bot(w):
        pass
    assert command_puts() == 1


async def test_the_bot_asks_for_no_privileged_intents(w: World) -> None:
    async with running_bot(w):
        pass
    assert w.emu.identified_intents == 1  # GUILDS only


async def test_unknown_and_ambiguous_names_get_private_suggestions(w: World) -> None:
    async with running_bot(w):
        unknown = await w.emu.run_command(
            w.guild, "pledge show", options={"pledge": "europol-partnershp"}, user=w.member
        )
        ambiguous = await w.emu.run_command(
            w.guild, "pledge show", options={"pledge": "europol"}, user=w.member
        )
    assert unknown.ephemeral
    assert "No pledge called" in embed_text(unknown.message)
    assert "europol-partnership" in embed_text(unknown.message)
    assert ambiguous.ephemeral
    assert "matches more than one pledge" in embed_text(ambiguous.message)


async def test_autocomplete_suggests_pledges(w: World) -> None:
    async with running_bot(w):
        choices = await w.emu.autocomplete(
            w.guild, "pledge show", focused="pledge", value="europ", user=w.member
        )
    assert "europol-partnership" in [c["value"] for c in choices]


def write_big_statement(directory: Path, pledges: int, title_length: int) -> None:
    """A content set with many long-titled pledges, quoting a generated source."""
    (directory / "sources").mkdir(parents=True)
    source = " ".join(f"Pledge number {i} is promised." for i in range(pledges))
    (directory / "sources" / "big.txt").write_text(source, "utf-8")
    words = ("Long title " * 40)[: title_length - 8]
    records = "".join(
        f'[[pledges]]\nslug = "big-{i}"\ntitle = "{words} {i:06d}"\n'
        f'summary = "Pledge {i} summary."\ndetail = "Detail {i}."\nscope = "Test"\n'
        f'quotes = ["Pledge number {i} is promised."]\n'
        for i in range(pledges)
    )
    (directory / "big.toml").write_text(
        'schema = 1\n[statement]\nslug = "big"\ntitle = "Big"\nauthor = "Test"\n'
        'source = "sources/big.txt"\nsummary = "Many pledges."\n' + records,
        "utf-8",
    )


async def test_autocomplete_and_paging_with_500_long_pledges(w: World, tmp_path: Path) -> None:
    content = tmp_path / "big"
    write_big_statement(content, 500, 300)
    async with running_bot(w, with_config(w, content_dir=content)):
        for typed in ("", "long", "big-4", "title 0004", "x" * 100):
            choices = await w.emu.autocomplete(
                w.guild, "pledge show", focused="pledge", value=typed, user=w.member
            )
            assert len(choices) <= 25
            assert all(1 <= len(c["name"]) <= 100 for c in choices)
        listing = await w.emu.run_command(w.guild, "pledge list", user=w.member)
        assert listing.message is not None
        assert "(1/84)" in listing.message["embeds"][0]["title"]
        refused = await w.emu.click_button(listing.message, label="Next ▶", user=w.moderator)
        assert refused.ephemeral
        assert "Only the member who ran this command" in embed_text(refused.message)
        turned = await w.emu.click_button(listing.message, label="Next ▶", user=w.member)
        assert "(2/84)" in turned.message["embeds"][0]["title"]  # type: ignore[index]
    assert w.emu.violations == []


@settings(
    max_examples=3, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(queries=st.lists(st.text(min_size=1, max_size=200).filter(str.strip), min_size=20))
async def test_search_answers_any_text_within_limits(w: World, queries: list[str]) -> None:
    async with running_bot(w):
        for query in queries:
            result = await w.emu.run_command(
                w.guild, "pledge search", options={"query": query}, user=w.member
            )
            assert result.message is not None
    assert w.emu.violations == []


def test_console_driven_through_stdin_prints_the_summary(tmp_path: Path) -> None:
    """The README's main-job command: the console as a subprocess, commands on stdin."""
    config = tmp_path / "config.toml"
    config.write_text(
        f'[database]\npath = "{tmp_path / "console.db"}"\n[content]\ndirectory = "{DATA_DIR}"\n',
        "utf-8",
    )
    script = "/pledge show pledge:europol-partnership\n/power show power:scpo\n:quit\n"
    done = subprocess.run(
        [sys.executable, "-m", "bot", "console"],
        input=script,
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        env={**os.environ, "PLEDGEBOT_CONFIG": str(config)},
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "New partnership with Europol on migrant smuggling" in done.stdout
    assert "Serious Crime Prevention Orders (SCPO)" in done.stdout
    assert "Traceback" not in done.stderr


async def test_a_handler_bug_gets_an_apology_with_an_error_id(w: World) -> None:
    async with running_bot(w) as bot:
        assert bot.services is not None
        await bot.services.store.close()  # the next query fails inside the handler
        result = await w.emu.run_command(
            w.guild, "pledge search", options={"query": "europol"}, user=w.member
        )
    assert result.ephemeral
    assert "error id" in embed_text(result.message)


async def test_only_operators_record_status_from_discord(w: World) -> None:
    administrator = 1 << 3
    operator = w.emu.add_user("operator", permissions=administrator)
    admin = w.emu.add_user("admin", permissions=administrator)
    config = with_config(w, operator_ids=frozenset({operator.id}))
    async with running_bot(w, config) as bot:
        options = {
            "pledge": "europol-partnership",
            "status": "in-progress",
            "note": "Talks",
            "evidence": "https://example.org/talks",
        }
        refused = await w.emu.run_command(w.guild, "operator status", options=options, user=admin)
        done = await w.emu.run_command(w.guild, "operator status", options=options, user=operator)
        assert bot.services is not None
        history = await bot.services.store.status_history("europol-partnership")
    assert refused.ephemeral
    assert "Only pledgebot's operators" in embed_text(refused.message)
    assert "In progress" in embed_text(done.message)
    assert [(h.to_status, h.changed_by) for h in history] == [
        ("in-progress", f"discord:{operator.id}")
    ]


def test_console_tab_completion_asks_the_bots_autocomplete(tmp_path: Path) -> None:
    out = io.StringIO()
    config = Config(database_path=tmp_path / "c.db", content_dir=DATA_DIR)
    console = Console(config, console_bot, out)
    console.start()
    try:
        assert "/pledge show " in console.completions("/pledge sh")
        choices = console.completions("/pledge show pledge:europ")
        assert "/pledge show pledge:europol-partnership" in choices
        assert console.completions("/pledge show private:tr") == []  # no autocomplete there
        assert console.run_line("/pledge list")
        assert console.run_line(":click 3")  # Next ▶ has nothing to show with 6 pledges
        assert not console.run_line(":quit")
    finally:
        console.stop()
    assert "New partnership with Europol" in out.getvalue()


async def test_show_gives_the_latest_status_change(w: World) -> None:
    async with running_bot(w) as bot:
        assert bot.services is not None
        store = bot.services.store
        await store.set_status("europol-partnership", "in-progress", note="Talks", changed_by="t")
        await store.set_status("europol-partnership", "stalled", note="Paused", changed_by="t")
        # as a write by another process is seen within FRESHNESS_SECONDS (test_services)
        bot.services.changed()
        shown = await w.emu.run_command(
            w.guild, "pledge show", options={"pledge": "europol-partnership"}, user=w.member
        )
        history = await w.emu.run_command(
            w.guild, "pledge history", options={"pledge": "europol-partnership"}, user=w.member
        )
    status = embed_text(shown.message)
    assert "Stalled" in status
    assert "Paused" in status
    assert "Talks" not in status
    assert "Talks" in embed_text(history.message)
    assert "Paused" in embed_text(history.message)


async def test_page_buttons_are_disabled_when_the_view_times_out(
    w: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ui, "PAGE_TIMEOUT", 0.3)
    content = tmp_path / "big"
    write_big_statement(content, 30, 40)
    async with running_bot(w, with_config(w, content_dir=content)):
        listing = await w.emu.run_command(w.guild, "pledge list", user=w.member)
        assert listing.message is not None
        buttons = [b for row in listing.message["components"] for b in row["components"]]
        assert not all(b.get("disabled") for b in buttons)
        for _ in range(50):
            await asyncio.sleep(0.05)
            message = listing.message
            assert message is not None
            buttons = [b for row in message["components"] for b in row["components"]]
            if all(b.get("disabled") for b in buttons):
                break
    assert all(b.get("disabled") for b in buttons)


NAME = re.compile(r"^[-_\w]{1,32}$")


def check_options(options: list[dict[str, Any]], depth: int = 0) -> None:
    assert len(options) <= 25
    optional_seen = False
    for option in options:
        assert NAME.match(option["name"]) and option["name"].islower()
        assert 1 <= len(option["description"]) <= 100
        assert len(option.get("choices") or []) <= 25
        if option["type"] in (1, 2):
            assert depth < 2  # a group holds subcommands, nothing deeper
            check_options(option.get("options", []), depth + 1)
        elif option.get("required"):
            assert not optional_seen, "required options come first"
        else:
            optional_seen = True


def characters(item: dict[str, Any]) -> int:
    """What Discord counts: names, descriptions and choice names and values, nested."""
    own = len(item.get("name", "")) + len(item.get("description", ""))
    own += sum(len(str(c["name"])) + len(str(c["value"])) for c in item.get("choices") or [])
    return own + sum(characters(o) for o in item.get("options") or [])


async def test_every_command_schema_is_within_discords_limits(w: World) -> None:
    async with running_bot(w):
        registered = w.emu.commands()
    assert 1 <= len(registered) <= 100
    for command in registered:
        assert NAME.match(command["name"])
        assert 1 <= len(command["description"]) <= 100
        check_options(command.get("options", []))
        assert characters(command) <= 4000  # Discord's limit for one command
    assert w.emu.violations == []


async def test_changes_made_by_another_process_show_within_a_second(
    w: World, tmp_path: Path
) -> None:
    """A status set with `pledgebot status set`, or content loaded with `db load`, while
    the bot runs: its cached answers and names catch up within FRESHNESS_SECONDS."""
    show = {"pledge": "europol-partnership"}
    content = tmp_path / "more"
    write_big_statement(content, 3, 40)
    for path in DATA_DIR.glob("*.toml"):
        (content / path.name).write_bytes(path.read_bytes())
    for path in (DATA_DIR / "sources").iterdir():
        (content / "sources" / path.name).write_bytes(path.read_bytes())
    async with running_bot(w):
        before = await w.emu.run_command(w.guild, "pledge show", options=show, user=w.member)
        assert "Not yet rated" in embed_text(before.message)
        other = await Store.open(w.config.database_path)  # what the CLI does
        try:
            await other.set_status("europol-partnership", "delivered", note="n", changed_by="cli")
            await load_content(other, content)
        finally:
            await other.close()
        started = asyncio.get_running_loop().time()
        while True:
            after = await w.emu.run_command(w.guild, "pledge show", options=show, user=w.member)
            if "Delivered" in embed_text(after.message):
                break
            assert asyncio.get_running_loop().time() - started < FRESHNESS_SECONDS + 1
            await asyncio.sleep(0.1)
        choices = await w.emu.autocomplete(
            w.guild, "pledge show", focused="pledge", value="big-1", user=w.member
        )
    assert [c["value"] for c in choices] == ["big-1"]


async def test_pledgebot_sync_registers_the_commands(w: World, tmp_path: Path) -> None:
    config = tmp_path / "sync.toml"
    config.write_text(
        f'[database]\npath = "{tmp_path / "sync.db"}"\n[content]\ndirectory = "{DATA_DIR}"\n'
        f'[discord]\napi_base_url = "{w.emu.base_url}"\ngateway_url = "{w.emu.gateway_url}"\n',
        "utf-8",
    )
    env = {**os.environ, "PLEDGEBOT_CONFIG": str(config), "DISCORD_TOKEN": w.emu.token}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "sync", "--guild", str(w.guild.id),
        cwd=REPO, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    assert f"synced commands (guild:{w.guild.id})" in out.decode()
    assert {c["name"] for c in w.emu.commands(w.guild)} >= {"pledge", "power", "briefing"}
    assert w.emu.identify_count == 0  # HTTP only: no gateway session, no engine


def footer(result: Any) -> str:
    assert result.message is not None
    return str(result.message["embeds"][0].get("footer", {}).get("text", ""))


async def test_every_pledge_power_and_claim_opens_with_quotes_and_source(w: World) -> None:
    """Issue 9: a member can open every record; each shows its quotes and names its source."""
    (content,) = read_content(DATA_DIR)
    records = [
        *(("pledge show", "pledge", r) for r in content.pledges),
        *(("power show", "power", r) for r in content.powers),
        *(("claim show", "claim", r) for r in content.claims),
    ]
    async with running_bot(w):
        for command, option, record in records:
            result = await w.emu.run_command(
                w.guild, command, options={option: record.slug}, user=w.member
            )
            text = embed_text(result.message)
            for quote in record.quotes:
                assert f"“{quote}”" in text, (record.slug, quote)
            assert footer(result).startswith(
                "Source: Labour statement on criminal smuggling gangs "
                "(publisher not stated, undated)."
            ), record.slug
    assert w.emu.violations == []


async def test_pledge_cards_say_who_pledged_it_and_lists_say_whose_pledges(w: World) -> None:
    """Issue 9, items 2 and 3: Pledged by and Partners named from content; list headings."""
    async with running_bot(w):
        shown = await w.emu.run_command(
            w.guild, "pledge show", options={"pledge": "police-officers-to-europol"}, user=w.member
        )
        scpo = await w.emu.run_command(
            w.guild,
            "pledge show",
            options={"pledge": "scpo-organised-immigration-crime"},
            user=w.member,
        )
        listing = await w.emu.run_command(
            w.guild, "pledge list", options={"statement": "smuggling-gangs"}, user=w.member
        )
        unknown = await w.emu.run_command(
            w.guild, "pledge list", options={"statement": "housing"}, user=w.member
        )
        choices = await w.emu.autocomplete(
            w.guild, "pledge list", focused="statement", value="smug", user=w.member
        )
    assert shown.message is not None
    fields = {f["name"]: f["value"] for f in shown.message["embeds"][0]["fields"]}
    assert "Who delivers it" not in fields
    assert fields["Pledged by"] == "Labour"
    assert fields["Partners named"] == "European partners, Europol"
    assert "Cross-Border Police" not in fields["Partners named"]
    assert "Labour's Cross-Border Police" in fields["In detail"]
    assert "existing force" not in fields["In detail"]  # the statement says no more
    assert "the next Labour government" in fields["Condition"]
    assert scpo.message is not None
    scpo_fields = {f["name"]: f["value"] for f in scpo.message["embeds"][0]["fields"]}
    assert "Partners named" not in scpo_fields  # the NCA applies for orders; no partner
    assert listing.message is not None
    assert listing.message["embeds"][0]["title"] == (
        "Pledges by Labour: Labour statement on criminal smuggling gangs"
    )
    assert (
        "Source: Labour statement on criminal smuggling gangs (publisher not stated, undated)"
        in footer(listing)
    )
    assert unknown.ephemeral
    assert "No statement called “housing”" in embed_text(unknown.message)
    assert [c["value"] for c in choices] == ["smuggling-gangs"]


async def test_claims_are_listed_opened_and_found_by_search(w: World) -> None:
    """Issue 9, item 1: /claim list and show, autocomplete, and search says how to open one."""
    async with running_bot(w):
        listing = await w.emu.run_command(
            w.guild, "claim list", options={"statement": "smuggling-gangs"}, user=w.member
        )
        choices = await w.emu.autocomplete(
            w.guild, "claim show", focused="claim", value="convictions", user=w.member
        )
        every = await w.emu.autocomplete(
            w.guild, "claim show", focused="claim", value="", user=w.member
        )
        found = await w.emu.run_command(
            w.guild, "pledge search", options={"query": "climate change"}, user=w.member
        )
        opened = await w.emu.run_command(
            w.guild,
            "claim show",
            options={"claim": "smashing-gangs-as-important-as-climate-and-terrorism"},
            user=w.member,
        )
        typo = await w.emu.run_command(
            w.guild, "claim show", options={"claim": "uk-security-under-threet"}, user=w.member
        )
    listed = embed_text(listing.message)
    assert "The statement says convictions for people smuggling are plummeting" in listed
    assert "/claim show claim:smuggling-convictions-plummeting" in listed
    assert "not established fact" in listed
    assert [c["value"] for c in choices] == ["smuggling-convictions-plummeting"]
    assert len(every) == 8
    assert all(1 <= len(c["name"]) <= 100 for c in every)
    hits = embed_text(found.message)
    assert "Claim: The statement's speaker believes smashing the smuggling gangs" in hits
    assert (
        "Open it: `/claim show claim:smashing-gangs-as-important-as-climate-and-terrorism`" in hits
    )
    shown = embed_text(opened.message)
    assert "I believe that smashing the smuggler gangs should be seen as important" in shown
    assert "Who says so" in shown and "as their own belief" in shown
    assert typo.ephemeral
    assert "No claim called" in embed_text(typo.message)
    assert "uk-security-under-threat" in embed_text(typo.message)
    assert w.emu.violations == []


async def test_about_explains_sources_dates_and_ratings(w: World) -> None:
    """Issue 9, items 4 and 5: undated, the load time labelled as such, the rating method,
    and the statement's full text for members to check."""
    source = (DATA_DIR / "sources" / "smuggling-gangs.txt").read_text("utf-8")
    async with running_bot(w):
        about = await w.emu.run_command(w.guild, "about", user=w.member)
        statement = await w.emu.run_command(
            w.guild, "about", options={"statement": "smuggling"}, user=w.member
        )
        pages = [statement.message]
        while (page := pages[-1]) is not None and any(
            b.get("label") == "Next ▶" and not b.get("disabled")
            for row in page.get("components", [])
            for b in row["components"]
        ):
            turned = await w.emu.click_button(page, label="Next ▶", user=w.member)
            pages.append(turned.message)
    text = embed_text(about.message)
    assert "Date: undated (the text gives no date)" in text
    assert "Content edition 3, edited 2026-12-07" in text
    assert "Loaded into this bot's database" in text
    assert "Content last updated" not in text
    assert "pledgebot's operators rate each pledge's status" in text
    assert "needs a note and a link to public evidence (http or https)" in text
    assert "the history cannot be edited or deleted" in text
    full = " ".join(embed_text(p) for p in pages)
    assert (
        "SHA-256 of the text: `495fd07c9b0219265ed5ac9607c9aca6126d3b9c78189dbf889d4d650b1bd82c`"
        in full
    )
    for sentence in source.split("\n"):
        assert " ".join(sentence.split()) in " ".join(full.split()), sentence
    assert w.emu.violations == []


async def test_operator_ratings_need_evidence_and_cards_show_them(w: World) -> None:
    """Issue 9, item 5: from /operator status as from the CLI; cards say when, who, evidence."""
    operator = w.emu.add_user("operator", permissions=1 << 3)
    config = with_config(w, operator_ids=frozenset({operator.id}))
    base = {"pledge": "europol-partnership", "status": "in-progress", "note": "Talks opened"}
    async with running_bot(w, config) as bot:
        missing = await w.emu.run_command(w.guild, "operator status", options=base, user=operator)
        scripted = await w.emu.run_command(
            w.guild,
            "operator status",
            options={**base, "evidence": "javascript:alert(1)"},
            user=operator,
        )
        done = await w.emu.run_command(
            w.guild,
            "operator status",
            options={**base, "evidence": "https://example.org/talks"},
            user=operator,
        )
        shown = await w.emu.run_command(
            w.guild, "pledge show", options={"pledge": "europol-partnership"}, user=w.member
        )
        history = await w.emu.run_command(
            w.guild, "pledge history", options={"pledge": "europol-partnership"}, user=w.member
        )
        assert bot.services is not None
        recorded = await bot.services.store.status_history("europol-partnership")
    assert missing.ephemeral and scripted.ephemeral
    assert "needs an evidence link" in embed_text(missing.message)
    assert "only http:// and https:// links are accepted" in embed_text(scripted.message)
    assert [c.evidence_url for c in recorded] == ["https://example.org/talks"]
    assert "In progress" in embed_text(done.message)
    status = embed_text(shown.message)
    assert f"by <@{operator.id}>" in status
    assert re.search(r"Rated <t:\d+:D> by", status)
    assert "Evidence: https://example.org/talks" in status
    assert f"Rated by <@{operator.id}>" in embed_text(history.message)
    assert "Source: Labour statement on criminal smuggling gangs" in footer(history)
