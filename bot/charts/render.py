"""The bot's side of drawing: a child process per picture, each picture drawn once.

Pillow is imported only in the child (`python -m bot.charts.draw`), so the bot's resident
memory does not grow by the imaging library or a drawing's buffers, and its event loop
only waits on pipes. Every wait is bounded (`DRAW_TIMEOUT`); a drawing that fails or
times out gives None and is logged, and the answer goes out without its picture.

Pictures are kept by their spec's key: a spec is built from the content and statuses, so
the same content and status state is the same key, and a picture is drawn once however
many answers, pages and briefings show it (answers asked at once share one drawing). The
cache is bounded in bytes and pictures, oldest out first.
"""

from __future__ import annotations

import asyncio
import logging
import math
import sys
import time
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

from bot.charts.spec import ChartSpec

log = logging.getLogger(__name__)

# Seconds one drawing may take, a wait for a free drawing slot included: a Python start and
# Pillow's import are most of it (about 0.1 s idle), so this is for a loaded machine.
DRAW_TIMEOUT = 5.0
DRAWING_AT_ONCE = 2
# What the cache keeps: a chart is about 5 KB, so this is dozens of charts, and well inside
# the 1 MiB that drawing may add to the bot's memory (a process has two renderers: answers'
# and briefings').
KEPT_BYTES = 256 * 1024
KEPT_PICTURES = 48
# A chart's PNG is a few KB; anything bigger than this is a drawing gone wrong.
MAX_PNG_BYTES = 1024 * 1024
# After a failure the same chart is not tried again for this long: answers go out without
# it meanwhile, rather than each waiting for a drawing that fails.
RETRY_FAILED_AFTER = 30.0
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# Where `bot` is importable from, whatever the bot's working directory.
PACKAGE_ROOT = Path(__file__).resolve().parents[2]
DRAW_COMMAND = (sys.executable, "-m", "bot.charts.draw")


class DrawingFailed(Exception):
    """The child did not give a PNG: it exited non-zero, timed out or wrote something else."""


class ChartRenderer:
    """Draws charts in child processes and keeps the pictures by their spec's key."""

    def __init__(
        self,
        *,
        command: Sequence[str] = DRAW_COMMAND,
        timeout: float = DRAW_TIMEOUT,
        kept_bytes: int = KEPT_BYTES,
        kept_pictures: int = KEPT_PICTURES,
    ) -> None:
        self.command = tuple(command)
        self.timeout = timeout
        self.kept_bytes = kept_bytes
        self.kept_pictures = kept_pictures
        self.draws = 0  # children started: what "drawn once" is measured by
        self.last_draw_seconds = math.nan  # the latest drawing's time, child start to PNG
        self._kept: OrderedDict[str, bytes] = OrderedDict()
        self._kept_size = 0
        self._drawing: dict[str, asyncio.Future[bytes | None]] = {}
        self._failed_at: dict[str, float] = {}
        self._slots = asyncio.Semaphore(DRAWING_AT_ONCE)

    def kept(self) -> int:
        """Bytes of pictures kept now."""
        return self._kept_size

    async def draw(self, spec: ChartSpec) -> bytes | None:
        """The chart as a PNG, drawn now or earlier; None when it cannot be drawn (logged)."""
        key = spec.key
        found = self._kept.get(key)
        if found is not None:
            self._kept.move_to_end(key)
            return found
        failed_at = self._failed_at.get(key)
        if failed_at is not None and time.monotonic() - failed_at < RETRY_FAILED_AFTER:
            return None
        drawing = self._drawing.get(key)
        if drawing is None:
            drawing = asyncio.ensure_future(self._draw_and_keep(spec))
            self._drawing[key] = drawing
            drawing.add_done_callback(lambda _: self._drawing.pop(key, None))
        # shielded: a member's answer given up on never stops a drawing others wait for
        return await asyncio.shield(drawing)

    async def _draw_and_keep(self, spec: ChartSpec) -> bytes | None:
        started = time.monotonic()
        try:
            async with asyncio.timeout(self.timeout):
                async with self._slots:
                    picture = await self._run_child(spec)
        except (DrawingFailed, TimeoutError, OSError) as error:
            reason = str(error) or f"no picture within {self.timeout:g} s"
            log.warning("chart %r not drawn, answers go without it: %s", spec.title, reason)
            if len(self._failed_at) >= self.kept_pictures:
                self._failed_at.clear()
            self._failed_at[spec.key] = time.monotonic()
            return None
        self.last_draw_seconds = time.monotonic() - started
        self._failed_at.pop(spec.key, None)
        self._keep(spec.key, picture)
        return picture

    async def _run_child(self, spec: ChartSpec) -> bytes:
        self.draws += 1
        child = await asyncio.create_subprocess_exec(
            *self.command,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=PACKAGE_ROOT,
        )
        try:
            out, err = await child.communicate(spec.to_json())
        except BaseException:
            # timed out or cancelled: the child must not outlive the wait
            if child.returncode is None:
                child.kill()
                await asyncio.shield(child.wait())
            raise
        if child.returncode != 0:
            lines = err.decode(errors="replace").strip().splitlines() or ["(nothing on stderr)"]
            raise DrawingFailed(f"the drawing process exited {child.returncode}: {lines[-1]}")
        if not out.startswith(PNG_MAGIC):
            raise DrawingFailed(f"the drawing process wrote {len(out)} bytes that are not a PNG")
        if len(out) > MAX_PNG_BYTES:
            raise DrawingFailed(f"the picture is {len(out)} bytes, over {MAX_PNG_BYTES}")
        return out

    def _keep(self, key: str, picture: bytes) -> None:
        if len(picture) > self.kept_bytes:
            return
        self._kept[key] = picture
        self._kept_size += len(picture)
        while self._kept_size > self.kept_bytes or len(self._kept) > self.kept_pictures:
            _, dropped = self._kept.popitem(last=False)
            self._kept_size -= len(dropped)
