"""A local Discord (REST + gateway on 127.0.0.1) for tests, the console and benchmarks.

Imports discord and the ground floor only; the console gets its bot from a factory.
"""

from bot.local.emulator import Emulator
from bot.local.interactions import CommandUsageError, InteractionResult
from bot.local.models import (
    ChannelState,
    GuildState,
    MemberState,
    RoleState,
    StoredFile,
    UserState,
)
from bot.local.rest import RecordedRequest

__all__ = [
    "ChannelState",
    "CommandUsageError",
    "Emulator",
    "GuildState",
    "InteractionResult",
    "MemberState",
    "RecordedRequest",
    "RoleState",
    "StoredFile",
    "UserState",
]
