"""`pledgebot suggestions list|show|accept|reject|block|unblock`, run in-process against a
real SQLite file and a real PostgreSQL database (`[sqlite]`, `[postgresql]`)."""

from __future__ import annotations

import asyncio
import getpass
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bot.errors import UserError
from bot.pledges.content import load_content
from bot.pledges.suggestions import Suggestions
from bot.store import Store
from tests.conftest import DATA_DIR
from tests.test_cli import run

PLEDGE = "europol-partnership"
OTHER = "europe-security-agreement"
LINK = "https://example.org/talks"
MEMBER, BACKER, THIRD = 101 << 22, 102 << 22, 103 << 22
GUILD = 81_000_000_000_000_000


@dataclass
class Cli:
    config: Path
    location: Path | str  # the database, for looking behind the CLI's back

    def args(self, *argv: str) -> tuple[str, ...]:
        return ("--config", str(self.config), *argv)

    def with_store(self, action: Callable[[Store], Awaitable[Any]]) -> Any:
        async def opened() -> Any:
            store = await Store.open(self.location)
            try:
                return await action(store)
            finally:
                await store.close()

        return asyncio.run(opened())


@pytest.fixture(params=["sqlite", "postgresql"])
def cli(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Cli]:
    """A config naming a database with the shipped content loaded, once per backend."""
    dsn: str | None = None
    if request.param == "sqlite":
        location: Path | str = tmp_path / "cli.db"
        database = f'path = "{location}"'
    else:
        from tests.pg_server import drop_database, new_database

        server = request.getfixturevalue("pg_server")
        dsn = location = asyncio.run(new_database(server))
        database = f'url = "{dsn}"'
    config = tmp_path / "config.toml"
    config.write_text(f'[database]\n{database}\n[content]\ndirectory = "{DATA_DIR}"\n')
    made = Cli(config, location)
    made.with_store(lambda store: load_content(store, DATA_DIR))
    yield made
    if dsn is not None:
        asyncio.run(drop_database(server, dsn))


def seed(cli: Cli) -> None:
    """#1 (a member's, backed by another), #2 (a third member's)."""

    async def suggest(store: Store) -> None:
        suggestions = Suggestions(store.db)
        await suggestions.suggest(MEMBER, GUILD, PLEDGE, "in-progress", LINK, "Talks opened")
        await suggestions.suggest(BACKER, None, PLEDGE, "delivered", LINK, "Signed")
        await suggestions.suggest(THIRD, GUILD, OTHER, "stalled", LINK)

    cli.with_store(suggest)


def test_list_show_and_accept(capsys: pytest.CaptureFixture[str], cli: Cli) -> None:
    code, out, _ = run(capsys, *cli.args("suggestions", "list"))
    assert (code, out) == (0, "0 suggestion(s) waiting for review\n")
    seed(cli)
    code, out, _ = run(capsys, *cli.args("suggestions", "list"))
    lines = out.splitlines()
    assert code == 0
    assert lines[0].startswith("#1 ") and f"{PLEDGE}: not-yet-rated -> in-progress" in lines[0]
    assert f"(user {MEMBER}, +1 backing)" in lines[0]
    assert lines[1].startswith("#2 ") and f"{OTHER}: not-yet-rated -> stalled" in lines[1]
    assert lines[-1] == "2 suggestion(s) waiting for review"
    code, out, _ = run(capsys, *cli.args("suggestions", "show", "1"))
    assert code == 0
    assert out.startswith(f"suggestion #1 [open]: {PLEDGE} (")
    assert f"evidence   {LINK}" in out and "note       Talks opened" in out
    assert f"by         user {MEMBER}, in server {GUILD}, at " in out
    assert f"backed by  user {BACKER} at " in out and "suggesting delivered: Signed" in out

    code, out, err = run(capsys, *cli.args("suggestions", "accept", "1", "--by", "ann"))
    assert code == 0, err
    assert out == (
        f"accepted #1: {PLEDGE} not-yet-rated -> in-progress (status change #1); "
        "2 member(s) to be told\n"
    )

    async def recorded(store: Store) -> tuple[Any, ...]:
        [change] = await store.status_history(PLEDGE)
        event = await store.scalar("SELECT history_id FROM pledge_events WHERE kind = 'status'")
        return change.changed_by, change.suggestion_id, change.note, event, change.id

    assert cli.with_store(recorded) == ("ann", 1, "Talks opened", 1, 1)
    code, out, _ = run(capsys, *cli.args("suggestions", "show", "1"))
    assert "decided    accepted at " in out and " by ann" in out
    assert "recorded   as status change #1" in out
    assert f"told       user {MEMBER}: to be sent by DM" in out
    assert f"told       user {BACKER}: to be sent by DM" in out
    code, out, _ = run(capsys, *cli.args("suggestions", "list"))
    assert out.splitlines()[0].startswith("#2 ") and "1 suggestion(s)" in out


