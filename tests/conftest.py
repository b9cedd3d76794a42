"""Shared fixtures: real SQLite files in a temporary directory, real content."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.pledges.content import load_content
from bot.store import Store
from tests.engine_rig import Rig, new_rig

REPO = Path(__file__).resolve().parent.parent
DATA_DIR = REPO / "data"


@pytest.fixture
def content_dir(tmp_path: Path) -> Path:
    """A private copy of the shipped content that a test may edit."""
    target = tmp_path / "content"
    shutil.copytree(DATA_DIR, target, ignore=shutil.ignore_patterns("*.db*"))
    return target


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await Store.open(tmp_path / "pledgebot.db")
    yield opened
    await opened.close()


@pytest.fixture
async def loaded_store(store: Store) -> Store:
    await load_content(store, DATA_DIR)
    return store


@pytest.fixture
async def rig(loaded_store: Store) -> AsyncIterator[Rig]:
    """The briefing engine on a real store, with a fake clock and a fake Discord."""
    made = new_rig(loaded_store)
    yield made
    await made.engine.stop()
