"""`pledgebot invite`: the URL's scopes and permission bits, the README's list, the URL that
installs pledgebot on a member's own account, and the application id asked of Discord (the
emulator) when none is given."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from bot.client.invite import BOT_PERMISSIONS, SCOPES, server_invite_url, user_install_url
from bot.local import Emulator
from tests.conftest import DATA_DIR, REPO

# Discord's permission bits (developers/topics/permissions), written out here so that a
# change to the list in the code has to be made on purpose in two places.
VIEW_CHANNEL, SEND_MESSAGES, EMBED_LINKS, ATTACH_FILES, READ_MESSAGE_HISTORY = 10, 11, 14, 15, 16
SEND_MESSAGES_IN_THREADS = 38
ADMINISTRATOR, MANAGE_GUILD, MENTION_EVERYONE = 3, 5, 17


def query_of(url: str) -> dict[str, list[str]]:
    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc, parts.path) == ("https", "discord.com", "/oauth2/authorize")
    return parse_qs(parts.query)


def test_the_invite_asks_for_exactly_the_permissions_the_bot_uses() -> None:
    query = query_of(server_invite_url(123456789012345678))
    assert query["client_id"] == ["123456789012345678"]
    assert query["scope"][0].split() == ["bot", "applications.commands"] == list(SCOPES)
    bits = int(query["permissions"][0])
    granted = {bit for bit in range(64) if bits >> bit & 1}
    assert granted == {
        VIEW_CHANNEL,
        SEND_MESSAGES,
        SEND_MESSAGES_IN_THREADS,
        EMBED_LINKS,
        ATTACH_FILES,
        READ_MESSAGE_HISTORY,
    }
    assert not granted & {ADMINISTRATOR, MANAGE_GUILD, MENTION_EVERYONE}


def test_the_user_install_asks_for_commands_only_on_the_members_own_account() -> None:
    query = query_of(user_install_url(123456789012345678))
    assert query == {
        "client_id": ["123456789012345678"],
        "scope": ["applications.commands"],  # no bot, no permissions
        "integration_type": ["1"],  # USER_INSTALL (Application Integration Types)
    }


def test_the_readme_shows_the_same_list() -> None:
    readme = (REPO / "README.md").read_text("utf-8")
    section = readme.split("### Setting up on Discord", 1)[1].split("\n## ", 1)[0]
    shown = re.findall(r"^\s*\| (.+?) \| (.+?) \|$", section, re.MULTILINE)
    assert shown[2:] == [(label, why) for _, label, why in BOT_PERMISSIONS]  # after the header


async def run_invite(config: Path, token: str, *args: str) -> tuple[int, str, str]:
    env = {**os.environ, "PLEDGEBOT_CONFIG": str(config), "DISCORD_TOKEN": token}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "invite", *args,
        cwd=REPO, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_without_a_client_id_the_application_is_asked_of_discord(tmp_path: Path) -> None:
    emu = Emulator()
    await emu.start()
    try:
        config = tmp_path / "invite.toml"
        config.write_text(
            f'[database]\npath = "{tmp_path / "invite.db"}"\n[content]\n'
            f'directory = "{DATA_DIR}"\n[discord]\napi_base_url = "{emu.base_url}"\n'
            f'gateway_url = "{emu.gateway_url}"\n',
            "utf-8",
        )
        code, out, err = await run_invite(config, emu.token)
        assert code == 0, err
        assert server_invite_url(emu.application_id) in out
        assert "Attach Files: the status chart in digest briefings" in out
        server_at = out.index(server_invite_url(emu.application_id))
        assert out.index(user_install_url(emu.application_id)) > server_at  # the second URL
        assert emu.identify_count == 0  # HTTP only: no gateway session

        code, out, err = await run_invite(config, "not-the-token")
        assert code == 78, out + err  # EX_CONFIG, as `run` and `sync` exit on a bad token
        assert "Traceback" not in err
        assert err.strip().splitlines()[-1].startswith("pledgebot: Discord refused the token")
    finally:
        await emu.stop()
