"""Bad content files: one clear error naming the file and the record, and nothing changes.

Each case starts from a store loaded with the shipped content and a copy of `data/` in
which one pledge's title was also edited (a valid change that must not land, since a load
is all or nothing), then breaks the copy one way. The load is tried with the operator CLI
(`pledgebot db load --dir`) and by starting the bot (`pledgebot run`), which must refuse to
start, print the problem without a traceback, and register no commands.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from bot.local import Emulator
from bot.pledges.content import load_content
from bot.store import Store
from tests.conftest import DATA_DIR
from tests.test_robustness_support import BotProcess, run_cli, snapshot, write_config

MAIN = "smuggling-gangs.toml"
TITLE = 'title = "New partnership with Europol on migrant smuggling"'
QUOTE = "A new partnership with Europol that enables the UK"


def malformed(content: Path) -> None:
    (content / "broken.toml").write_text('schema = 1\n[statement\nslug = "x"\n', "utf-8")


def duplicate_in_one_file(content: Path) -> None:
    main = content / MAIN
    text = main.read_text("utf-8")
    quote = text.split("quotes = [\n  ", 1)[1].split('",', 1)[0] + '"'
    main.write_text(
        text + '\n[[pledges]]\nslug = "europol-partnership"\ntitle = "Again"\n'
        f'summary = "S"\ndetail = "D"\nscope = "X"\nquotes = [{quote}]\n',
        "utf-8",
    )


def duplicate_across_files(content: Path) -> None:
    """A second statement whose pledge reuses a slug; its file is not named after its slug."""
    shutil.copy(content / "sources" / "smuggling-gangs.txt", content / "sources" / "extra.txt")
    source = (content / "sources" / "extra.txt").read_text("utf-8")
    quote = source.split(".")[0].strip()
    (content / "extra.toml").write_text(
        'schema = 1\n[statement]\nslug = "extra-statement"\ntitle = "Extra"\nauthor = "T"\n'
        'source = "sources/extra.txt"\nsummary = "S"\n\n[[pledges]]\n'
        'slug = "europol-partnership"\ntitle = "Same slug"\nsummary = "S"\ndetail = "D"\n'
        f'scope = "X"\nquotes = ["{quote}"]\n',
        "utf-8",
    )


def bad_quote(content: Path) -> None:
    main = content / MAIN
    text = main.read_text("utf-8")
    assert text.count(QUOTE) == 1
    main.write_text(
        text.replace(QUOTE, "A secret treaty with Atlantis that enables the UK"), "utf-8"
    )


# case -> (how to break the content, what the error must name)
CASES: dict[str, tuple[Callable[[Path], None], tuple[str, ...]]] = {
    "malformed-toml": (malformed, ("broken.toml", "not valid TOML", "line 2")),
    "duplicate-slug-in-one-file": (
        duplicate_in_one_file,
        (MAIN, "duplicate pledge slug 'europol-partnership'"),
    ),
    "duplicate-slug-across-files": (
        duplicate_across_files,
        ("extra.toml", MAIN, "duplicate pledge slug 'europol-partnership'"),
    ),
    "bad-quote": (bad_quote, (MAIN, "pledge 'europol-partnership'", "quote not found")),
}


@pytest.fixture(params=list(CASES))
def case(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def loaded(tmp_path: Path) -> Path:
    database = tmp_path / "content.db"
    store = await Store.open(database)
    try:
        await load_content(store, DATA_DIR)
    finally:
        await store.close()
    return database


def broken_content(tmp_path: Path, case: str) -> Path:
    content = tmp_path / "content"
    shutil.copytree(DATA_DIR, content, ignore=shutil.ignore_patterns("*.db*"))
    main = content / MAIN
    assert TITLE in main.read_text("utf-8")
    main.write_text(main.read_text("utf-8").replace(TITLE, 'title = "Edited title"'), "utf-8")
    CASES[case][0](content)
    return content


def check_error(stderr: str, case: str) -> None:
    """One problem, reported once, naming what the case says, with no traceback."""
    assert "Traceback" not in stderr, stderr
    assert "pledgebot: content not loaded:" in stderr, stderr
    problems = [line for line in stderr.splitlines() if line.startswith("  - ")]
    assert len(problems) == 1, stderr
    for text in CASES[case][1]:
        assert text in problems[0], f"the error should name {text!r}: {problems[0]}"


def test_db_load_refuses_bad_content_and_changes_nothing(
    tmp_path: Path, loaded: Path, case: str
) -> None:
    content = broken_content(tmp_path, case)
    config = write_config(tmp_path / "c.toml", database=loaded)
    before = snapshot(loaded)
    done = run_cli("db", "load", "--dir", str(content), config=config)
    assert done.returncode == 1, done.stderr
    check_error(done.stderr, case)
    assert done.stdout == ""
    assert snapshot(loaded) == before


@pytest.mark.e2e
async def test_the_bot_refuses_to_start_on_bad_content(
    tmp_path: Path, loaded: Path, case: str
) -> None:
    content = broken_content(tmp_path, case)
    async with Emulator() as emu:
        emu.add_guild("Demo")
        config = write_config(tmp_path / "c.toml", database=loaded, content=content, emulator=emu)
        before = snapshot(loaded)
        bot = BotProcess(tmp_path, config, emu.token)
        await bot.start()
        try:
            code = await bot.wait(30)
        finally:
            await bot.stop()
        assert code == 1, bot.tail()
        check_error(bot.stderr(), case)
        assert not any(r.method == "PUT" for r in emu.requests)  # no command sync
        assert emu.identify_count == 0  # never went online
    assert snapshot(loaded) == before
