"""Discord's CDN, as far as the bot's uploads go: the bytes of each file at its signed url.

`url` answers with the file; `proxy_url` (under /media) only for images, video and audio, and
415 for anything else, as Discord's media proxy does. An unsigned, expired or unknown url, or
one whose file went with its deleted message, is 404 "This content is no longer available.".
"""

from __future__ import annotations

import re

from aiohttp import web

from bot.local.attachments import signature_valid
from bot.local.models import World

ATTACHMENT_PATH = re.compile(r"/attachments/(\d+)/(\d+)/([^/]+)")
PROXIED_KINDS = ("image/", "video/", "audio/")


class Cdn:
    """Serves uploaded files from the world; requests here are not API calls (not recorded,
    not rate limited), as the CDN is not the API."""

    def __init__(self, world: World) -> None:
        self.world = world

    async def handle(self, request: web.Request) -> web.Response:
        proxied = request.path.startswith("/media/")
        path = request.path.removeprefix("/media")
        match = ATTACHMENT_PATH.fullmatch(path)
        stored = None if match is None else self.world.files.get(int(match[2]))
        if (
            match is None
            or stored is None
            or (str(stored.channel_id), stored.filename) != (match[1], match[3])
            or not signature_valid(self.world, path, dict(request.query))
        ):
            return web.Response(status=404, text="This content is no longer available.")
        kind = stored.content_type or "application/octet-stream"
        if proxied and not kind.startswith(PROXIED_KINDS):
            return web.Response(status=415, text="Unsupported Media Type")
        return web.Response(body=stored.data, headers={"Content-Type": kind})
