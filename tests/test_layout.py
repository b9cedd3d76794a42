"""Imports point down: the map in the README's architecture section, checked.

ground floor (config, errors, models; storage on them; store, search and rate_budget on
  storage) <- charts <- pledges <- briefings <- follows <- client -> local;
commands -> bot;  bot.client.runner -> commands.
Nothing below `client` imports discord, so the core is tested without Discord.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import REPO

# below the database layer: what `bot.storage` may import
BELOW_STORAGE = {"config", "errors", "models"}
GROUND = {*BELOW_STORAGE, "storage", "store", "search", "rate_budget"}
# what each part of bot/ may import from bot/ (besides itself)
MAY_IMPORT = {
    "ground": {"ground"},
    "charts": {"ground"},
    "pledges": {"ground", "charts"},
    "briefings": {"ground", "charts", "pledges"},
    "follows": {"ground", "charts", "pledges", "briefings"},
    "client": {"ground", "charts", "pledges", "briefings", "follows", "local"},
    "local": {"ground"},
    "main": {"ground", "charts", "pledges", "briefings", "follows", "client"},
}
DISCORD = ("discord", "aiohttp")


def part_of(module: str) -> str:
    """`bot.briefings.engine` -> "briefings"; ground-floor modules -> "ground"."""
    parts = module.split(".")
    if parts[:2] == ["bot", "__main__"]:
        return "main"
    if len(parts) == 1 or parts[1] in GROUND or parts[1] == "__init__":
        return "ground"
    return parts[1]


def imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "bot":
                found.update(f"bot.{alias.name}" for alias in node.names)
            else:
                found.add(node.module)
    return found


MODULES = {
    ".".join(path.relative_to(REPO).with_suffix("").parts): path
    for path in sorted((REPO / "bot").rglob("*.py"))
}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_point_down(module: str) -> None:
    part = part_of(module)
    allowed = MAY_IMPORT[part] | {part}
    upward = sorted(
        name
        for name in imports(MODULES[module])
        if name.startswith("bot.") and part_of(name) not in allowed
    )
    assert upward == [], f"{module} ({part}) imports {upward}"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m.startswith("bot.storage")))
def test_the_database_layer_knows_nothing_above_it(module: str) -> None:
    """The store is written against `bot.storage`, never the other way round."""
    below = {*BELOW_STORAGE, "storage"}
    upward = sorted(
        name
        for name in imports(MODULES[module])
        if name.startswith("bot.") and name.split(".")[1] not in below
    )
    assert upward == [], f"{module} imports {upward}"


def test_the_ground_floor_stays_small() -> None:
    """At most six modules beside the packages; a seventh is a package waiting to be."""
    ground = sorted(p.stem for p in (REPO / "bot").glob("*.py") if not p.stem.startswith("__"))
    assert len(ground) <= 6, ground
    assert {"storage", "pledges", "briefings", "follows", "client", "local"} <= {
        p.name for p in (REPO / "bot").iterdir() if (p / "__init__.py").is_file()
    }


@pytest.mark.parametrize(
    "module",
    sorted(
        m for m in MODULES if part_of(m) in {"ground", "charts", "pledges", "briefings", "follows"}
    ),
)
def test_the_core_never_imports_discord(module: str) -> None:
    found = sorted(n for n in imports(MODULES[module]) if n.split(".")[0] in DISCORD)
    assert found == [], f"{module} imports {found}"


def test_only_the_runner_imports_the_commands() -> None:
    importers = sorted(
        m
        for m, path in MODULES.items()
        if any(n.split(".")[0] == "commands" for n in imports(path))
    )
    assert importers == ["bot.client.runner"]


def test_the_check_sees_a_violation(tmp_path: Path) -> None:
    """The parser finds the imports a violation would add (so the tests above can fail)."""
    bad = tmp_path / "bad.py"
    bad.write_text("import discord\nfrom bot.client import app\nfrom bot import runner\n")
    assert imports(bad) == {"discord", "bot.client", "bot.runner"}
    assert part_of("bot.client") == "client"
