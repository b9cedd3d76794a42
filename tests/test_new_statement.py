"""Adding a statement as the README's "Adding a statement" walks through it (issue 9, item 7).

A synthetic statement, written for this test and kept in a temporary directory: skeleton
(`content new`), curate, `content coverage`, `db load`, then members see it through the
real bot and the emulator.
"""

from __future__ import annotations

import asyncio
import tomllib
from pathlib import Path

import pytest

from tests.e2e import embed_text, running_bot, with_config, world
from tests.test_cli import run

pytestmark = pytest.mark.e2e

# Invented for the test: a party and a statement that do not exist.
SYNTHETIC = (
    "Today the Orchard Party sets out its plans for parks. "
    "We believe every town deserves a park.\n"
    "The Orchard Party in government will plant a million trees by 2030.\n"
    "With our partners at the Woodland Guild, we will restore ancient woods.\n"
    "Parks budgets have halved since 2010.\n"
)
SLUG = "orchard-parks"


def curate(path: Path) -> list[str]:
    """Do an editor's job on the skeleton; returns the candidate quotes it listed."""
    text = path.read_text("utf-8")
    candidates = [
        tomllib.loads(f"q = {line[1:].strip().rstrip(',')}")["q"]
        for line in text.splitlines()
        if line.startswith('#   "')
    ]
    _, plant, restore, budgets = candidates[1:5]
    for old, new in [
        ('title = ""', 'title = "Orchard Party statement on parks"'),
        ('speaker = ""', 'speaker = "An unnamed speaker for the Orchard Party"'),
        ('publisher = ""', 'publisher = "Orchard Party"'),
        ('summary = ""', 'summary = "The Orchard Party on parks, trees and woods."'),
    ]:
        assert old in text
        text = text.replace(old, new, 1)
    text += f"""
[[pledges]]
slug = "plant-a-million-trees"
title = "Plant a million trees by 2030"
summary = "Plant a million trees by 2030."
detail = "The statement says the Orchard Party in government would plant a million trees."
scope = "Nationwide"
pledged_by = "The Orchard Party"
condition = "In government"
quotes = [{plant!r}]

[[pledges]]
slug = "restore-ancient-woods"
title = "Restore ancient woods"
summary = "Restore ancient woods with partners."
detail = "The statement says it would restore ancient woods with the Woodland Guild."
scope = "Nationwide"
pledged_by = "The Orchard Party"
partners = ["Woodland Guild"]
quotes = [{restore!r}]

[[claims]]
slug = "parks-budgets-halved"
title = "The statement says parks budgets have halved since 2010"
attribution = "The statement, for the Orchard Party"
summary = "The statement says parks budgets have halved since 2010."
quotes = [{budgets!r}]
"""
    path.write_text(text, "utf-8")
    return candidates


async def test_an_editor_adds_a_statement_members_then_see(
    tmp_path: Path, content_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    incoming = tmp_path / "incoming.txt"
    incoming.write_text(SYNTHETIC, "utf-8")
    async with world(tmp_path) as w:
        config = with_config(w, content_dir=content_dir)
        config_file = tmp_path / "cli.toml"
        config_file.write_text(
            f'[database]\npath = "{config.database_path}"\n'
            f'[content]\ndirectory = "{content_dir}"\n',
            "utf-8",
        )

        async def cli(*argv: str) -> tuple[int, str, str]:
            """`pledgebot ...` in-process; in a thread, as it runs its own event loop."""
            return await asyncio.to_thread(run, capsys, "--config", str(config_file), *argv)

        # 1. the skeleton: the source copied byte for byte, every sentence a candidate
        code, out, err = await cli("content", "new", "--source", str(incoming), "--slug", SLUG)
        assert code == 0, err
        skeleton = content_dir / f"{SLUG}.toml"
        assert (content_dir / "sources" / f"{SLUG}.txt").read_bytes() == incoming.read_bytes()
        assert f"content coverage {SLUG}" in out

        # an uncurated skeleton is refused, naming what is missing; nothing is loaded
        code, _, err = await cli("db", "load")
        assert code == 1
        assert f"{SLUG}.toml: statement: 'title' must not be empty" in err
        assert "'summary' must not be empty" in err
        assert "'publisher'" not in err  # left empty when the text names none, like the date

        # 2. curate: records quote the candidates verbatim
        candidates = curate(skeleton)
        assert candidates == [
            "Today the Orchard Party sets out its plans for parks.",
            "We believe every town deserves a park.",
            "The Orchard Party in government will plant a million trees by 2030.",
            "With our partners at the Woodland Guild, we will restore ancient woods.",
            "Parks budgets have halved since 2010.",
        ]

        # 3. coverage: the sentences no record quotes stand out
        code, out, _ = await cli("content", "coverage", SLUG)
        assert code == 0
        lines = out.splitlines()
        assert lines[0] == (
            f"statement {SLUG}: 5 sentences, 3 quoted, 2 quoted by no record; "
            "0 clauses of quoted sentences quoted by no record"
        )
        assert lines[1:3] == [
            "  1. Today the Orchard Party sets out its plans for parks.",
            "     NOT QUOTED by any record: a pledge, power or claim left out?",
        ]
        assert "     quoted by: claim parks-budgets-halved" in lines

        # 4. load, and the store verifies every quote and the pinned source
        code, out, err = await cli("db", "load")
        assert code == 0, err
        assert "2 statements, 8 pledges" in out
        code, out, err = await cli("db", "check")
        assert code == 0, err
        assert "source texts matching their SHA-256: 2/2" in out

        # 5. members see it, named as whose pledges these are
        async with running_bot(w, config):
            listing = await w.emu.run_command(
                w.guild, "pledge list", options={"statement": SLUG}, user=w.member
            )
            choices = await w.emu.autocomplete(
                w.guild, "pledge list", focused="statement", value="orch", user=w.member
            )
            everything = await w.emu.run_command(w.guild, "pledge list", user=w.member)
            assert everything.message is not None
            first_title = everything.message["embeds"][0]["title"]
            second = await w.emu.click_button(everything.message, label="Next ▶", user=w.member)
            claim = await w.emu.run_command(
                w.guild, "claim show", options={"claim": "parks-budgets-halved"}, user=w.member
            )
            pledge = await w.emu.run_command(
                w.guild, "pledge show", options={"pledge": "restore-ancient-woods"}, user=w.member
            )
    assert listing.message is not None
    (embed,) = listing.message["embeds"]
    assert embed["title"] == "Pledges by The Orchard Party: Orchard Party statement on parks"
    assert embed["footer"]["text"].startswith(
        "Source: Orchard Party statement on parks (Orchard Party, undated)."
    )
    assert [c["value"] for c in choices] == [SLUG]
    # statements in the order they were loaded; each page names its own
    assert first_title == "Pledges by The Orchard Party: Orchard Party statement on parks (1/2)"
    assert second.message is not None
    assert second.message["embeds"][0]["title"] == (
        "Pledges by Labour: Labour statement on criminal smuggling gangs (2/2)"
    )
    assert "“Parks budgets have halved since 2010.”" in embed_text(claim.message)
    assert "The statement, for the Orchard Party" in embed_text(claim.message)
    shown = embed_text(pledge.message)
    assert "Partners named\nWoodland Guild" in shown
    assert "Pledged by\nThe Orchard Party" in shown
    assert w.emu.violations == []
