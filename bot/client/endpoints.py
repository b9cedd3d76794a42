"""Point discord.py at another Discord: the local emulator, or a rate-limit proxy.

discord.py hard-codes `https://discord.com/api/v10` and `wss://gateway.discord.gg/` as class
attributes; these are process-wide, so tests call `reset_endpoints()` when done.
"""

from __future__ import annotations

import discord.gateway
import discord.http
import discord.webhook.async_
import yarl

# Interaction callbacks and followups go through the webhook module's Route; in discord.py 2.7
# it is the same class as discord.http.Route, but set both in case a release splits them again.
_ROUTE_CLASSES = {discord.http.Route, discord.webhook.async_.Route}
_ORIGINAL_BASES = {cls: cls.BASE for cls in _ROUTE_CLASSES}
_ORIGINAL_GATEWAY = discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY


def apply_endpoints(api_base_url: str | None, gateway_url: str | None) -> None:
    """Use `api_base_url` (e.g. http://127.0.0.1:PORT/api/v10) and `gateway_url`; None keeps one."""
    if api_base_url is not None:
        for route in _ROUTE_CLASSES:
            route.BASE = api_base_url.rstrip("/")
    if gateway_url is not None:
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(gateway_url)


def reset_endpoints() -> None:
    """Restore discord.py's real Discord endpoints."""
    for route, base in _ORIGINAL_BASES.items():
        route.BASE = base
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = _ORIGINAL_GATEWAY