def test_clear_errors_and_exit_codes(capsys: pytest.CaptureFixture[str], cli: Cli) -> None:
    seed(cli)
    run(capsys, *cli.args("suggestions", "accept", "1"))
    for argv, said in (
        (("accept", "1"), "pledgebot: Suggestion #1 was already accepted on "),
        (("reject", "1", "--reason", "late"), "was already accepted"),
        (("accept", "99"), "pledgebot: There is no suggestion #99."),
        (("show", "99"), "pledgebot: there is no suggestion #99"),
        (("accept", str(2**70)), "There is no suggestion #"),
        (("block", "-5"), "-5 is not a Discord user id"),
    ):
        code, out, err = run(capsys, *cli.args("suggestions", *argv))
        assert (code, out) == (1, ""), argv
        assert said in err and "Traceback" not in err, err
    usage_errors: list[tuple[str, ...]] = [("accept", "one"), ("reject", "2"), ("frobnicate",)]
    for wrong in usage_errors:
        code, _, err = run(capsys, *cli.args("suggestions", *wrong))
        assert code == 2, wrong
        assert "usage:" in err


def test_the_operator_is_who_rated_it_by_default(
    capsys: pytest.CaptureFixture[str], cli: Cli
) -> None:
    seed(cli)
    code, _, err = run(capsys, *cli.args("suggestions", "accept", "2", "--note", "Checked"))
    assert code == 0, err

    async def latest(store: Store) -> tuple[str, str]:
        [change] = await store.status_history(OTHER)
        return change.changed_by, change.note

    assert cli.with_store(latest) == (f"operator:{getpass.getuser()}", "Checked")


def test_reject_needs_a_reason_and_keeps_the_suggestion(
    capsys: pytest.CaptureFixture[str], cli: Cli
) -> None:
    seed(cli)
    code, _, err = run(capsys, *cli.args("suggestions", "reject", "1", "--reason", "  "))
    assert code == 1 and "Say why it is rejected" in err
    code, out, err = run(
        capsys, *cli.args("suggestions", "reject", "1", "--reason", "A different agreement")
    )
    assert code == 0, err
    assert out == "rejected #1; 2 member(s) to be told the reason\n"
    code, out, _ = run(capsys, *cli.args("suggestions", "show", "1"))
    assert "suggestion #1 [rejected]" in out and "reason     A different agreement" in out

    async def kept(store: Store) -> tuple[int, int, int]:
        return (
            int(await store.scalar("SELECT count(*) FROM suggestions")),
            int(await store.scalar("SELECT count(*) FROM suggestion_backers")),
            int(await store.scalar("SELECT count(*) FROM status_history")),
        )

    assert cli.with_store(kept) == (2, 1, 0)


def test_block_and_unblock(capsys: pytest.CaptureFixture[str], cli: Cli) -> None:
    seed(cli)
    code, out, _ = run(capsys, *cli.args("suggestions", "block", str(MEMBER)))
    assert code == 0
    assert out == (
        f"blocked user {MEMBER}: /pledge suggest refuses them from now on "
        "(1 open suggestion(s) of theirs kept for review)\n"
    )
    code, out, _ = run(capsys, *cli.args("suggestions", "block", str(MEMBER)))
    assert (code, out) == (0, f"user {MEMBER} was already blocked\n")

    async def suggest(store: Store) -> str:
        try:
            await Suggestions(store.db).suggest(MEMBER, GUILD, OTHER, "broken", LINK)
        except UserError as refused:
            return str(refused)
        return "recorded"

    assert "stopped taking suggestions from you" in cli.with_store(suggest)
    code, out, _ = run(capsys, *cli.args("suggestions", "unblock", str(MEMBER)))
    assert (code, out) == (0, f"unblocked user {MEMBER}: their suggestions are taken again\n")
    code, out, _ = run(capsys, *cli.args("suggestions", "unblock", str(MEMBER)))
    assert (code, out) == (0, f"user {MEMBER} was not blocked\n")
    assert cli.with_store(suggest) == "recorded"
