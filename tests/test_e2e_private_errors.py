"""Errors are always private, even after a public command was deferred (issue 17).

Discord turns the first followup after a "thinking" defer into that deferred message,
keeping its ephemerality whatever the followup asks; the emulator does the same. A
public command that was slow (deferred in public) and then failed must still answer
privately, and leave nothing public behind.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bot.errors import UserError
from commands import ui
from tests.e2e import World, embed_text, running_bot, world

pytestmark = pytest.mark.e2e


@pytest.fixture
async def w(tmp_path: Path):  # type: ignore[no-untyped-def]
    async with world(tmp_path) as value:
        yield value


@pytest.mark.parametrize("failure", ["refused", "our bug"])
async def test_a_public_command_deferred_then_failing_answers_privately(
    w: World, monkeypatch: pytest.MonkeyPatch, failure: str
) -> None:
    monkeypatch.setattr(ui, "DEFER_AFTER", 0.05)
    async with running_bot(w) as bot:
        assert bot.services is not None
        store = bot.services.store

        async def slow_then_failing(query: str) -> None:
            await asyncio.sleep(0.5)  # past DEFER_AFTER: the answer is deferred in public
            if failure == "refused":
                raise UserError("That search is refused for the test.")
            raise RuntimeError("a bug of ours")

        monkeypatch.setattr(store, "search", slow_then_failing)
        result = await w.emu.run_command(
            w.guild, "pledge search", options={"query": "vehicles"}, user=w.member
        )
    assert result.callback_type == 5  # it was deferred, publicly
    assert result.message is None  # the public placeholder is gone
    assert len(result.followups) == 1
    (answer,) = result.followups
    assert answer["flags"] & (1 << 6), "the error answer must be private"
    expected = "refused for the test" if failure == "refused" else "something went wrong"
    assert expected in embed_text(answer)
    assert w.emu.violations == []
