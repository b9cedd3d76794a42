"""discord.py's rate-limit buckets, swept for idle ones at a constant cost per bucket.

discord.py keeps a `Ratelimit` per route and major parameter, so one per channel posted
to, and once it holds 256 it looks through every one of them for idle ones (unused for
300 s) each time it makes a new one. Alerts to 10,000 members make a bucket per DM
channel, each still recent when the next is made: every new one scanned thousands, the
event loop blocked about 4 ms a DM, and members' commands waited behind it. Here the
sweep runs once the count has doubled since the last one: the same idle buckets are
forgotten, a little later, for amortised constant work per bucket.
"""

from __future__ import annotations

import logging

import discord.http

log = logging.getLogger(__name__)

SWEEP_FROM = 256  # discord.py's own threshold


def sweep_buckets_when_doubled(http: discord.http.HTTPClient) -> bool:
    """Make `http` sweep its buckets only when their count has doubled. False (and a
    warning) if this discord.py release no longer has the parts this relies on."""
    sweep = getattr(http, "_try_clear_expired_ratelimits", None)
    if not callable(sweep) or not isinstance(getattr(http, "_buckets", None), dict):
        log.warning("discord.py's rate-limit buckets changed; they are swept as it does")
        return False
    sweep_at = SWEEP_FROM

    def sweep_when_doubled() -> None:
        nonlocal sweep_at
        count = len(http._buckets)
        if count < sweep_at:
            return
        sweep()
        sweep_at = max(SWEEP_FROM, 2 * len(http._buckets))

    http._try_clear_expired_ratelimits = sweep_when_doubled  # type: ignore[method-assign]
    return True
