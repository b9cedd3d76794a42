"""Start-up failures are one clear line: `python -m bot run` as a real subprocess.

A closed port on 127.0.0.1 stands in for an unreachable Discord; a refused token is
`tests/test_robustness_secrets.py::test_a_wrong_token_is_one_clear_line_without_the_token`
(exit 78). Nothing here leaves 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import time
from pathlib import Path

import aiohttp
import discord
import pytest

from bot.client.runner import EX_UNAVAILABLE, OneLineReconnects, make_bot
from bot.config import Config
from tests.test_robustness_support import BotProcess, leaks, wait_for

ATTEMPT = re.compile(
    r"WARNING bot\.client\.runner: cannot reach Discord at (\S+) \((.+)\); "
    r"attempt (\d+)(?: of (\d+))?, trying again in (\d+) s$"
)
VOICE = "voice will NOT be supported"


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def unreachable_config(path: Path, database: Path, extra: str = "") -> Path:
    port = closed_port()
    path.write_text(
        f'[database]\npath = "{database}"\n'
        f'[discord]\napi_base_url = "http://127.0.0.1:{port}/api/v10"\n'
        f'gateway_url = "ws://127.0.0.1:{port}/"\n{extra}',
        encoding="utf-8",
    )
    return path


def attempts(stderr: str) -> list[re.Match[str]]:
    return [m for line in stderr.splitlines() if (m := ATTEMPT.search(line))]


def assert_no_noise(text: str) -> None:
    assert "Traceback" not in text, text
    assert VOICE not in text, text
    assert leaks(text) == [], text


async def test_unreachable_discord_retries_with_backoff_then_gives_up(tmp_path: Path) -> None:
    config = unreachable_config(tmp_path / "c.toml", tmp_path / "bot.db", "connect_attempts = 3\n")
    bot = BotProcess(tmp_path, config, "any-token")
    started = time.monotonic()
    await bot.start()
    try:
        code = await bot.wait(30)
    finally:
        await bot.stop()
    took = time.monotonic() - started
    stderr = bot.stderr()
    assert code == EX_UNAVAILABLE, stderr
    tried = attempts(stderr)
    assert [(m[3], m[4], m[5]) for m in tried] == [("1", "3", "1"), ("2", "3", "2")], stderr
    assert all("Connection refused" in m[2] for m in tried), stderr
    where = tried[0][1]
    (last,) = [line for line in stderr.splitlines() if line.startswith("pledgebot:")]
    assert last.startswith(f"pledgebot: cannot reach Discord at {where} (")
    assert last.endswith("after 3 attempts; giving up"), last
    assert 3 <= took < 20  # waited 1 s, then 2 s
    assert_no_noise(stderr)


async def test_unreachable_discord_is_retried_until_stopped_by_default(tmp_path: Path) -> None:
    config = unreachable_config(tmp_path / "c.toml", tmp_path / "bot.db")
    bot = BotProcess(tmp_path, config, "any-token")
    await bot.start()
    try:
        await wait_for(lambda: len(attempts(bot.stderr())) >= 3, 20, "three attempts")
        assert bot.proc is not None and bot.proc.returncode is None  # still trying
        stopped_at = time.monotonic()
        code = await bot.stop()  # SIGTERM, as systemd stops it
        assert time.monotonic() - stopped_at < 5  # the wait between tries is cut short
    finally:
        await bot.stop()
    stderr = bot.stderr()
    assert code == 0, stderr
    delays = [int(m[5]) for m in attempts(stderr)]
    assert delays[:3] == [1, 2, 4], stderr  # doubling, with no attempt limit shown
    assert all(m[4] is None for m in attempts(stderr))
    assert_no_noise(stderr)


@pytest.mark.parametrize("fault", ["not a database", "a directory", "under a file"])
async def test_a_database_that_cannot_be_opened_is_one_line_naming_it(
    tmp_path: Path, fault: str
) -> None:
    """Reported at once, before any attempt to reach Discord (which is unreachable here)."""
    database = tmp_path / "bot.db"
    if fault == "not a database":
        database.write_bytes(b"this is not SQLite " * 512)
        reason = "file is not a database"
    elif fault == "a directory":
        database.mkdir()
        reason = "unable to open database file"
    else:
        (tmp_path / "file").write_text("x", encoding="utf-8")
        database = tmp_path / "file" / "bot.db"
        reason = "cannot open database"
    config = unreachable_config(tmp_path / "c.toml", database)
    bot = BotProcess(tmp_path, config, "any-token")
    await bot.start()
    try:
        code = await bot.wait(20)
    finally:
        await bot.stop()
    stderr = bot.stderr()
    assert code == 1, stderr
    (line,) = [line for line in stderr.splitlines() if line.startswith("pledgebot:")]
    assert str(database) in line and reason in line, line
    assert attempts(stderr) == []  # the database was checked first
    assert_no_noise(stderr)


def test_no_voice_warnings_but_other_warnings_still_show(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(discord.VoiceClient, "warn_nacl", True)  # as on a fresh import
    monkeypatch.setattr(discord.VoiceClient, "warn_dave", True)
    with caplog.at_level(logging.DEBUG, logger="discord"):
        make_bot(Config())
        logging.getLogger("discord.client").warning("an unrelated discord.py warning")
    messages = [r.getMessage() for r in caplog.records]
    assert not [m for m in messages if VOICE in m]
    assert "an unrelated discord.py warning" in messages
    assert logging.getLogger("discord.client").getEffectiveLevel() <= logging.WARNING


def test_gateway_reconnects_are_logged_in_one_line() -> None:
    try:
        raise aiohttp.ClientConnectorError(
            aiohttp.client_reqrep.ConnectionKey("127.0.0.1", 9, False, True, None, None, None),
            ConnectionRefusedError(111, "Connection refused"),
        )
    except aiohttp.ClientError as error:
        exc_info = (type(error), error, error.__traceback__)
    record = logging.LogRecord(
        "discord.client",
        logging.ERROR,
        __file__,
        1,
        "Attempting a reconnect in %.2fs",
        (1.5,),
        exc_info,
    )
    other = logging.LogRecord(
        "discord.client", logging.ERROR, __file__, 1, "Something else", (), exc_info
    )
    keep = OneLineReconnects()
    assert keep.filter(record) and keep.filter(other)
    text = logging.Formatter().format(record)
    assert text == "Attempting a reconnect in 1.50s (127.0.0.1:9: Connection refused)"
    assert other.exc_info is exc_info  # every other record keeps its traceback


async def test_sigterm_closes_a_running_bot_cleanly(tmp_path: Path) -> None:
    """systemd's stop: the bot closes its connections and exits 0 (no restart)."""
    from bot.local import Emulator
    from tests.test_robustness_support import write_config

    async with Emulator() as emu:
        emu.add_guild("Demo")
        config = write_config(tmp_path / "c.toml", database=tmp_path / "bot.db", emulator=emu)
        bot = BotProcess(tmp_path, config, emu.token)
        await bot.start()
        try:
            await wait_for(lambda: emu.connected.is_set(), 30, "the bot to connect")
            await asyncio.sleep(0.5)
        finally:
            code = await bot.stop()
    assert code == 0, bot.tail()
    assert_no_noise(bot.stderr())
