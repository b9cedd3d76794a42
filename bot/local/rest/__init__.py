"""The REST half of the local Discord: routing, recording, fault injection and the handlers.

Responses mirror Discord byte for byte where discord.py looks: `Content-Type: application/json`
exactly, JSON error bodies with Discord's codes, 429s with `Via` and X-RateLimit-* headers, 204s
without a body. Unknown routes answer 404 and are listed in `unhandled` so gaps are visible.

- `router`: `RestApi`, the one route table, request recording, body reading, the global rate
  limit and injected failures;
- `base`: what every handler speaks: the routed `Call`, `ApiError` and `Reply`;
- `messages`: building and editing the bot's messages, shared by channels and interactions;
- one module per Discord resource: `channels` (channels and messages), `interactions`
  (callbacks, followups, @original), `guilds` (guilds, roles, members), `applications` (the
  application and its commands) and `users` (users and opening the bot's DM channels).
"""

from bot.local.rest.router import FailRule, RecordedRequest, RestApi

__all__ = ["FailRule", "RecordedRequest", "RestApi"]
