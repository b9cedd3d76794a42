"""The bot token never appears in logs, error messages or reprs.

The bot runs as `python -m bot run` at log level DEBUG with a distinctive DISCORD_TOKEN
against the emulator (which accepts exactly that token); the test makes things go wrong
(a command whose reply fails, a post Discord refuses with 403, a wrong token, a bad config
file, a token pasted into the config file) and searches everything the process printed.
"""

from __future__ import annotations

import io
import logging
import re
import secrets
from pathlib import Path

import pytest

from bot.client.logredact import PLACEHOLDER, RedactTokens
from bot.config import Config, ConfigError, load_config
from bot.local import Emulator
from bot.pledges.services import Services
from tests.e2e import embed_text
from tests.test_robustness_database import exclusive_lock, visible
from tests.test_robustness_support import BotProcess, run_cli, wait_for, write_config

TOKEN = "MTA5.pledgebot-secret." + secrets.token_urlsafe(30)


def assert_secret_absent(text: str, token: str = TOKEN) -> None:
    for piece in (token, token[-24:], token[:24]):
        assert piece not in text, f"the token (or part of it: {piece[:6]}…) leaked"


@pytest.mark.e2e
async def test_the_token_stays_out_of_debug_logs_when_things_fail(tmp_path: Path) -> None:
    async with Emulator(token=TOKEN) as emu:
        guild = emu.add_guild("Demo", channels=("general", "briefings"))
        member = emu.add_user("member")
        moderator = emu.add_user("moderator", manage_guild=True)
        config = write_config(
            tmp_path / "c.toml", database=tmp_path / "s.db", emulator=emu, log_level="DEBUG"
        )
        bot = BotProcess(tmp_path, config, TOKEN)
        await bot.start()
        try:
            await emu.wait_until_ready_sent(timeout=30)
            # a command whose reply fails: an unexpected error, logged with its traceback
            emu.fail_next(path_regex=r"/interactions/\d+/[^/]+/callback", status=400)
            failed = await emu.run_command(
                guild, "pledge show", options={"pledge": "europol-partnership"}, user=member
            )
            # a post Discord refuses: the briefing pauses, with a WARNING
            scheduled = await emu.run_command(
                guild,
                "briefing schedule",
                options={"channel": guild.channels["briefings"], "time": "09:00"},
                user=moderator,
                timeout=10,
            )
            briefing_id = embed_text(scheduled.message).split("#", 1)[1].split(" ", 1)[0]
            emu.fail_next(status=403, path_regex=rf"/channels/{guild.channels['briefings'].id}/")
            refused = await emu.run_command(
                guild, "briefing send-now", options={"id": int(briefing_id)}, user=moderator
            )
            await wait_for(lambda: emu.messages(guild.channels["general"]) != [], 10, "notice")
        finally:
            await bot.stop()

        wrong = BotProcess(tmp_path, config, TOKEN[::-1], name="wrong-token")
        await wrong.start()
        try:
            wrong_code = await wrong.wait(30)
        finally:
            await wrong.stop()
        assert emu.requests[-1].status == 401  # Discord refused the wrong token

    output = bot.output()
    assert "error id" in embed_text(failed.message)
    assert "was not posted" in visible(refused)
    assert (
        " DEBUG " in output and " ERROR bot.client.app: error " in output and "Traceback" in output
    )
    assert "paused: Discord refused the post" in output
    assert_secret_absent(output)
    for message in (*emu.messages(guild.channels["general"]), failed.message, refused.message):
        assert_secret_absent(str(message))
    assert wrong_code != 0
    assert_secret_absent(wrong.output(), TOKEN[::-1])
    assert_secret_absent(wrong.output())


INTERACTION_URL = re.compile(r"/(?:interactions|webhooks)/(\d+)/([^/]+)")
MEMBER_NAME = "member-whose-data-stays-private"


