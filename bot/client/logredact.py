"""Tokens (and database passwords) never reach a log: a filter on the log handlers
rewrites every record first.

discord.py logs request URLs, and an interaction's token is part of its callback and
webhook URLs; at DEBUG it also logs every gateway payload whole (an INTERACTION_CREATE
carries a token, a GUILD_CREATE every member). A handler filter sees each record whichever
library logged it, so the rules live here once instead of in each logger.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

from bot.config import redact_dsn

PLACEHOLDER = "[redacted]"
GATEWAY_LOGGER = "discord.gateway"

# /interactions/{id}/{token}/callback and /webhooks/{application id}/{token}/...
_URL_TOKEN = re.compile(r"(/(?:interactions|webhooks)/\d+/)[^/\s'\"?#]+")
# "token": "..." in JSON or a dict's repr (also access_token and the like)
_TOKEN_FIELD = re.compile(r"""(["']\w*token["']\s*:\s*)(["'])(?:(?!\2).)*\2""", re.IGNORECASE)
# the shape of a Discord bot token: base64 user id . timestamp . HMAC
_BOT_TOKEN = re.compile(r"\b[MNO][\w-]{23,27}\.[\w-]{6}\.[\w-]{27,40}\b")
# a PostgreSQL URL, whichever library logged it: its password is masked (`redact_dsn`)
_DSN = re.compile(r"\bpostgres(?:ql)?://[^\s'\"]*", re.IGNORECASE)


def gateway_event(payload: Mapping[str, Any]) -> str:
    """A gateway payload cut down to what it is: its event name, or its opcode."""
    return str(payload.get("t") or f"op {payload.get('op')}")


class RedactTokens(logging.Filter):
    """Replaces tokens in a record's message and traceback; never drops a record."""

    def __init__(self, secrets: tuple[str, ...] = ()) -> None:
        super().__init__()
        self.secrets = tuple(s for s in secrets if s)

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, PLACEHOLDER)
        text = _URL_TOKEN.sub(rf"\g<1>{PLACEHOLDER}", text)
        text = _TOKEN_FIELD.sub(rf"\g<1>\g<2>{PLACEHOLDER}\g<2>", text)
        text = _DSN.sub(lambda url: redact_dsn(url[0]), text)
        return _BOT_TOKEN.sub(PLACEHOLDER, text)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == GATEWAY_LOGGER and isinstance(record.args, tuple):
            record.args = tuple(
                gateway_event(a) if isinstance(a, Mapping) and "op" in a else a for a in record.args
            )
        try:
            message = record.getMessage()
        except Exception:  # a broken format string: the handler reports it as usual
            return True
        record.msg, record.args = self.redact(message), ()
        if record.exc_info and not record.exc_text:
            record.exc_text = self.redact(logging.Formatter().formatException(record.exc_info))
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        return True


def install(*secrets: str | None) -> None:
    """Filter every handler of the root logger (where logging.basicConfig puts them).

    Calling it again replaces the filter, so each place that configures logging may call it.
    """
    redactor = RedactTokens(tuple(s for s in secrets if s))
    for handler in logging.getLogger().handlers:
        for old in [f for f in handler.filters if isinstance(f, RedactTokens)]:
            handler.removeFilter(old)
        handler.addFilter(redactor)