@pytest.mark.e2e
async def test_interaction_tokens_and_gateway_payloads_stay_out_of_debug_logs(
    tmp_path: Path,
) -> None:
    async with Emulator(token=TOKEN) as emu:
        guild = emu.add_guild("Demo", channels=("general", "briefings"))
        member = emu.add_user(MEMBER_NAME)
        moderator = emu.add_user("moderator", manage_guild=True)
        database = tmp_path / "s.db"
        config = write_config(
            tmp_path / "c.toml", database=database, emulator=emu, log_level="DEBUG"
        )
        bot = BotProcess(tmp_path, config, TOKEN)
        await bot.start()
        try:
            await emu.wait_until_ready_sent(timeout=30)
            # answered at once: the token is in the callback URL
            shown = await emu.run_command(
                guild, "pledge show", options={"pledge": "europol-partnership"}, user=member
            )
            # slow (the database is locked): deferred, then answered through the webhook URL
            with exclusive_lock(database):
                slow = await emu.run_command(
                    guild, "briefing timezone", options={"tz": "UTC"}, user=moderator, timeout=10
                )
            followup_logged = f"/webhooks/{emu.application_id}/"
            await wait_for(lambda: followup_logged in bot.output(), 10, "the followup's log line")
        finally:
            await bot.stop()
        used = {m[2] for r in emu.requests for m in INTERACTION_URL.finditer(r.path)}
        webhook_paths = [r.path for r in emu.requests if r.path.startswith("/webhooks/")]

    output = bot.output()
    assert "New partnership with Europol" in visible(shown)
    assert slow.followups, "the locked database should have made the answer a followup"
    assert webhook_paths, "no followup went through the webhook URL"
    assert len(used) == 2 and TOKEN not in used  # one interaction token per command
    assert " DEBUG discord.http: " in output and " DEBUG discord.gateway: " in output
    for token in (TOKEN, *used):
        assert_secret_absent(output, token)
    assert "/callback" in output and f"/{PLACEHOLDER}/callback" in output
    assert f"/webhooks/{emu.application_id}/{PLACEHOLDER}" in output
    # gateway payloads are logged as their event name, without the members in them
    assert "WebSocket Event: INTERACTION_CREATE" in output
    assert MEMBER_NAME not in output


def test_redaction_covers_tracebacks_token_fields_and_bot_token_shapes() -> None:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.addFilter(RedactTokens((TOKEN,)))
    log = logging.getLogger("test.redaction")
    log.addHandler(handler)
    interaction = "aW50ZXJhY3Rpb24" + secrets.token_urlsafe(48)
    shaped = "MTA5ODc2NTQzMjEwOTg3NjU0.GAbCdE." + "x" * 38  # a real token's shape
    try:
        log.warning("sent %s", {"op": 0, "d": {"token": interaction, "note": TOKEN}})
        try:
            raise RuntimeError(f"POST /webhooks/1/{interaction}/messages as Bot {shaped}")
        except RuntimeError:
            log.exception("request failed")
    finally:
        log.removeHandler(handler)
    text = out.getvalue()
    for secret in (TOKEN, interaction, shaped):
        assert_secret_absent(text, secret)
    assert f"'token': '{PLACEHOLDER}'" in text
    assert f"/webhooks/1/{PLACEHOLDER}/messages" in text and "RuntimeError" in text


@pytest.mark.e2e
async def test_a_wrong_token_is_one_clear_line_without_the_token(tmp_path: Path) -> None:
    async with Emulator(token=TOKEN) as emu:
        emu.add_guild("Demo")
        config = write_config(tmp_path / "c.toml", database=tmp_path / "w.db", emulator=emu)
        wrong = TOKEN[::-1]
        bot = BotProcess(tmp_path, config, wrong)
        await bot.start()
        try:
            code = await bot.wait(30)
        finally:
            await bot.stop()
    stderr = bot.stderr()
    assert code == 78, stderr  # EX_CONFIG: the unit in deploy/ does not restart on it
    assert [line for line in stderr.splitlines() if line.startswith("pledgebot:")] == [
        "pledgebot: Discord refused the token in DISCORD_TOKEN (401 Unauthorized): "
        "check that it is this bot's current token."
    ], stderr
    assert "Traceback" not in stderr, stderr
    assert "voice will NOT be supported" not in stderr, stderr
    assert_secret_absent(stderr, wrong)


def test_config_errors_never_echo_the_token(tmp_path: Path) -> None:
    database = tmp_path / "c.db"
    bad = write_config(
        tmp_path / "bad.toml",
        database=database,
        log_level="LOUD",
        extra=f'token = "{TOKEN}"\n[bot]\ndiscord_token = "{TOKEN}"\noperator_ids = ["x"]\n',
    )
    done = run_cli("run", config=bad, token=TOKEN)
    assert done.returncode == 2
    assert "a token is refused here" in done.stderr
    assert "logging.level" in done.stderr and "bot.operator_ids" in done.stderr
    assert_secret_absent(done.stdout + done.stderr)
    with pytest.raises(ConfigError) as raised:
        load_config(bad, environ={"DISCORD_TOKEN": TOKEN})
    assert_secret_absent(str(raised.value) + repr(raised.value))


async def test_config_and_services_reprs_hide_the_token(tmp_path: Path) -> None:
    good = write_config(tmp_path / "good.toml", database=tmp_path / "c.db")
    config = load_config(good, environ={"DISCORD_TOKEN": TOKEN})
    assert config.token == TOKEN
    services = await Services.start(config)  # what the bot holds, config included
    try:
        texts = (repr(config), str(config), repr(Config(token=TOKEN)), repr(services))
    finally:
        await services.close()
    for text in texts:
        assert_secret_absent(text)
